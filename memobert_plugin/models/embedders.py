"""Modality embedders: raw input projection + own position table + type embedding, LayerNorm, dropout."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from memobert_plugin.models.dropout import Dropout
from memobert_plugin.models.encoder import LAYER_NORM_EPS

__all__ = ["ModalityEmbedder", "TextEmbedder", "FrameEmbedder"]


class ModalityEmbedder(nn.Module):
    """Adds positions and the modality's type vector, then normalises: what all modalities share."""

    def __init__(self, dim: int, max_positions: int, dropout: float):
        super().__init__()
        self.positions = nn.Embedding(max_positions, dim)
        # BERT's token-type embedding, one row per modality (text = BERT's type 0)
        self.type_embedding = nn.Parameter(torch.zeros(dim))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(dropout)

    @property
    def max_positions(self) -> int:
        return self.positions.num_embeddings

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.max_positions:
            raise ValueError(
                f"{type(self).__name__}: {length} positions but the position table holds {self.max_positions}"
            )
        positions = torch.arange(length, device=x.device)
        x = x + self.positions(positions)[None] + self.type_embedding
        return self.dropout(self.norm(x))


class TextEmbedder(ModalityEmbedder):
    """BERT's embedding layer: word + position + token type 0."""

    def __init__(self, vocab_size: int, padding_idx: int, dim: int, max_positions: int, dropout: float):
        super().__init__(dim, max_positions, dropout)
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.finish(self.tokens(tokens))


class FrameEmbedder(ModalityEmbedder):
    """Linear(raw feature dim -> hidden); masked frames are zeroed and replaced by a learned vector."""

    def __init__(self, feature_dim: int, dim: int, max_positions: int, dropout: float):
        super().__init__(dim, max_positions, dropout)
        self.projection = nn.Linear(feature_dim, dim)
        self.mask_embedding = nn.Parameter(torch.zeros(dim))

    @property
    def feature_dim(self) -> int:
        return self.projection.in_features

    def forward(self, frames: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if frames.shape[-1] != self.feature_dim:
            raise ValueError(
                f"{type(self).__name__} expects {self.feature_dim}-d features, got {frames.shape[-1]}-d"
            )
        if frame_mask is not None:
            # zero the raw frames first so nothing of them reaches the encoder
            frames = frames.masked_fill(frame_mask[..., None], 0.0)
        x = self.projection(frames)
        if frame_mask is not None:
            x = torch.where(frame_mask[..., None], self.mask_embedding.to(x.dtype), x)
        return self.finish(x)
