"""Embedders, the cross-modality encoder, heads, architectures and pretrained-weight loaders."""

from memobert_plugin.models.memobert import (
    EncoderOutput,
    MemobertConfig,
    MemobertModel,
    SequenceLayout,
    memobert_base,
    memobert_tiny,
)

__all__ = ["EncoderOutput", "MemobertConfig", "MemobertModel", "SequenceLayout", "memobert_base", "memobert_tiny"]
