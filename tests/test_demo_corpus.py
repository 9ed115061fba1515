"""The demo world: IEMOCAP's layout, emotion words tied to face and voice cues, and the negative control."""

import hashlib
import os

import numpy as np
import pytest
from fairseq.data import data_utils

from memobert_plugin.data.feature_store import FeatureStore
from memobert_plugin.data.utterance_meta import read_meta
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.prepare.demo_corpus import EMOTIONS, TABLE1_COUNTS, write_demo_corpus
from memobert_plugin.prepare.fer.model import FER_CLASSES

_FER_OF_EMOTION = [FER_CLASSES.index(f) for f in ("anger", "happiness", "neutral", "sadness")]


def _digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            digest.update(name.encode())
            digest.update(open(os.path.join(folder, name), "rb").read())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    args = dict(pretrain_utterances=40, labelled_scale=0.02)
    a = _digest(write_demo_corpus(str(tmp_path / "a"), seed=3, **args).root)
    b = _digest(write_demo_corpus(str(tmp_path / "b"), seed=3, **args).root)
    c = _digest(write_demo_corpus(str(tmp_path / "c"), seed=4, **args).root)
    assert a == b != c


def test_labelled_split_is_laid_out_like_iemocap(tmp_path):
    corpus = write_demo_corpus(str(tmp_path / "w"), pretrain_utterances=16, labelled_scale=0.1)
    meta = read_meta(os.path.join(corpus.emotion_data, "all.meta.tsv"))
    assert sorted({(m.session, m.speaker) for m in meta}) == [
        (f"Ses{s:02d}", f"Ses{s:02d}{g}") for s in range(1, 6) for g in "FM"]
    counts = [sum(m.label == e for m in meta) for e in EMOTIONS]
    assert counts == [round(0.1 * c) for c in TABLE1_COUNTS]  # Table 1's imbalance
    per_speaker = {s: sum(m.speaker == s for m in meta) for s in {m.speaker for m in meta}}
    assert max(per_speaker.values()) > min(per_speaker.values())  # speakers differ, as in IEMOCAP


def _pretraining_text_and_faces(data_dir, split="train"):
    vocab = BertVocabulary.load(os.path.join(data_dir, "dict.txt"))
    texts = data_utils.load_indexed_dataset(os.path.join(data_dir, split), vocab)
    fer = FeatureStore(data_dir, split, "visual_fer")
    return vocab, [vocab.string(texts[i]).split() for i in range(len(texts))], fer


def _face_agreement(data_dir):
    """How often the label word a pretraining text says is the emotion its face shows most."""
    vocab, texts, fer = _pretraining_text_and_faces(data_dir)
    agree = total = 0
    for words, frames in zip(texts, (fer[i] for i in range(len(fer)))):
        said = [e for e, name in enumerate(EMOTIONS) if name in words]
        if said and len(frames):
            total += 1
            agree += int(np.argmax(np.asarray(frames, dtype=np.float32).mean(0)) == _FER_OF_EMOTION[said[0]])
    return agree / total, total


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    return {control: write_demo_corpus(str(root / str(control)), seed=5, pretrain_utterances=2000,
                                       labelled_scale=0.02, shuffle_links=control) for control in (False, True)}


def test_pretraining_texts_say_the_label_words_in_prompt_like_contexts(worlds):
    _, texts, _ = _pretraining_text_and_faces(worlds[False].pretrain_data)
    sentences = [" ".join(words) for words in texts]
    for label in EMOTIONS:
        assert sum(f" {label} ." in s for s in sentences) > 20, label
    assert sum(s.endswith(f"i am {label} .") for s in sentences for label in EMOTIONS) > 5  # the prompt's phrase
    # synonyms split into word pieces, for whole-word masking to keep whole
    assert any("cheer ##ful" in s for s in sentences) and any("heart ##broken" in s for s in sentences)
    assert not any("[UNK]" in s for s in sentences)  # every word of the world is in its vocabulary


def test_the_answer_is_not_written_in(worlds, tmp_path):
    rates = worlds[False].rates["pretrain train"]
    assert 0.35 <= rates["texts naming an emotion"] <= 0.45  # the default share, 0.4
    assert 0.02 <= rates["texts naming a wrong emotion"] / rates["texts naming an emotion"] <= 0.1  # 5%
    assert 0.4 <= rates["FER teacher agreement with the emotion"] <= 0.7  # a noisy teacher
    # 35% of labelled texts name the emotion, half of them with the label word: 0.175, SD ~0.036 at this size
    assert 0.07 <= worlds[False].rates["emotion all"]["texts with the gold label word"] <= 0.28
    fewer = write_demo_corpus(str(tmp_path / "w"), seed=5, pretrain_utterances=1000, labelled_scale=0.02,
                              emotion_text_share=0.1)
    assert 0.05 <= fewer.rates["pretrain train"]["texts naming an emotion"] <= 0.15


def test_emotion_words_go_with_the_face_and_not_in_the_control(worlds):
    linked, total = _face_agreement(worlds[False].pretrain_data)
    shuffled, _ = _face_agreement(worlds[True].pretrain_data)
    assert total > 50
    assert linked > 0.4  # a noisy FER teacher, a wrong word 5% of the time
    assert shuffled < 0.33  # about the agreement of independent draws


def _context_mean_prediction(store):
    """Masked-span regression by the crudest context model: each utterance's 3 middle frames predicted
    by the mean of its other frames; the squared error as a share of each dimension's variance."""
    frames = np.asarray(store.frames, dtype=np.float64)
    errors = []
    for i in range(len(store)):
        f = np.asarray(store[i], dtype=np.float64)
        if len(f) >= 5:
            masked = np.zeros(len(f), dtype=bool)
            masked[len(f) // 2 - 1: len(f) // 2 + 2] = True
            errors.append(((f[masked] - f[~masked].mean(0)) ** 2).mean())
    return np.mean(errors) / frames.var(0).mean()


def test_a_masked_span_can_be_inferred_from_its_context(worlds):
    for stream in ("visual", "acoustic"):
        store = FeatureStore(worlds[False].pretrain_data, "valid", stream)
        assert _context_mean_prediction(store) < 0.5, stream
        # stores on a unit-ish scale
        assert 0.3 < np.asarray(store.frames, dtype=np.float64).var(0).mean() < 2


def test_the_control_changes_only_the_pretraining_texts(worlds):
    def stream_bytes(corpus, sub, split, stream):
        return open(os.path.join(getattr(corpus, sub), f"{split}.{stream}.npy"), "rb").read()

    normal, control = worlds[False], worlds[True]
    for stream in ("visual", "visual_fer", "acoustic"):
        assert stream_bytes(normal, "pretrain_data", "train", stream) == stream_bytes(control, "pretrain_data", "train", stream)
    assert _digest(normal.emotion_data) == _digest(control.emotion_data)
    _, linked, _ = _pretraining_text_and_faces(normal.pretrain_data)
    _, shuffled, _ = _pretraining_text_and_faces(control.pretrain_data)
    assert linked != shuffled
