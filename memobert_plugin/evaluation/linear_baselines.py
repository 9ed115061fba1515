"""Linear baselines for the demo world's tables, in numpy (no scikit-learn at run time).

* **distant supervision**: a linear classifier trained only on the unlabelled pretraining split,
  each utterance labelled by the emotion word its text says (utterances naming none are left
  out), on pooled face + voice features; tested on each fold's test speaker. It is what the
  pretraining texts give away without any cross-modal learning: the zero-shot prompt's rival.
* **linear probes**: per fold, one classifier per modality (text as a bag of word pieces, face,
  voice) and one on all of them fused, trained on the fold's labelled training speakers.

Features are per-utterance means of the frames (zeros for an utterance without frames),
standardised with the training set's statistics.
"""

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from memobert_plugin.class_metrics import unweighted_average_recall

__all__ = ["LogisticRegression", "pooled_features", "word_piece_counts", "emotion_named",
           "distant_supervision_uar", "linear_probe_uars", "PROBE_FEATURES"]

#: the linear probes' feature sets: one per modality, and all fused
PROBE_FEATURES = {"text": ("text",), "face": ("visual",), "voice": ("acoustic",),
                  "fused": ("text", "visual", "acoustic")}


class LogisticRegression:
    """Multinomial logistic regression with L2 and class-balanced weights (UAR is the target figure),
    fitted by full-batch gradient descent with Nesterov momentum on standardised features."""

    def __init__(self, num_classes: int, l2: float = 1e-2, steps: int = 300, lr: float = 0.5):
        self.num_classes, self.l2, self.steps, self.lr = num_classes, l2, steps, lr

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LogisticRegression":
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        x = (x - self.mean) / self.std
        counts = np.bincount(y, minlength=self.num_classes)
        weight = (len(y) / (self.num_classes * np.maximum(counts, 1)))[y][:, None] / len(y)
        target = np.eye(self.num_classes)[y]
        w = np.zeros((x.shape[1] + 1, self.num_classes))
        velocity = np.zeros_like(w)
        xb = np.hstack([x, np.ones((len(x), 1))])
        for _ in range(self.steps):
            ahead = w + 0.9 * velocity
            logits = xb @ ahead
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            grad = xb.T @ (weight * (probs - target))
            grad[:-1] += self.l2 * ahead[:-1]
            velocity = 0.9 * velocity - self.lr * grad
            w = w + velocity
        self.w = w
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = (x - self.mean) / self.std
        return (np.hstack([x, np.ones((len(x), 1))]) @ self.w).argmax(1)


def _uar(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    return unweighted_average_recall(confusion.tolist())


def pooled_features(data_dir: str, split: str, stream: str) -> np.ndarray:
    """``[utterances, dim]``: each utterance's mean frame of ``stream`` (zeros when it has none)."""
    from memobert_plugin.data.feature_store import FeatureStore

    store = FeatureStore(data_dir, split, stream)
    sums = np.concatenate([np.zeros((1, store.dim)), np.cumsum(np.asarray(store.frames, dtype=np.float64), axis=0)])
    totals = sums[store.offsets[1:]] - sums[store.offsets[:-1]]  # each utterance's sum of frames
    return (totals / np.maximum(store.lengths, 1)[:, None]).astype(np.float32)


def _token_ids(data_dir: str, split: str):
    """The data dir's vocabulary and its split's texts (word-piece ids per utterance)."""
    from fairseq.data import data_utils

    from memobert_plugin.data.vocabulary import BertVocabulary

    vocab = BertVocabulary.load(os.path.join(data_dir, "dict.txt"))
    return vocab, data_utils.load_indexed_dataset(os.path.join(data_dir, split), vocab)


def _texts(data_dir: str, split: str) -> List[List[str]]:
    """Each utterance's words (word pieces joined back)."""
    vocab, texts = _token_ids(data_dir, split)
    return [vocab.string(texts[i]).replace(" ##", "").split() for i in range(len(texts))]


def word_piece_counts(data_dir: str, split: str) -> np.ndarray:
    """``[utterances, vocabulary]`` bag of word pieces of each utterance's text."""
    vocab, texts = _token_ids(data_dir, split)
    counts = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for i in range(len(texts)):
        np.add.at(counts[i], texts[i].numpy(), 1)
    return counts


def emotion_named(words: Sequence[str], emotion_words: Dict[str, Sequence[str]]) -> Optional[int]:
    """The index (in ``emotion_words``' order) of the one emotion the words name, or None (none, or several)."""
    named = {e for e, (_, synonyms) in enumerate(emotion_words.items()) if any(w in synonyms for w in words)}
    return named.pop() if len(named) == 1 else None


def _labelled(data_dir: str, classes: Sequence[str]):
    from memobert_plugin.data.folds import LABELLED_SPLIT
    from memobert_plugin.data.utterance_meta import read_meta

    meta = read_meta(os.path.join(data_dir, f"{LABELLED_SPLIT}.meta.tsv"))
    return meta, np.array([list(classes).index(m.label) for m in meta])


def distant_supervision_uar(pretrain_dir: str, emotion_dir: str, emotion_words: Dict[str, Sequence[str]],
                            folds: Sequence[int]) -> Dict[int, float]:
    """Per fold: test UAR of a classifier trained on the pretraining split labelled by its texts' emotion words."""
    from memobert_plugin.data.folds import LABELLED_SPLIT, fold_split

    streams = ("visual", "acoustic")
    said = [emotion_named(words, emotion_words) for words in _texts(pretrain_dir, "train")]
    keep = np.array([s is not None for s in said])
    x = np.hstack([pooled_features(pretrain_dir, "train", s) for s in streams])[keep]
    model = LogisticRegression(len(emotion_words)).fit(x, np.array([s for s in said if s is not None]))
    meta, labels = _labelled(emotion_dir, list(emotion_words))
    test_x = np.hstack([pooled_features(emotion_dir, LABELLED_SPLIT, s) for s in streams])
    predicted = model.predict(test_x)
    return {fold: _uar(labels[t], predicted[t], len(emotion_words))
            for fold in folds for t in [fold_split(meta, fold).test]}


def linear_probe_uars(emotion_dir: str, classes: Sequence[str], folds: Sequence[int]) -> Dict[str, Dict[int, float]]:
    """Per feature set of :data:`PROBE_FEATURES` and fold: test UAR of a probe trained on the fold's training speakers."""
    from memobert_plugin.data.folds import LABELLED_SPLIT, fold_split

    meta, labels = _labelled(emotion_dir, classes)
    features = {s: pooled_features(emotion_dir, LABELLED_SPLIT, s) for s in ("visual", "acoustic")}
    features["text"] = word_piece_counts(emotion_dir, LABELLED_SPLIT)
    out: Dict[str, Dict[int, float]] = {name: {} for name in PROBE_FEATURES}
    for fold in folds:
        split = fold_split(meta, fold)
        for name, streams in PROBE_FEATURES.items():
            x = np.hstack([features[s] for s in streams])
            model = LogisticRegression(len(classes)).fit(x[split.train], labels[split.train])
            out[name][fold] = _uar(labels[split.test], model.predict(x[split.test]), len(classes))
    return out
