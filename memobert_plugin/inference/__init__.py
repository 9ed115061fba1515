"""Using a trained model: the predictor, ``memobert-predict``, timelines of long recordings,
``memobert-serve``, bundles, the Hugging Face export."""
