"""The facial-expression (FER+) model: its classes, the DenseNet and ``memobert-train-fer``."""
