"""A small, deterministic, synthetic multimodal emotion corpus for the quickstart and the tests.

Ten speakers in five two-speaker sessions (laid out like IEMOCAP), four emotions
(anger, happy, neutral, sad). Each modality carries the utterance's emotion only
some of the time (text ~50%, faces ~60%, voice ~60%), so a model does best by
fusing them. Face features are 342-d with 8 FER+ soft labels; speech features are
768-d at 60 ms per frame, as the real extractors produce. Frame counts vary, some
exceed the pretraining limits (truncation) and some utterances have no face.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from ..data.feature_store import FeatureStoreWriter
from ..data.utterance_meta import META_COLUMNS
from .fer_labels import FER_CLASSES
from .wordpiece import WordPieceTokenizer

__all__ = ["EMOTIONS", "write_demo_corpus", "DemoCorpus"]

EMOTIONS = ("anger", "happy", "neutral", "sad")
_FER_OF_EMOTION = {"anger": "anger", "happy": "happiness", "neutral": "neutral", "sad": "sadness"}
_VISUAL_DIM, _ACOUSTIC_DIM = 342, 768

_CUES = {
    "anger": ["furious", "annoying", "hateful", "outrageous", "mad", "angry"],
    "happy": ["wonderful", "delighted", "cheerful", "great", "glad", "excited"],
    "neutral": ["okay", "fine", "normal", "usual", "alright", "regular"],
    "sad": ["hopeless", "miserable", "lonely", "heartbroken", "unhappy", "gloomy"],
}
_SUBJECTS = ["i", "you", "we", "they", "she", "he"]
_VERBS = ["saw", "talked about", "remember", "went to", "thought about", "finished"]
_NOUNS = ["the meeting", "the dinner", "the weather", "the train", "the letter", "the movie", "the party", "the exam"]
_TIMES = ["today", "yesterday", "last night", "this morning", "again", "at last"]
_FEELINGS = ["feel", "am", "was", "felt really", "am so", "got"]
# word pieces: stems and suffixes, so many words are several pieces (exercises whole-word masking)
_PIECES = [
    "##s", "##ed", "##ing", "##ly", "##ful", "##less", "##ness", "##y", "##er", "##able", "##ous", "##ted",
    "hope", "miser", "lone", "heart", "##broken", "un", "##happy", "gloom", "wonder", "delight", "cheer",
    "annoy", "hate", "outrage", "excite", "regular", "okay",
]
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(5)]
_LABEL_AND_PROMPT_WORDS = ["anger", "happy", "neutral", "sad", "i", "am", ".", ",", "!", "?"]


def _vocabulary() -> List[str]:
    words = set(_LABEL_AND_PROMPT_WORDS)
    for group in (_SUBJECTS, _VERBS, _NOUNS, _TIMES, _FEELINGS, ["about", "mad", "great", "glad", "fine",
                                                                  "normal", "usual", "alright", "angry", "so", "really"]):
        for phrase in group:
            words.update(phrase.split())
    return _SPECIALS + sorted(words) + _PIECES


@dataclass
class DemoCorpus:
    """Where :func:`write_demo_corpus` put things."""

    root: str
    vocab: str
    pretrain_data: str
    emotion_data: str


class _Generator:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        proto = np.random.default_rng(seed + 1)
        self.visual_proto = {e: proto.standard_normal(_VISUAL_DIM) for e in EMOTIONS}
        self.acoustic_proto = {e: proto.standard_normal(_ACOUSTIC_DIM) for e in EMOTIONS}
        self.speaker_offsets: Dict[str, tuple] = {}

    def _speaker(self, speaker: str) -> tuple:
        if speaker not in self.speaker_offsets:
            self.speaker_offsets[speaker] = (
                0.5 * self.rng.standard_normal(_VISUAL_DIM),
                0.5 * self.rng.standard_normal(_ACOUSTIC_DIM),
            )
        return self.speaker_offsets[speaker]

    def _stream(self, length: int, base: np.ndarray, cue: np.ndarray, strength: float) -> np.ndarray:
        # AR(1) noise: neighbouring frames are alike, which is why masking uses spans
        noise = np.zeros((length, base.shape[0]))
        state = self.rng.standard_normal(base.shape[0])
        for t in range(length):
            state = 0.8 * state + 0.6 * self.rng.standard_normal(base.shape[0])
            noise[t] = state
        return base + strength * cue + 0.7 * noise

    def text(self, emotion: str, cued: bool) -> str:
        pick = lambda items: items[self.rng.integers(len(items))]  # noqa: E731
        if cued:
            return f"{pick(_SUBJECTS)} {pick(_FEELINGS)} {pick(_CUES[emotion])} about {pick(_NOUNS)} {pick(_TIMES)} ."
        return f"{pick(_SUBJECTS)} {pick(_VERBS)} {pick(_NOUNS)} {pick(_TIMES)} {pick(['.', '!', '?'])}"

    def utterance(self, speaker: str, emotion: str) -> dict:
        visual_offset, acoustic_offset = self._speaker(speaker)
        cued = {m: self.rng.random() < p for m, p in (("text", 0.5), ("visual", 0.6), ("acoustic", 0.6))}
        faces = 0 if self.rng.random() < 0.1 else int(self.rng.integers(4, 48))
        frames = int(self.rng.integers(8, 90))
        visual = self._stream(faces, visual_offset, self.visual_proto[emotion], 1.0 if cued["visual"] else 0.0)
        acoustic = self._stream(frames, acoustic_offset, self.acoustic_proto[emotion], 0.8 if cued["acoustic"] else 0.0)
        logits = 0.6 * self.rng.standard_normal((faces, len(FER_CLASSES)))
        if cued["visual"]:
            logits[:, FER_CLASSES.index(_FER_OF_EMOTION[emotion])] += 2.5
        fer = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return {"text": self.text(emotion, cued["text"]), "visual": visual, "visual_fer": fer, "acoustic": acoustic}


def _write_split(data_dir: str, split: str, tokenizer: WordPieceTokenizer, vocab, utterances: List[dict]) -> None:
    from .binarize import TextBinarizer  # torch and fairseq: imported when writing, not for --help

    text = TextBinarizer(vocab, os.path.join(data_dir, split))
    dims = {"visual": _VISUAL_DIM, "visual_fer": len(FER_CLASSES), "acoustic": _ACOUSTIC_DIM}
    writers = {s: FeatureStoreWriter(data_dir, split, s, d) for s, d in dims.items()}
    for i, utt in enumerate(utterances):
        text.add(tokenizer.tokenize(utt["text"]))
        for stream, writer in writers.items():
            writer.append(utt[stream], item=f"{split}:{i}")
    text.close()
    for writer in writers.values():
        writer.close()


def write_demo_corpus(root: str, seed: int = 0, utterances_per_speaker: int = 60, pretrain_utterances: int = 1200) -> DemoCorpus:
    """Write the demo corpus under ``root`` (idempotent: the same seed gives the same bytes).

    ``pretrain/`` holds unlabelled ``train``/``valid`` splits; ``emotion/`` holds one
    ``all`` split with ``all.meta.tsv`` (id, speaker, session, label) for the
    cross-validation folds.
    """
    from .binarize import write_dictionary  # fairseq: imported when writing, not for --help

    os.makedirs(root, exist_ok=True)
    vocab_path = os.path.join(root, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{tok}\n" for tok in _vocabulary()))
    tokenizer = WordPieceTokenizer.from_file(vocab_path)
    gen = _Generator(seed)
    weights = np.array([0.2, 0.3, 0.3, 0.2])  # anger, happy, neutral, sad: IEMOCAP-like imbalance

    pretrain_dir = os.path.join(root, "pretrain")
    vocab = write_dictionary(vocab_path, pretrain_dir)
    speakers = [f"Movie{m:02d}_{c}" for m in range(1, 9) for c in "AB"]
    for split, count in (("train", pretrain_utterances), ("valid", max(pretrain_utterances // 8, 16))):
        utts = [
            gen.utterance(speakers[gen.rng.integers(len(speakers))], EMOTIONS[gen.rng.choice(4, p=weights)])
            for _ in range(count)
        ]
        _write_split(pretrain_dir, split, tokenizer, vocab, utts)

    emotion_dir = os.path.join(root, "emotion")
    write_dictionary(vocab_path, emotion_dir)
    utts, meta = [], []
    for session in range(1, 6):
        for gender in "FM":
            speaker = f"Ses{session:02d}{gender}"
            for i in range(utterances_per_speaker):
                emotion = EMOTIONS[gen.rng.choice(4, p=weights)]
                utts.append(gen.utterance(speaker, emotion))
                meta.append((f"{speaker}_{i:03d}", speaker, f"Ses{session:02d}", emotion))
    _write_split(emotion_dir, "all", tokenizer, vocab, utts)
    with open(os.path.join(emotion_dir, "all.meta.tsv"), "w", encoding="utf-8") as handle:
        handle.write("\t".join(META_COLUMNS) + "\n")
        handle.write("".join("\t".join(row) + "\n" for row in meta))
    return DemoCorpus(root, vocab_path, pretrain_dir, emotion_dir)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = write_demo_corpus(args.root, seed=args.seed)
    print(f"pretraining data: {corpus.pretrain_data}\nemotion data: {corpus.emotion_data}")


if __name__ == "__main__":
    main()
