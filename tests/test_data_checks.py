"""Issue 12: data that does not fit together stops training at start, with the files named.

In-process through the task (what fairseq-train and fairseq-validate call when they start):
dataset.json's checksums, truncated and foreign feature files, a dictionary shorter than the
ids in the text, an empty split, objective ratios that cannot be drawn from.
"""

import json
import os
import shutil

import numpy as np
import pytest

from memobert_plugin import files
from memobert_plugin.data.consistency import VERIFIED_NAME, DataChangedError
from memobert_plugin.data.feature_store import FeatureStoreWriter
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.prepare.binarize import TextBinarizer
from memobert_plugin.files import sha256_file
from memobert_plugin.tasks.memobert_pretrain import MemobertPretrainTask, pretrain_config


@pytest.fixture
def data(demo_corpus, tmp_path):
    """A copy of the demo pretraining data dir without its dataset.json, as a hand-made data dir: the
    checks that do not need checksums."""
    data = shutil.copytree(demo_corpus.pretrain_data, tmp_path / "data")
    os.remove(data / "dataset.json")
    return data


def _record_checksums(data) -> None:
    """dataset.json's checksums, as memobert-prepare write records them."""
    names = sorted(n for n in os.listdir(data) if n == "dict.txt" or n.startswith(("train.", "valid.")))
    (data / "dataset.json").write_text(json.dumps({"checksums": {n: sha256_file(data / n) for n in names}}))


def _task(data, **options):
    return MemobertPretrainTask.setup_task(pretrain_config()(data=str(data), seed=1, **options))


def _load(data, split="train"):
    _task(data).load_dataset(split)


@pytest.fixture
def hashed(monkeypatch):
    """The paths hashed from now on; the files the test just wrote count as settled (no racy-write margin)."""
    paths = []
    monkeypatch.setattr(files, "sha256_file", lambda path: paths.append(path) or sha256_file(path))
    monkeypatch.setattr(files, "RACY_NS", 0)
    return paths


def test_files_changed_since_preparation_are_named(data, hashed):
    _record_checksums(data)
    _load(data)
    first = len(hashed)
    assert first == 1 + 2 + 6  # dict.txt, train.bin/.idx, three streams' .npy/.len
    _load(data)
    assert len(hashed) == first  # remembered under their stat in .verified.json: not hashed again
    assert (data / VERIFIED_NAME).exists()

    lines = (data / "dict.txt").read_text().splitlines()
    lines[20], lines[21] = lines[21], lines[20]  # two entries swapped: same size, same ids, other words
    (data / "dict.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataChangedError, match=rf"{data}: dict.txt changed since memobert-prepare wrote them"):
        _load(data)

    _record_checksums(data)
    frames = np.load(data / "valid.acoustic.npy")
    frames[0, 0] += 1
    np.save(data / "valid.acoustic.npy", frames)
    _load(data, "train")  # only the split being loaded (and dict.txt) is compared
    with pytest.raises(DataChangedError, match=r"valid.acoustic.npy changed .* differs\); the data no longer fits"):
        _load(data, "valid")
    os.remove(data / "valid.visual.len")
    with pytest.raises(DataChangedError, match=r"valid.acoustic.npy changed and valid.visual.len missing"):
        _load(data, "valid")


def test_a_same_size_edit_with_its_mtime_set_back_is_noticed(data, hashed):
    """Size and modification time can both be restored by hand; the inode change time cannot."""
    _record_checksums(data)
    _load(data)
    npy = data / "train.acoustic.npy"
    before = os.stat(npy)
    frames = np.load(npy)
    frames[3, 7] += 1
    np.save(npy, frames)
    os.utime(npy, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(npy).st_size, os.stat(npy).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(DataChangedError, match=r"train.acoustic.npy changed since memobert-prepare wrote them"):
        _load(data)
    assert hashed[-1] == str(npy)  # hashed again: only that file
    assert hashed.count(str(npy)) == 2 and len(hashed) == 1 + 2 + 6 + 1


def test_a_file_written_during_the_check_is_hashed_again_next_time(data, monkeypatch):
    """A digest taken within the racy-write margin of the file's last change is not remembered:
    a write in the same filesystem clock tick would leave the same stat behind."""
    _record_checksums(data)
    paths = []
    monkeypatch.setattr(files, "sha256_file", lambda path: paths.append(path) or sha256_file(path))
    monkeypatch.setattr(files, "RACY_NS", 10**12)  # every file counts as just written
    _load(data)
    _load(data)
    assert len(paths) == 2 * (1 + 2 + 6)


def test_the_demo_world_records_its_checksums_too(demo_corpus, tmp_path):
    data = shutil.copytree(demo_corpus.pretrain_data, tmp_path / "data")
    _load(data)
    lines = (data / "dict.txt").read_text().splitlines()
    lines[20], lines[21] = lines[21], lines[20]
    (data / "dict.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataChangedError, match=rf"{data}: dict.txt changed since memobert-demo-corpus wrote them.*"
                                               "rerun memobert-demo-corpus for this data dir"):
        _load(data)


def test_truncated_feature_store_is_named(data):
    npy = data / "train.acoustic.npy"
    npy.write_bytes(npy.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=rf"{npy}: 100000 bytes but its header promises \d+ .* cut short"):
        _task(data)


def test_random_bytes_as_feature_store_are_named(data):
    npy = data / "valid.visual.npy"
    npy.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match=rf"{npy}: not a .npy feature file") as refused:
        _load(data, "valid")
    assert "allow_pickle" not in str(refused.value)


def test_dictionary_shorter_than_the_ids_in_use_is_named(data):
    vocab = BertVocabulary.load(str(data / "dict.txt"))
    (data / "dict.txt").write_text("".join(line + "\n" for line in (data / "dict.txt").read_text().splitlines()[:20]))
    with pytest.raises(ValueError, match=rf"{data}/train.bin uses token id \d+ but {data}/dict.txt has only 20 entries"):
        _load(data)
    assert len(vocab) > 20


def test_empty_training_split_is_named(data):
    vocab = BertVocabulary.load(str(data / "dict.txt"))
    TextBinarizer(vocab, str(data / "train")).close()
    for stream, dim in (("visual", 342), ("visual_fer", 8), ("acoustic", 768)):
        FeatureStoreWriter(str(data), "train", stream, dim).close()
    with pytest.raises(ValueError, match=rf"{data}/train.bin: split 'train' has no utterances; prepare it with some"):
        _load(data)


@pytest.mark.parametrize("ratios", [[1e999, 0, 0, 0], [float("nan"), 1, 1, 1], [-1, 1, 1, 1], [0, 0, 0, 0]])
def test_objective_ratios_that_cannot_be_drawn_from_fail_at_setup(data, ratios):
    with pytest.raises(ValueError, match=r"--objective-ratios must be finite and >= 0 with a positive sum"):
        _task(data, objective_ratios=ratios)
