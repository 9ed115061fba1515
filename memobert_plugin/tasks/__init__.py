"""fairseq tasks: ``memobert_pretrain`` and ``memobert_emotion``."""

from memobert_plugin.tasks.memobert_emotion import MemobertEmotionConfig, MemobertEmotionTask
from memobert_plugin.tasks.memobert_pretrain import MemobertPretrainTask, pretrain_config
from memobert_plugin.tasks.multimodal_task import MultimodalTask, task_config

__all__ = ["MemobertEmotionConfig", "MemobertEmotionTask", "MemobertPretrainTask", "MultimodalTask", "pretrain_config",
           "task_config"]
