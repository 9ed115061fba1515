"""fairseq tasks: ``memobert_pretrain``."""

from .memobert_pretrain import MemobertPretrainConfig, MemobertPretrainTask
from .multimodal_task import MultimodalTask

__all__ = ["MemobertPretrainConfig", "MemobertPretrainTask", "MultimodalTask"]
