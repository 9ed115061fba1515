"""The vocabulary (ids = BERT ids) and the memory-mapped feature store."""

import os

import numpy as np
import pytest

from memobert_plugin.data.feature_store import FeatureStore, FeatureStoreWriter, feature_paths
from memobert_plugin.data.vocabulary import BertVocabulary


def _write(path, lines):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def test_vocab_ids_are_line_numbers_and_roles(tmp_path):
    tokens = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##s", "cat"]
    _write(tmp_path / "vocab.txt", tokens)
    vocab = BertVocabulary.load(str(tmp_path / "vocab.txt"))
    assert [vocab.index(t) for t in tokens] == list(range(len(tokens)))
    assert (vocab.pad(), vocab.unk(), vocab.bos(), vocab.eos(), vocab.mask_index) == (0, 2, 3, 4, 5)
    assert vocab.word_start_flags().tolist() == [True] * 7 + [False, True]
    assert sorted(vocab.special_ids()) == [0, 1, 2, 3, 4, 5]
    # saved as a fairseq dict.txt and read back: the same ids
    vocab.save(str(tmp_path / "dict.txt"))
    assert BertVocabulary.load(str(tmp_path / "dict.txt")).symbols == tokens


def test_sentencepiece_vocab_word_starts(tmp_path):
    _write(tmp_path / "dict.txt", ["[PAD] 0", "[UNK] 0", "[CLS] 0", "[SEP] 0", "[MASK] 0", "\u2581the 5", "s 3", "\u2581cat 2"])
    flags = BertVocabulary.load(str(tmp_path / "dict.txt")).word_start_flags()
    assert flags.tolist()[5:] == [True, False, True]


def test_vocab_errors_name_the_problem(tmp_path):
    _write(tmp_path / "dup.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "a"])
    with pytest.raises(ValueError, match=r"dup.txt:7: duplicate token 'a'"):
        BertVocabulary.load(str(tmp_path / "dup.txt"))
    _write(tmp_path / "nomask.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    with pytest.raises(ValueError, match=r"lacks the special tokens \['\[MASK\]'\]"):
        BertVocabulary.load(str(tmp_path / "nomask.txt"))
    _write(tmp_path / "bad.txt", ["[PAD]", "a b c"])
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        BertVocabulary.load(str(tmp_path / "bad.txt"))


def test_feature_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    utts = [rng.standard_normal((n, 5)).astype(np.float32) for n in (3, 0, 7)]
    with FeatureStoreWriter(str(tmp_path), "train", "visual", 5) as writer:
        for i, frames in enumerate(utts):
            writer.append(frames, item=f"u{i}")
        assert not os.path.exists(feature_paths(str(tmp_path), "train", "visual")[0])  # visible only at close
    store = FeatureStore(str(tmp_path), "train", "visual")
    assert len(store) == 3 and store.dim == 5 and store.lengths.tolist() == [3, 0, 7]
    for frames, stored in zip(utts, (store[i] for i in range(3))):
        assert stored.dtype == np.float16
        np.testing.assert_allclose(stored, frames, atol=2e-3)


def test_feature_store_rejects_bad_frames(tmp_path):
    writer = FeatureStoreWriter(str(tmp_path), "train", "acoustic", 4)
    with pytest.raises(ValueError, match=r"utt7: non-finite"):
        writer.append(np.array([[0.0, np.nan, 1.0, 2.0]]), item="utt7")
    with pytest.raises(ValueError, match=r"utt8: .*expects \[frames, 4\].*shape \(2, 3\)"):
        writer.append(np.zeros((2, 3)), item="utt8")
    with pytest.raises(ValueError, match=r"utt9: non-finite"):
        writer.append(np.full((1, 4), 1e6), item="utt9")  # beyond float16's range
    writer.abort()
    assert not os.listdir(tmp_path)


def test_feature_store_detects_mismatched_files(tmp_path):
    with FeatureStoreWriter(str(tmp_path), "train", "visual", 2) as writer:
        writer.append(np.zeros((4, 2)))
    npy, length = feature_paths(str(tmp_path), "train", "visual")
    _write(length, ["5"])
    with pytest.raises(ValueError, match="from different runs"):
        FeatureStore(str(tmp_path), "train", "visual")
    os.remove(npy)
    with pytest.raises(FileNotFoundError, match=r"train.visual.npy is missing"):
        FeatureStore.open_if_present(str(tmp_path), "train", "visual")
    assert FeatureStore.open_if_present(str(tmp_path), "valid", "visual") is None
