"""Optimizers the plugin registers with fairseq."""

from memobert_plugin.optim.memobert_adam import MemobertAdam, MemobertAdamConfig

__all__ = ["MemobertAdam", "MemobertAdamConfig"]
