"""The cross-modality transformer: BERT's post-LayerNorm encoder on ``scaled_dot_product_attention``."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from memobert_plugin.models.dropout import Dropout, dropout

__all__ = ["TransformerEncoder", "TransformerEncoderLayer", "LAYER_NORM_EPS"]

LAYER_NORM_EPS = 1e-12  # BERT's


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} attention heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.training and self.dropout > 0 and x.device.type == "cpu":
            y = _attention_with_dropout(q, k, v, attn_mask, self.dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))


def _attention_with_dropout(q, k, v, attn_mask: Optional[torch.Tensor], p: float) -> torch.Tensor:
    """``scaled_dot_product_attention`` with dropout, as torch computes it on CPU, in fewer passes and with
    :mod:`.dropout`'s cheaper draw: torch's kernel there is its reference path (separate q and k scaling,
    a mask converted in every layer, a softmax checked for all-masked rows; ~30% of attention's time)."""
    batch, heads, length, head_dim = q.shape
    q, k, v = (t.reshape(batch * heads, length, head_dim) for t in (q, k, v))
    scale = head_dim ** -0.5
    if attn_mask is None:
        scores = torch.bmm(q, k.transpose(1, 2)).mul_(scale)
    else:  # True = may attend; every row has a real position, so no softmax over -inf only
        bias = torch.zeros(attn_mask.shape, dtype=q.dtype).masked_fill_(~attn_mask, float("-inf"))
        scores = torch.baddbmm(bias.expand(batch, heads, 1, length).reshape(batch * heads, 1, length),
                               q, k.transpose(1, 2), alpha=scale)
    weights = dropout(scores.softmax(-1), p, training=True)
    return torch.bmm(weights, v).view(batch, heads, length, head_dim)


class TransformerEncoderLayer(nn.Module):
    """x = LN(x + attn(x)); x = LN(x + ffn(x)), as in BERT."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.attention = SelfAttention(dim, heads, attention_dropout)
        self.attention_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.ffn_in = nn.Linear(dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class TransformerEncoder(nn.Module):
    """A stack of encoder layers over one padded sequence."""

    def __init__(self, layers: int, dim: int, ffn_dim: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(dim, ffn_dim, heads, dropout, attention_dropout) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``padding_mask`` is True at padded positions, shape ``[batch, length]``; None: no padding."""
        # bool mask: True = may attend; broadcast over heads and queries
        attn_mask = None if padding_mask is None else (~padding_mask)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, attn_mask)
        return x
