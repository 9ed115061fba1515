"""Output heads on the encoder's hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memobert_plugin.models.encoder import LAYER_NORM_EPS

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
        return _TiedOutputProjection.apply(self.transform(hidden), self.word_embeddings.weight, self.bias)


class _TiedOutputProjection(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` onto the vocabulary, with a weight gradient autograd can add into.

    F.linear's weight gradient is a transposed view, so autograd sums it with the word-embedding
    lookup's gradient into a third vocabulary-sized tensor (94 MB for BERT-base, page-faulted in
    afresh each step on CPU: ~90 ms). This gradient is a plain tensor, and the lookup's is added
    into it in place. Under autocast the backward computes in the forward's dtype, as F.linear's does.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])
        grad_x = (grad @ weight.to(grad.dtype)).to(x.dtype)
        grad_weight = (rows.t() @ x.reshape(-1, x.shape[-1]).to(grad.dtype)).to(weight.dtype)  # [vocab, dim]
        return grad_x, grad_weight, rows.sum(0).to(weight.dtype)


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
