"""Span masking and whole-word masking: ratios, shapes of spans, words kept whole, determinism."""

import numpy as np
import pytest

from memobert_plugin.data.masking import masking_rng, span_mask, whole_word_mask, word_spans


def _runs(mask):
    """Lengths of the runs of True, the frames read as a ring (a run may go on from the last frame to the first)."""
    if mask.all():
        return np.array([len(mask)])
    mask = np.roll(mask, -int(np.argmin(mask)))  # start at an unmasked frame: no run is cut in two
    padded = np.concatenate([[0], mask.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[::2]


@pytest.mark.parametrize("prob,span", [(0.15, 3), (0.2, 3), (0.15, 1)])
def test_span_mask_ratio_and_span_shape(prob, span):
    masked, total = 0, 0
    for i in range(2000):
        length = 30 + i % 50
        mask = span_mask(masking_rng(1, 1, i), length, prob, span)
        assert mask.shape == (length,)
        # non-overlapping whole spans: every masked run is a multiple of the span length
        assert all(run % span == 0 for run in _runs(mask))
        masked += mask.sum()
        total += length
    assert abs(masked / total - prob) < 0.01


@pytest.mark.parametrize("length,prob,span", [(12, 0.2, 3), (7, 0.15, 3), (20, 0.2, 5)])
def test_span_mask_masks_every_position_equally_often(length, prob, span):
    """Measured per-position rates: the first and last frames as often as interior ones (placing spans
    on a line gave 0.08 at the edges against 0.23 inside for faces)."""
    draws = 20000
    rates = sum(span_mask(masking_rng(0, 1, i), length, prob, span) for i in range(draws)) / draws
    assert np.abs(rates - prob).max() < 0.015, rates


@pytest.mark.parametrize("length", [1, 2, 4, 6, 9, 12])
def test_span_mask_ratio_holds_for_short_inputs(length):
    """No forced minimum: a short face track is not masked far more than the configured ratio."""
    masked = sum(span_mask(masking_rng(2, 1, i), length, 0.2, 3).sum() for i in range(6000))
    assert abs(masked / (6000 * length) - 0.2) < 0.02
    assert span_mask(masking_rng(0), 0, 0.15, 3).sum() == 0


def test_span_mask_is_deterministic_per_key():
    a = span_mask(masking_rng(7, 3, 11), 60, 0.15, 3)
    b = span_mask(masking_rng(7, 3, 11), 60, 0.15, 3)
    c = span_mask(masking_rng(7, 4, 11), 60, 0.15, 3)
    assert (a == b).all()
    assert not (a == c).all()


# a vocab: 0 [PAD] 1 [CLS] 2 [SEP] 3 [MASK] 4 un 5 ##happy 6 day 7 ##s 8 is 9 good
WORD_START = np.array([True, True, True, True, True, False, True, False, True, True])
SPECIAL = np.array([True, True, True, True] + [False] * 6)
RANDOM_IDS = np.flatnonzero(~SPECIAL)


def _sentence(n_words):
    body = []
    for i in range(n_words):
        body += [[4, 5], [6, 7], [8], [9]][i % 4]
    return np.array([1] + body + [2])


def test_word_spans_group_continuations():
    tokens = np.array([1, 4, 5, 6, 7, 8, 2])
    assert word_spans(tokens, ~SPECIAL[tokens], WORD_START) == [(1, 3), (3, 5), (5, 6)]
    # a continuation left alone by truncation starts its own word
    tokens = np.array([1, 5, 8, 2])
    assert word_spans(tokens, ~SPECIAL[tokens], WORD_START) == [(1, 2), (2, 3)]


def _mask(tokens, seed, whole_word=True, prob=0.15):
    return whole_word_mask(masking_rng(seed), tokens, ~SPECIAL[tokens], WORD_START, prob, 3, RANDOM_IDS, 0.1, 0.1, whole_word)


def test_word_ratio_holds_for_short_sentences():
    masked = total = 0
    for seed in range(4000):
        tokens = _sentence(3)
        _, targets = _mask(tokens, seed)
        words = word_spans(tokens, ~SPECIAL[tokens], WORD_START)
        masked += sum(targets[start] for start, _ in words)
        total += len(words)
    assert abs(masked / total - 0.15) < 0.015


def test_whole_words_masked_whole_and_specials_never():
    words_masked = words_total = 0
    for seed in range(500):
        tokens = _sentence(20)
        new, targets = _mask(tokens, seed)
        assert not targets[SPECIAL[tokens]].any()
        assert (new[SPECIAL[tokens]] == tokens[SPECIAL[tokens]]).all()
        for start, end in word_spans(tokens, ~SPECIAL[tokens], WORD_START):
            assert targets[start:end].all() or not targets[start:end].any()
            words_masked += targets[start]
            words_total += 1
        assert (new[~targets] == tokens[~targets]).all()  # only targets change
    assert abs(words_masked / words_total - 0.15) < 0.015


def test_replacement_proportions():
    counts = {"mask": 0, "random": 0, "kept": 0}
    for seed in range(2000):
        tokens = _sentence(12)
        new, targets = _mask(tokens, seed, whole_word=False)
        for pos in np.flatnonzero(targets):
            counts["mask" if new[pos] == 3 else "kept" if new[pos] == tokens[pos] else "random"] += 1
    total = sum(counts.values())
    # a random replacement can draw the original token (1/6 here), which then counts as kept
    assert abs(counts["mask"] / total - 0.8) < 0.03
    assert abs((counts["random"] + counts["kept"]) / total - 0.2) < 0.03


def test_token_level_ablation_splits_words():
    split_words = 0
    for seed in range(300):
        tokens = _sentence(20)
        _, targets = _mask(tokens, seed, whole_word=False, prob=0.5)
        split_words += sum(targets[s] != targets[s + 1] for s, e in word_spans(tokens, ~SPECIAL[tokens], WORD_START) if e - s == 2)
    assert split_words > 0


def test_whole_word_mask_deterministic():
    tokens = _sentence(15)
    a, ta = _mask(tokens, 5)
    b, tb = _mask(tokens, 5)
    assert (a == b).all() and (ta == tb).all()
