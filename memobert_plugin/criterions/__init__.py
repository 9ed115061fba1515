"""fairseq criterions: ``memobert_pretrain`` and ``memobert_emotion``."""

from memobert_plugin.criterions.memobert_emotion import MemobertEmotionCriterion, MemobertEmotionCriterionConfig
from memobert_plugin.criterions.memobert_pretrain import MemobertPretrainCriterion, MemobertPretrainCriterionConfig

__all__ = [
    "MemobertEmotionCriterion",
    "MemobertEmotionCriterionConfig",
    "MemobertPretrainCriterion",
    "MemobertPretrainCriterionConfig",
]
