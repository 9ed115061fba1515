"""Speaker-independent cross-validation folds, and stratified low-resource subsets.

Fold k tests on the k-th speaker (speakers sorted by name). Under the ``session``
scheme (IEMOCAP: 5 sessions x 2 speakers = 10 folds; MSP-IMPROV: 6 x 2 = 12) the other
speaker(s) of that session are the validation set and the remaining sessions train;
under ``speaker`` (leave one speaker out, for corpora without paired sessions) the next
speaker validates and all others train. No speaker is ever in two of the three sets.

Under ``fixed`` (a corpus with an official split, e.g. MELD: every utterance's ``subset`` in
the meta file is train, valid or test) there is one fold, the corpus's own split.

Fold 0 is for a final model on all labelled speakers: the last speaker by name validates
(for checkpoint selection), every other speaker trains, and the test set is empty; under
``fixed`` the valid subset validates and train and test train.
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from memobert_plugin.data.utterance_meta import FIXED_SUBSETS, UtteranceMeta

__all__ = ["FoldSplit", "fold_split", "num_folds", "resolve_scheme", "stratified_subset", "CV_SCHEMES", "LABELLED_SPLIT",
           "FINAL_FOLD"]

CV_SCHEMES = ("auto", "session", "speaker", "fixed")
LABELLED_SPLIT = "all"  #: the data dir's split holding every labelled utterance (``all.meta.tsv``)
FINAL_FOLD = 0


@dataclass(frozen=True)
class FoldSplit:
    fold: int
    scheme: str
    test_speaker: str
    valid_speakers: tuple
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def subset(self, name: str) -> np.ndarray:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def _sessions(meta: Sequence[UtteranceMeta]) -> Dict[str, set]:
    sessions: Dict[str, set] = {}
    for row in meta:
        sessions.setdefault(row.session or row.speaker, set()).add(row.speaker)
    return sessions


def _check_fixed_subsets(meta: Sequence[UtteranceMeta]) -> None:
    """Every row has a subset, and train and valid have utterances (ValueError naming the first that fails)."""
    for line_no, row in enumerate(meta, start=2):
        if not row.subset:
            raise ValueError(f"the fixed split needs every utterance's subset: {row.id!r} (meta line {line_no}) has "
                             "none; give every manifest row a subset, or use speaker folds")
    counts = {name: sum(row.subset == name for row in meta) for name in FIXED_SUBSETS}
    empty = [name for name in ("train", "valid") if not counts[name]]
    if empty:
        raise ValueError(f"the fixed split has no {' and no '.join(empty)} utterance ({counts})")


def resolve_scheme(meta: Sequence[UtteranceMeta], scheme: str) -> str:
    """``auto``: ``fixed`` when the meta file gives subsets; else ``session`` when every session has at least
    two speakers, else ``speaker``."""
    if scheme not in CV_SCHEMES:
        raise ValueError(f"cross-validation scheme must be one of {CV_SCHEMES}, got {scheme!r}")
    if scheme == "auto":
        if any(row.subset for row in meta):
            scheme = "fixed"
        else:
            return "session" if all(len(s) >= 2 for s in _sessions(meta).values()) else "speaker"
    if scheme == "fixed":
        _check_fixed_subsets(meta)
    return scheme


def num_folds(meta: Sequence[UtteranceMeta], scheme: str = "auto") -> int:
    """Folds 1..N of the scheme: one per speaker, or the single fixed split."""
    return 1 if resolve_scheme(meta, scheme) == "fixed" else len({row.speaker for row in meta})


def _fixed_split(meta: Sequence[UtteranceMeta], fold: int) -> FoldSplit:
    if fold not in (FINAL_FOLD, 1):
        raise ValueError(f"--fold {fold}: the corpus's fixed split is one fold, 1 (or {FINAL_FOLD}: a final model)")
    subset_of = np.array([row.subset for row in meta])
    valid = np.flatnonzero(subset_of == "valid")
    if fold == FINAL_FOLD:
        return FoldSplit(fold=fold, scheme="fixed", test_speaker="", valid_speakers=(),
                         train=np.flatnonzero(subset_of != "valid"), valid=valid, test=valid[:0])
    return FoldSplit(fold=fold, scheme="fixed", test_speaker="", valid_speakers=(),
                     train=np.flatnonzero(subset_of == "train"), valid=valid, test=np.flatnonzero(subset_of == "test"))


def fold_split(meta: Sequence[UtteranceMeta], fold: int, scheme: str = "auto") -> FoldSplit:
    """Row indices of fold ``fold`` (1-based; 0: the final model's split) for train, valid and test."""
    scheme = resolve_scheme(meta, scheme)
    if scheme == "fixed":
        return _fixed_split(meta, fold)
    speakers = sorted({row.speaker for row in meta})
    if not 0 <= fold <= len(speakers):
        raise ValueError(f"--fold {fold}: the corpus has {len(speakers)} speakers, so folds are 1..{len(speakers)} "
                         f"(or {FINAL_FOLD}: a final model on all speakers)")
    speaker_of = np.array([row.speaker for row in meta])
    if fold == FINAL_FOLD:
        if len(speakers) < 2:
            raise ValueError("a final model needs at least 2 speakers (training, validation)")
        valid = np.flatnonzero(speaker_of == speakers[-1])
        return FoldSplit(fold=fold, scheme=scheme, test_speaker="", valid_speakers=(speakers[-1],),
                         train=np.flatnonzero(speaker_of != speakers[-1]), valid=valid, test=valid[:0])
    test_speaker = speakers[fold - 1]
    if scheme == "session":
        session_of = {row.speaker: row.session or row.speaker for row in meta}
        partners = {s for s in speakers if session_of[s] == session_of[test_speaker]} - {test_speaker}
        if not partners:
            raise ValueError(f"session scheme: speaker {test_speaker!r} has no session partner to validate on")
        valid_speakers = tuple(sorted(partners))
        train_mask = np.array([session_of[s] != session_of[test_speaker] for s in speaker_of])
    else:
        if len(speakers) < 3:
            raise ValueError("leave-one-speaker-out needs at least 3 speakers (test, validation, training)")
        valid_speakers = (speakers[fold % len(speakers)],)
        train_mask = ~np.isin(speaker_of, (test_speaker,) + valid_speakers)
    if not train_mask.any():  # fairseq would fail deep in batching on an empty training set
        raise ValueError(
            f"fold {fold} ({scheme} scheme): no training speaker left: {test_speaker} is tested, "
            f"{','.join(valid_speakers)} validate{'s' if len(valid_speakers) == 1 else ''}, and the corpus has no "
            "other speaker; a corpus of one session needs --cv-scheme speaker and at least 3 speakers")
    return FoldSplit(
        fold=fold,
        scheme=scheme,
        test_speaker=test_speaker,
        valid_speakers=valid_speakers,
        train=np.flatnonzero(train_mask),
        valid=np.flatnonzero(np.isin(speaker_of, valid_speakers)),
        test=np.flatnonzero(speaker_of == test_speaker),
    )


def stratified_subset(indices: np.ndarray, labels: Sequence[int], fraction: float, seed: int) -> np.ndarray:
    """``fraction`` of ``indices`` drawn per class (at least one each), sorted, reproducible from ``seed``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}; to test a prompt with no labels "
                         "(zero-shot) use memobert-cv run --fractions 0, which trains nothing")
    if fraction == 1.0:
        return np.asarray(indices)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    chosen: List[np.ndarray] = []
    for label in np.unique(labels[indices]):
        members = indices[labels[indices] == label]
        count = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen))
