"""The fields of a memobert model config that size its tensors: what ``--bert-init`` must match and what
the checkpoint policy bounds before anything is built (here, so that neither needs the other)."""

from memobert_plugin.streams import input_streams

__all__ = ["SHAPE_FIELDS", "memobert_size_fields"]

#: the encoder's shape, as fairseq's transformer options name it
SHAPE_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads")


def memobert_size_fields() -> tuple:
    """The fields of a memobert model config that size its tensors (streams declared later included)."""
    return SHAPE_FIELDS + tuple(s.dim_option for s in input_streams()) + ("max_text_positions", "max_frame_positions")
