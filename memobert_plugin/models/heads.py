"""Output heads on the encoder's hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import LAYER_NORM_EPS

__all__ = ["MaskedLMHead", "MLPHead", "Pooler"]


class MaskedLMHead(nn.Module):
    """BERT's ``cls.predictions``: dense-GELU-LayerNorm, then the word embeddings (tied) + bias.

    Callers pass only the hidden states to score (e.g. the masked positions): the head
    never projects a whole sequence onto the vocabulary.
    """

    def __init__(self, dim: int, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.word_embeddings = word_embeddings
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(hidden)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), self.word_embeddings.weight, self.bias)


class MLPHead(nn.Module):
    """Linear-GELU-LayerNorm-Linear, as UNITER's region and feature heads."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(F.gelu(self.dense(hidden))))


class Pooler(nn.Module):
    """BERT's pooler: tanh(dense([CLS]))."""

    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, cls_hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(cls_hidden))
