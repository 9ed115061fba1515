"""Speaker-independent folds and stratified low-resource subsets."""

import collections

import numpy as np
import pytest

from memobert_plugin.data.folds import fold_split, num_folds, resolve_scheme, stratified_subset
from memobert_plugin.data.utterance_meta import UtteranceMeta, read_meta


def _corpus(sessions, per_speaker=5, genders="FM"):
    return [UtteranceMeta(f"Ses{s:02d}{g}_{i}", f"Ses{s:02d}{g}", f"Ses{s:02d}", "neutral")
            for s in range(1, sessions + 1) for g in genders for i in range(per_speaker)]


@pytest.mark.parametrize("sessions,folds", [(5, 10), (6, 12)])  # IEMOCAP, MSP-IMPROV
def test_session_folds(sessions, folds):
    meta = _corpus(sessions)
    assert num_folds(meta) == folds and resolve_scheme(meta, "auto") == "session"
    tested = set()
    for fold in range(1, folds + 1):
        split = fold_split(meta, fold)
        speakers = {name: {meta[i].speaker for i in split.subset(name)} for name in ("train", "valid", "test")}
        assert speakers["test"] == {split.test_speaker}
        session = meta[split.test[0]].session
        assert speakers["valid"] == {s for s in {m.speaker for m in meta} if s.startswith(session)} - speakers["test"]
        assert not speakers["train"] & (speakers["valid"] | speakers["test"]) and not speakers["valid"] & speakers["test"]
        assert all(meta[i].session != session for i in split.train)
        assert len(split.train) + len(split.valid) + len(split.test) == len(meta)
        tested |= speakers["test"]
    assert len(tested) == folds  # every speaker is tested exactly once


def test_leave_one_speaker_out():
    meta = _corpus(1, genders="ABCDE")
    meta = [UtteranceMeta(m.id, m.speaker, "", m.label) for m in meta]  # no sessions
    assert resolve_scheme(meta, "auto") == "speaker"
    for fold in range(1, 6):
        split = fold_split(meta, fold)
        parts = [{meta[i].speaker for i in split.subset(n)} for n in ("train", "valid", "test")]
        assert len(parts[1]) == 1 and len(parts[2]) == 1 and len(parts[0]) == 3
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_fold_out_of_range():
    with pytest.raises(ValueError, match="folds are 1..10"):
        fold_split(_corpus(5), 11)


def test_stratified_subset():
    labels = np.array([0] * 100 + [1] * 40 + [2] * 10 + [3] * 3)
    indices = np.arange(len(labels))
    subset = stratified_subset(indices, labels, 0.1, seed=1)
    counts = collections.Counter(labels[subset])
    assert counts == {0: 10, 1: 4, 2: 1, 3: 1}
    assert (subset == stratified_subset(indices, labels, 0.1, seed=1)).all()
    assert not (subset == stratified_subset(indices, labels, 0.1, seed=2)).all()
    with pytest.raises(ValueError, match="must be in"):
        stratified_subset(indices, labels, 0.0, seed=1)


def test_meta_errors(tmp_path):
    path = tmp_path / "all.meta.tsv"
    path.write_text("id\tspeaker\tlabel\nu1\ts1\thappy\n")
    with pytest.raises(ValueError, match=r"all.meta.tsv:1: header lacks the columns \['session'\]"):
        read_meta(str(path))
    path.write_text("id\tspeaker\tsession\tlabel\nu1\ts1\tS\thappy\nu1\ts2\tS\tsad\n")
    with pytest.raises(ValueError, match=r"all.meta.tsv:3: duplicate utterance id 'u1' \(first on line 2\)"):
        read_meta(str(path))


@pytest.mark.parametrize("scheme", ["session", "speaker"])
def test_fold_zero_is_the_final_model_on_all_speakers(scheme):
    meta = _corpus(5)
    split = fold_split(meta, 0, scheme)
    speakers = lambda rows: {meta[i].speaker for i in rows}  # noqa: E731
    assert speakers(split.valid) == {"Ses05M"} and len(split.test) == 0  # the last speaker by name validates
    assert speakers(split.train) == {m.speaker for m in meta} - {"Ses05M"}
    with pytest.raises(ValueError, match=r"folds are 1\.\.10 \(or 0: a final model on all speakers\)"):
        fold_split(meta, 11)


def _fixed_corpus():
    """MELD-like: the same speakers in every subset, each row's subset given (written and read back)."""
    subsets = ["train"] * 6 + ["valid"] * 2 + ["test"] * 3
    return [UtteranceMeta(f"dia{i}_utt0", ("Ross", "Rachel", "Joey")[i % 3], "", "joy", subset)
            for i, subset in enumerate(subsets)]


def test_fixed_split_is_the_corpus_own(tmp_path):
    path = tmp_path / "all.meta.tsv"
    path.write_text("id\tspeaker\tsession\tlabel\tsubset\n"
                    + "".join(f"{m.id}\t{m.speaker}\t\t{m.label}\t{m.subset}\n" for m in _fixed_corpus()))
    meta = read_meta(str(path))
    assert resolve_scheme(meta, "auto") == "fixed" and num_folds(meta) == 1
    split = fold_split(meta, 1)
    assert [list(split.subset(s)) for s in ("train", "valid", "test")] == [list(range(6)), [6, 7], [8, 9, 10]]
    final = fold_split(meta, 0)  # the final model trains on train and test, validates on valid
    assert list(final.train) == [0, 1, 2, 3, 4, 5, 8, 9, 10] and list(final.valid) == [6, 7] and not len(final.test)
    with pytest.raises(ValueError, match=r"--fold 2: the corpus's fixed split is one fold, 1"):
        fold_split(meta, 2)
    assert num_folds(meta, "speaker") == 3  # speaker folds stay available on such a corpus


def test_fixed_split_errors(tmp_path):
    meta = _fixed_corpus()
    meta[4] = UtteranceMeta(meta[4].id, meta[4].speaker, "", "joy")
    with pytest.raises(ValueError, match=r"'dia4_utt0' \(meta line 6\) has none"):
        fold_split(meta, 1)
    no_valid = [UtteranceMeta(m.id, m.speaker, "", "joy", "train" if m.subset == "valid" else m.subset)
                for m in _fixed_corpus()]
    with pytest.raises(ValueError, match=r"the fixed split has no valid utterance"):
        fold_split(no_valid, 1)
    assert resolve_scheme(_corpus(5), "auto") == "session"  # no subset column: speaker folds as before
    with pytest.raises(ValueError, match="fixed split needs every utterance's subset"):
        resolve_scheme(_corpus(5), "fixed")
    path = tmp_path / "all.meta.tsv"
    path.write_text("id\tspeaker\tsession\tlabel\tsubset\nu1\ts1\t\tjoy\tdev\n")
    with pytest.raises(ValueError, match=r"all.meta.tsv:2: utterance 'u1' has subset 'dev', not one of"):
        read_meta(str(path))
