"""Masking primitives shared by the pretraining objectives: pure numpy, seeded by the caller.

Every function takes a ``numpy.random.Generator`` so that an objective can derive it
from ``(seed, epoch, index)`` and a rerun masks identically whatever the worker layout.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

__all__ = [
    "masking_rng",
    "stochastic_count",
    "span_mask",
    "word_spans",
    "whole_word_mask",
]


def masking_rng(*keys: int) -> np.random.Generator:
    """A generator determined by integer keys, e.g. ``(seed, epoch, index, salt)``."""
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in keys])


def stochastic_count(rng: np.random.Generator, expected: float, upper: int) -> int:
    """An integer with mean ``expected`` (stochastic rounding), at most ``upper``.

    Rounding stochastically keeps the masked ratio right on average even for short
    inputs, where rounding (or BERT's "at least one") would mask far too much or nothing:
    a 4-frame face track at 20% gets one 3-frame span 27% of the time, not every time.
    A sample may so draw nothing to mask; its batch's other samples still do.
    """
    if upper <= 0:
        return 0
    return int(min(np.floor(expected + rng.random()), upper))


def span_mask(rng: np.random.Generator, length: int, mask_prob: float, span: int) -> np.ndarray:
    """Non-overlapping spans of ``span`` consecutive frames covering ~``mask_prob`` of ``length``.

    The spans are placed uniformly on a ring of ``length`` frames (a uniform placement turned by
    a uniform offset), so every frame, the first and the last included, is masked with the same
    probability, ``mask_prob`` on average. A span that runs past the last frame goes on at the
    first (two short runs of one span). Placing spans on a line instead would mask the edge
    frames about a third as often as the interior ones. ``span=1`` gives independent frame
    masking. An input shorter than one span is one span (masked whole, or not).
    """
    mask = np.zeros(length, dtype=bool)
    if length == 0:
        return mask
    span = min(span, length)
    k = stochastic_count(rng, mask_prob * length / span, length // span)
    # choose k slots among length - k*(span-1); slot i shifted by i*(span-1) gives disjoint spans
    slots = np.sort(rng.choice(length - k * (span - 1), size=k, replace=False))
    starts = slots + np.arange(k) * (span - 1) + rng.integers(length)
    mask[(starts[:, None] + np.arange(span)) % length] = True
    return mask


def word_spans(tokens: np.ndarray, maskable: np.ndarray, word_start: np.ndarray) -> List[Tuple[int, int]]:
    """``[start, end)`` position ranges of words: a word-start token and its continuations.

    ``maskable`` is per position (special tokens are not); ``word_start`` is per token id.
    A continuation with no word before it (e.g. after truncation) starts its own word.
    """
    spans: List[Tuple[int, int]] = []
    for pos, token in enumerate(tokens):
        if not maskable[pos]:
            continue
        continues = not word_start[token] and spans and spans[-1][1] == pos
        if continues:
            spans[-1] = (spans[-1][0], pos + 1)
        else:
            spans.append((pos, pos + 1))
    return spans


def whole_word_mask(
    rng: np.random.Generator,
    tokens: np.ndarray,
    maskable: np.ndarray,
    word_start: np.ndarray,
    mask_prob: float,
    mask_idx: int,
    random_ids: np.ndarray,
    leave_unmasked_prob: float,
    random_token_prob: float,
    whole_word: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """BERT masking over whole words (or single tokens when ``whole_word`` is False).

    ~``mask_prob`` of the words are chosen; each chosen word is replaced by [MASK]
    (1 - leave - random of the time), by random tokens, or kept, as a whole.
    Returns the new tokens and the boolean mask of positions to predict.
    """
    if whole_word:
        words = word_spans(tokens, maskable, word_start)
    else:
        words = [(int(p), int(p) + 1) for p in np.flatnonzero(maskable)]
    targets = np.zeros(len(tokens), dtype=bool)
    masked = tokens.copy()
    k = stochastic_count(rng, mask_prob * len(words), len(words))
    if k == 0:
        return masked, targets
    chosen = rng.choice(len(words), size=k, replace=False)
    decisions = rng.random(k)
    for word, u in zip(chosen, decisions):
        start, end = words[word]
        targets[start:end] = True
        if u < leave_unmasked_prob:
            continue
        if u < leave_unmasked_prob + random_token_prob:
            masked[start:end] = rng.choice(random_ids, size=end - start)
        else:
            masked[start:end] = mask_idx
    return masked, targets
