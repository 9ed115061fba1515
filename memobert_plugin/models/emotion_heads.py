"""Emotion read-outs registered on the model, as RoBERTa's classification heads: a finetuned classifier,
or prompting the MLM head.

A head is called as ``head(output, src_tokens, model)`` by :meth:`MemobertModel.emotion_logits` and
returns ``[batch, classes]`` scores; it may read the model's shared parts (pooler, MLM head).
"""

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memobert_plugin.models.heads import MLPHead
from memobert_plugin.models.memobert import EncoderOutput, MemobertModel

__all__ = ["EMOTION_HEAD", "EmotionClassificationHead", "PromptVerbalizer", "label_pieces_from"]

#: the name the ``memobert_emotion`` task registers its head under
EMOTION_HEAD = "emotion"


class EmotionClassificationHead(MLPHead):
    """The ``finetune`` setting: BERT's pooler on [CLS] (the first packed position), then Linear-GELU-LayerNorm-Linear."""

    def forward(self, output: EncoderOutput, src_tokens: torch.Tensor, model: MemobertModel) -> torch.Tensor:
        return super().forward(model.pooler(output.hidden[:, 0]))


class PromptVerbalizer(nn.Module):
    """The ``prompt`` setting: scores each class by its label word at the prompt's [MASK] slot(s); no parameters.

    A label word of n pieces is scored at the first n slots by the mean of its pieces'
    log-probabilities (a sum would handicap longer words from the start); for one-piece
    words this ranks exactly like their MLM logits.
    Only label words compete: the prediction is never an argmax over the vocabulary.
    """

    def __init__(self, label_pieces: Sequence[Sequence[int]], mask_idx: int):
        super().__init__()
        self.slots = max(len(p) for p in label_pieces)
        self.mask_idx = mask_idx
        ids = torch.zeros(len(label_pieces), self.slots, dtype=torch.long)
        used = torch.zeros(len(label_pieces), self.slots)
        for c, pieces in enumerate(label_pieces):
            ids[c, : len(pieces)] = torch.tensor(list(pieces))
            used[c, : len(pieces)] = 1.0
        # derived from the task's options, not learnt: not saved in checkpoints, but moved with the model
        self.register_buffer("piece_ids", ids, persistent=False)
        self.register_buffer("piece_used", used, persistent=False)

    def forward(self, output: EncoderOutput, src_tokens: torch.Tensor, model: MemobertModel) -> torch.Tensor:
        slots = src_tokens.eq(self.mask_idx)
        per_row = slots.sum(1)
        if not bool((per_row == self.slots).all()):
            raise ValueError(f"every prompt needs {self.slots} [MASK] slot(s); found {per_row.tolist()}")
        states = output.layout.modality_states(output.hidden, "text")[slots].view(len(src_tokens), self.slots, -1)
        log_probs = F.log_softmax(model.lm_head(states).float(), dim=-1)  # [B, slots, V]
        slot_index = torch.arange(self.slots, device=self.piece_ids.device).expand_as(self.piece_ids)
        used = self.piece_used.to(log_probs.dtype)
        return (log_probs[:, slot_index, self.piece_ids] * used).sum(-1) / used.sum(-1)  # [B, classes]


def label_pieces_from(tokenize, words: Sequence[str], vocab) -> List[List[int]]:
    """Vocabulary ids of each label word's pieces; an out-of-vocabulary word is an error."""
    pieces = []
    for word in words:
        ids = [vocab.index(p) for p in tokenize(word)]
        if not ids or vocab.unk() in ids:
            raise ValueError(f"label word {word!r} is not in the vocabulary {vocab.source}")
        pieces.append(ids)
    return pieces
