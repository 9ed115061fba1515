"""Emotion classification on top of the encoder: a finetuned classifier, or prompting the MLM head."""

from typing import List, Sequence

import torch
import torch.nn.functional as F

from .memobert import EncoderOutput

__all__ = ["FINETUNE_HEAD", "finetune_logits", "PromptVerbalizer", "label_pieces_from"]

#: key of the classifier in ``model.heads`` (the ``finetune`` setting)
FINETUNE_HEAD = "emotion_classifier"


def finetune_logits(model, output: EncoderOutput) -> torch.Tensor:
    """Pooler on [CLS] (the first packed position), then the Linear-GELU-LayerNorm-Linear head."""
    return model.heads[FINETUNE_HEAD](model.pooler(output.hidden[:, 0]))


class PromptVerbalizer:
    """Scores each class by its label word at the prompt's [MASK] slot(s); adds no parameters.

    A label word of n pieces is scored at the first n slots by the mean of its pieces'
    log-probabilities (a sum would handicap longer words from the start); for one-piece
    words this ranks exactly like their MLM logits.
    Only label words compete: the prediction is never an argmax over the vocabulary.
    """

    def __init__(self, label_pieces: Sequence[Sequence[int]], mask_idx: int):
        self.slots = max(len(p) for p in label_pieces)
        self.mask_idx = mask_idx
        ids = torch.zeros(len(label_pieces), self.slots, dtype=torch.long)
        used = torch.zeros(len(label_pieces), self.slots)
        for c, pieces in enumerate(label_pieces):
            ids[c, : len(pieces)] = torch.tensor(list(pieces))
            used[c, : len(pieces)] = 1.0
        self.piece_ids, self.piece_used = ids, used

    def __call__(self, model, output: EncoderOutput, src_tokens: torch.Tensor) -> torch.Tensor:
        slots = src_tokens.eq(self.mask_idx)
        per_row = slots.sum(1)
        if not bool((per_row == self.slots).all()):
            raise ValueError(f"every prompt needs {self.slots} [MASK] slot(s); found {per_row.tolist()}")
        states = output.layout.modality_states(output.hidden, "text")[slots].view(len(src_tokens), self.slots, -1)
        log_probs = F.log_softmax(model.lm_head(states).float(), dim=-1)  # [B, slots, V]
        ids, used = self.piece_ids.to(src_tokens.device), self.piece_used.to(log_probs.device)
        slot_index = torch.arange(self.slots, device=ids.device).expand_as(ids)
        return (log_probs[:, slot_index, ids] * used).sum(-1) / used.sum(-1)  # [B, classes]


def label_pieces_from(tokenize, words: Sequence[str], vocab) -> List[List[int]]:
    """Vocabulary ids of each label word's pieces; an out-of-vocabulary word is an error."""
    pieces = []
    for word in words:
        ids = [vocab.index(p) for p in tokenize(word)]
        if not ids or vocab.unk() in ids:
            raise ValueError(f"label word {word!r} is not in the vocabulary {vocab.source}")
        pieces.append(ids)
    return pieces
