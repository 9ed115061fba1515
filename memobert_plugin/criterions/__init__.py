"""fairseq criterions: ``memobert_pretrain``."""

from .memobert_pretrain import MemobertPretrainCriterion, MemobertPretrainCriterionConfig

__all__ = ["MemobertPretrainCriterion", "MemobertPretrainCriterionConfig"]
