"""A generative demo world: where MEmoBERT's claims can be checked end to end, on CPU, in minutes.

One latent emotion per utterance (anger, happy, neutral, sad) drives all three modalities:

- **face**: 342-d frames ``speaker offset + emotion prototype + noise`` and 8 FER+ soft labels
  peaked on the emotion's FER class; **voice**: 768-d frames (60 ms each), built the same way.
  Each emotion has 4 prototypes (expression styles) per modality, one drawn per utterance: a
  few labelled utterances cannot show a model every style, 20,000 unlabelled ones do.
  Each modality shows the emotion only for some utterances (otherwise its cue is absent), each
  has its own frame noise, and each speaker adds a fixed offset (orthogonal to the emotion
  prototypes, so an encoder can learn to ignore it; a new speaker still shifts every frame).
- **text**: pretraining utterances say how someone feels in varied contexts ("i am so ...",
  "she felt ...", "... i am ... ."), with the four label words themselves or synonyms, several of
  them split into word pieces ("cheer ##ful", "heart ##broken"). The text around the emotion word
  never reveals it, so whole-word MLM can only fill a masked emotion word in from the face and
  voice of the same utterance: exactly what the prompt read-out ``<utterance> i am [MASK] .``
  asks later. Each pretraining text holds one emotion word, so nothing links emotion words to
  each other except the face and voice cues they share.

Splits:

- ``pretrain/`` (``train`` and ``valid``): unlabelled, ``pretrain_utterances`` utterances
  (default 20,000) from 100 film speakers; face and voice show the emotion 85% of the time.
- ``emotion/all`` with ``all.meta.tsv``: labelled like IEMOCAP, 5 sessions x 2 speakers and the
  class counts of the paper's Table 1 (1103 anger, 1636 happy, 1708 neutral, 1084 sad), scaled
  by ``labelled_scale``; the text carries the emotion 35% of the time, face and voice 60% each,
  so fusing modalities pays.

``shuffle_links=True`` writes the negative control: the same world, except that pretraining
texts are shuffled across utterances, so emotion words no longer go with the face and voice
cues of their utterance. Whatever a prompt then gets without labels cannot come from
cross-modal pretraining.

Frame counts vary, 2% of utterances exceed the pretraining frame limits (truncation) and 10%
have no face. Everything is drawn from ``seed`` (same seed, same bytes). Each data dir gets a
``dataset.json`` with its files' SHA-256, so a file swapped afterwards is named at training start. This world checks the
implementation; it says nothing about how MEmoBERT does on real data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from memobert_plugin.data.feature_store import FeatureStoreWriter
from memobert_plugin.data.utterance_meta import META_COLUMNS
from memobert_plugin.prepare.fer.labels import FER_CLASSES
from memobert_plugin.files import atomic_open, sha256_file, write_json
from memobert_plugin.data.wordpiece import WordPieceTokenizer

__all__ = ["EMOTIONS", "EMOTION_WORDS", "TABLE1_COUNTS", "write_demo_corpus", "DemoCorpus"]

EMOTIONS = ("anger", "happy", "neutral", "sad")
#: IEMOCAP's 4-class counts (the paper's Table 1), in EMOTIONS order
TABLE1_COUNTS = (1103, 1636, 1708, 1084)
_FER_OF_EMOTION = ("anger", "happiness", "neutral", "sadness")
_VISUAL_DIM, _ACOUSTIC_DIM = 342, 768
_PRETRAIN_SPEAKERS = 100

#: per emotion: the label word first, then synonyms (several are more than one word piece)
EMOTION_WORDS = {
    "anger": ["anger", "angry", "mad", "furious", "annoyed", "outraged", "hateful"],
    "happy": ["happy", "glad", "cheerful", "delighted", "wonderful", "excited", "great"],
    "neutral": ["neutral", "fine", "okay", "calm", "normal", "alright", "usual"],
    "sad": ["sad", "unhappy", "gloomy", "miserable", "lonely", "heartbroken", "hopeless"],
}
#: how often a pretraining text uses the label word itself rather than a synonym
_LABEL_WORD_SHARE = 0.4
#: ways of saying how someone feels; {w} is the emotion word
_FEELING_PHRASES = [
    "i am {w} .", "i am so {w} .", "i feel {w} .", "she felt {w} .", "he was really {w} .",
    "we were {w} today .", "they got {w} again .", "you look {w} .", "i was {w} about it .",
]
_SUBJECTS = ["i", "you", "we", "they", "she", "he"]
_VERBS = ["saw", "talked about", "remember", "went to", "thought about", "finished"]
_NOUNS = ["the meeting", "the dinner", "the weather", "the train", "the letter", "the movie", "the party", "the exam"]
_TIMES = ["today", "yesterday", "last night", "this morning", "again", "at last"]
# word pieces: stems and suffixes, so several emotion words are two pieces (exercises whole-word masking)
_PIECES = ["##d", "##ed", "##ful", "##ly", "##y", "##able", "##broken", "##less", "##happy",
           "annoy", "outrage", "hate", "cheer", "delight", "wonder", "excite", "gloom", "miser", "lone",
           "heart", "hope", "un"]
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(5)]
_SINGLE_PIECE_WORDS = ["anger", "angry", "mad", "furious", "happy", "glad", "great", "neutral", "fine", "okay", "calm",
                       "normal", "alright", "usual", "sad", ".", ",", "!", "?", "so", "really", "about", "it", "look",
                       "feel", "felt", "was", "were", "got", "am", "that"]


@dataclass(frozen=True)
class _Modalities:
    """How often each modality shows the emotion, and how strongly."""

    text: float
    visual: float
    acoustic: float


_PRETRAIN_CUES = _Modalities(text=1.0, visual=0.85, acoustic=0.85)
_LABELLED_CUES = _Modalities(text=0.35, visual=0.6, acoustic=0.6)
#: expression styles per emotion and modality: a few labels cannot cover them all, many unlabelled utterances do
_STYLES = 4
_CUE_STRENGTH = {"visual": 0.35, "acoustic": 0.3}
_SPEAKER_OFFSET = {"visual": 0.6, "acoustic": 0.6}
_FER_PEAK, _FER_NOISE = 2.5, 0.8
_FRAMES = {"visual": (2, 9), "acoustic": (3, 11)}  # [low, high) frames per utterance
_LONG_FRAMES = {"visual": 40, "acoustic": 70}  # beyond the pretraining limits (36 and 64)
_CHUNK = 2000  # utterances generated at once (bounds memory)


def _vocabulary() -> List[str]:
    words = set(_SINGLE_PIECE_WORDS)
    for group in (_SUBJECTS, _VERBS, _NOUNS, _TIMES, _FEELING_PHRASES):
        for phrase in group:
            words.update(w for w in phrase.split() if w != "{w}")
    return _SPECIALS + sorted(words) + _PIECES


@dataclass
class DemoCorpus:
    """Where :func:`write_demo_corpus` put things."""

    root: str
    vocab: str
    pretrain_data: str
    emotion_data: str


class _World:
    """The fixed parts of the world (prototypes, speakers) and the per-utterance draws."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        # the negative control's shuffles draw from their own stream: everything else stays the same
        self.shuffle_rng = np.random.default_rng([seed, 1])
        # [emotions, styles, dim]: each emotion shows in one of several styles per modality
        self.proto = {m: self.rng.standard_normal((len(EMOTIONS), _STYLES, d)) for m, d in
                      (("visual", _VISUAL_DIM), ("acoustic", _ACOUSTIC_DIM))}
        # speaker offsets live outside the span of the emotion prototypes
        self.offset_basis = {m: self._orthogonal_complement(p.reshape(-1, p.shape[-1])) for m, p in self.proto.items()}
        self.speakers: Dict[str, Dict[str, np.ndarray]] = {}

    @staticmethod
    def _orthogonal_complement(protos: np.ndarray) -> np.ndarray:
        q, _ = np.linalg.qr(protos.T)  # [dim, emotions]: orthonormal basis of the prototypes' span
        return np.eye(protos.shape[1]) - q @ q.T

    def speaker_offsets(self, names: Sequence[str]) -> Dict[str, np.ndarray]:
        """``[len(names), dim]`` offsets per modality (each speaker drawn once, on first use)."""
        for name in names:
            if name not in self.speakers:
                self.speakers[name] = {
                    m: _SPEAKER_OFFSET[m] * self.rng.standard_normal(basis.shape[0]) @ basis
                    for m, basis in self.offset_basis.items()
                }
        return {m: np.stack([self.speakers[n][m] for n in names]) for m in self.proto}

    def frames(self, modality: str, emotion: np.ndarray, cued: np.ndarray, offsets: np.ndarray,
               lengths: np.ndarray) -> List[np.ndarray]:
        """Per utterance ``[T, dim]``: offset + cue + AR(1) noise (neighbouring frames alike)."""
        style = self.rng.integers(_STYLES, size=len(emotion))
        cue = self.proto[modality][emotion, style]
        base = (offsets + _CUE_STRENGTH[modality] * cued[:, None] * cue).astype(np.float32)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        frames = np.repeat(base, lengths, axis=0)
        state = self.rng.standard_normal(base.shape, dtype=np.float32)
        for t in range(int(lengths.max(initial=0))):  # step t of every utterance at least t+1 frames long
            alive = np.flatnonzero(lengths > t)
            state[alive] = 0.8 * state[alive] + 0.6 * self.rng.standard_normal((len(alive), base.shape[1]),
                                                                                dtype=np.float32)
            frames[starts[alive] + t] += state[alive]
        return np.split(frames, starts[1:-1])

    def fer(self, emotion: np.ndarray, cued: np.ndarray, lengths: np.ndarray) -> List[np.ndarray]:
        """Per utterance ``[T, 8]`` FER+ probabilities, peaked on the emotion's class when cued."""
        logits = _FER_NOISE * self.rng.standard_normal((int(lengths.sum()), len(FER_CLASSES)))
        peak = np.array([FER_CLASSES.index(f) for f in _FER_OF_EMOTION])[emotion]
        logits[np.arange(len(logits)), np.repeat(peak, lengths)] += _FER_PEAK * np.repeat(cued, lengths)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return np.split(probs, np.cumsum(lengths)[:-1])

    def lengths(self, modality: str, n: int, may_be_empty: bool) -> np.ndarray:
        low, high = _FRAMES[modality]
        lengths = self.rng.integers(low, high, size=n)
        lengths[self.rng.random(n) < 0.02] = _LONG_FRAMES[modality]
        if may_be_empty:
            lengths[self.rng.random(n) < 0.1] = 0
        return lengths

    def _pick(self, items: Sequence[str], n: int) -> np.ndarray:
        return np.asarray(items, dtype=object)[self.rng.integers(len(items), size=n)]

    def neutral_clause(self, n: int) -> np.ndarray:
        """Content without any emotion word: "she talked about the train yesterday"."""
        parts = [self._pick(group, n) for group in (_SUBJECTS, _VERBS, _NOUNS, _TIMES)]
        return np.array([" ".join(words) for words in zip(*parts)], dtype=object)

    def emotion_words(self, emotion: np.ndarray) -> np.ndarray:
        """The label word (``_LABEL_WORD_SHARE`` of the time) or a synonym of each emotion."""
        n = len(emotion)
        synonym = 1 + self.rng.integers(len(EMOTION_WORDS["anger"]) - 1, size=n)
        choice = np.where(self.rng.random(n) < _LABEL_WORD_SHARE, 0, synonym)
        table = np.array([EMOTION_WORDS[e] for e in EMOTIONS], dtype=object)
        return table[emotion, choice]

    def texts(self, emotion: np.ndarray, cued: np.ndarray, context_share: float) -> List[str]:
        """A feeling phrase with the emotion word when cued (after a neutral clause ``context_share``
        of the time), else a neutral clause ending in punctuation."""
        n = len(emotion)
        phrases = self._pick(_FEELING_PHRASES, n)
        words = self.emotion_words(emotion)
        clauses = self.neutral_clause(n)
        endings = self._pick([".", "!", "?"], n)
        with_context = self.rng.random(n) < context_share
        out = []
        for i in range(n):
            if cued[i]:
                feeling = phrases[i].format(w=words[i])
                out.append(f"{clauses[i]} , {feeling}" if with_context[i] else feeling)
            else:
                out.append(f"{clauses[i]} {endings[i]}")
        return out


def _write_split(world: _World, data_dir: str, split: str, vocab, tokenizer: WordPieceTokenizer,
                 speakers: Sequence[str], emotion: np.ndarray, cues: _Modalities, shuffle_links: bool = False,
                 context_share: float = 0.5) -> None:
    """Draw and write ``len(emotion)`` utterances of ``speakers[i]`` with ``emotion[i]``, in chunks."""
    from memobert_plugin.prepare.binarize import TextBinarizer  # torch and fairseq: imported when writing, not for --help

    text = TextBinarizer(vocab, os.path.join(data_dir, split))
    dims = {"visual": _VISUAL_DIM, "visual_fer": len(FER_CLASSES), "acoustic": _ACOUSTIC_DIM}
    writers = {s: FeatureStoreWriter(data_dir, split, s, d) for s, d in dims.items()}
    # the negative control: texts speak of another utterance's emotion (a permutation keeps the counts)
    text_emotion = world.shuffle_rng.permutation(emotion) if shuffle_links else emotion
    pieces: Dict[str, List[str]] = {}
    for start in range(0, len(emotion), _CHUNK):
        rows = slice(start, min(start + _CHUNK, len(emotion)))
        emo, n = emotion[rows], len(emotion[rows])
        offsets = world.speaker_offsets(speakers[rows])
        cued = {m: world.rng.random(n) < getattr(cues, m) for m in ("text", "visual", "acoustic")}
        face_lengths = world.lengths("visual", n, may_be_empty=True)
        streams = {
            "visual": world.frames("visual", emo, cued["visual"], offsets["visual"], face_lengths),
            "visual_fer": world.fer(emo, cued["visual"], face_lengths),
            "acoustic": world.frames("acoustic", emo, cued["acoustic"], offsets["acoustic"],
                                     world.lengths("acoustic", n, may_be_empty=False)),
        }
        for i, sentence in enumerate(world.texts(text_emotion[rows], cued["text"], context_share)):
            words = sentence.split()  # lower-case words and separate punctuation: tokenised word by word
            for word in words:
                if word not in pieces:
                    pieces[word] = tokenizer.tokenize(word)
            text.add([piece for word in words for piece in pieces[word]])
            for stream, writer in writers.items():
                writer.append(streams[stream][i], item=f"{split}:{start + i}")
    text.close()
    for writer in writers.values():
        writer.close()


def _write_checksums(data_dir: str) -> None:
    """``dataset.json`` with the SHA-256 of every file, as memobert-prepare writes it: training then
    refuses a data dir whose ``dict.txt`` or features were swapped afterwards."""
    names = sorted(n for n in os.listdir(data_dir) if not n.startswith(".") and n != "dataset.json")
    write_json(os.path.join(data_dir, "dataset.json"), {
        "generator": "memobert-demo-corpus",
        "checksums": {n: sha256_file(os.path.join(data_dir, n)) for n in names},
    })


def _labelled_layout(rng: np.random.Generator, scale: float):
    """Speakers, sessions and emotions of the labelled split: Table 1's counts times ``scale``,
    spread unevenly over 5 sessions x 2 speakers (as in IEMOCAP, speakers differ in their mix)."""
    speakers = [f"Ses{s:02d}{g}" for s in range(1, 6) for g in "FM"]
    counts = np.maximum(1, np.round(np.asarray(TABLE1_COUNTS) * scale)).astype(int)
    speaker_of, emotion_of = [], []
    for e, count in enumerate(counts):
        share = rng.dirichlet(np.full(len(speakers), 8.0))
        # every speaker gets at least one utterance of every class, the rest is spread by share
        per_speaker = 1 + rng.multinomial(max(count - len(speakers), 0), share)
        for s, k in enumerate(per_speaker):
            speaker_of += [s] * int(k)
            emotion_of += [e] * int(k)
    order = np.lexsort((rng.random(len(speaker_of)), speaker_of))  # grouped by speaker, classes mixed
    return speakers, np.asarray(speaker_of)[order], np.asarray(emotion_of)[order]


def write_demo_corpus(root: str, seed: int = 0, pretrain_utterances: int = 20000, labelled_scale: float = 1.0,
                      shuffle_links: bool = False) -> DemoCorpus:
    """Write the demo world under ``root`` (the same arguments give the same bytes).

    ``pretrain/`` holds unlabelled ``train``/``valid`` splits; ``emotion/`` holds one ``all``
    split with ``all.meta.tsv`` (id, speaker, session, label) for the cross-validation folds.
    """
    if pretrain_utterances < 16:
        raise ValueError(f"pretrain_utterances must be at least 16, got {pretrain_utterances}")
    if not 0 < labelled_scale <= 1:
        raise ValueError(f"labelled_scale must be in (0, 1], got {labelled_scale}")
    from memobert_plugin.prepare.binarize import write_dictionary  # fairseq: imported when writing, not for --help

    os.makedirs(root, exist_ok=True)
    vocab_path = os.path.join(root, "vocab.txt")
    with atomic_open(vocab_path) as handle:
        handle.write("".join(f"{tok}\n" for tok in _vocabulary()))
    tokenizer = WordPieceTokenizer.from_file(vocab_path)
    world = _World(seed)
    prior = np.asarray(TABLE1_COUNTS) / sum(TABLE1_COUNTS)

    pretrain_dir = os.path.join(root, "pretrain")
    vocab = write_dictionary(vocab_path, pretrain_dir)
    film_speakers = np.array([f"Movie{m:02d}_{c}" for m in range(1, _PRETRAIN_SPEAKERS // 2 + 1) for c in "AB"])
    for split, count in (("train", pretrain_utterances), ("valid", max(pretrain_utterances // 20, 16))):
        speakers = film_speakers[world.rng.integers(len(film_speakers), size=count)]
        emotion = world.rng.choice(len(EMOTIONS), size=count, p=prior)
        _write_split(world, pretrain_dir, split, vocab, tokenizer, speakers, emotion, _PRETRAIN_CUES, shuffle_links)
    _write_checksums(pretrain_dir)

    emotion_dir = os.path.join(root, "emotion")
    write_dictionary(vocab_path, emotion_dir)
    names, speaker_index, emotion = _labelled_layout(world.rng, labelled_scale)
    speakers = np.asarray(names)[speaker_index]
    _write_split(world, emotion_dir, "all", vocab, tokenizer, speakers, emotion, _LABELLED_CUES)
    with atomic_open(os.path.join(emotion_dir, "all.meta.tsv")) as handle:
        handle.write("\t".join(META_COLUMNS) + "\n")
        seen: Dict[str, int] = {}
        for speaker, e in zip(speakers, emotion):
            seen[speaker] = seen.get(speaker, 0) + 1
            handle.write(f"{speaker}_{seen[speaker] - 1:04d}\t{speaker}\t{speaker[:5]}\t{EMOTIONS[e]}\n")
    _write_checksums(emotion_dir)
    return DemoCorpus(root, vocab_path, pretrain_dir, emotion_dir)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-utterances", type=int, default=20000, help="size of the unlabelled train split")
    parser.add_argument("--labelled-scale", type=float, default=1.0,
                        help="fraction of IEMOCAP's Table 1 class counts in the labelled split (1.0: 5531 utterances)")
    parser.add_argument("--shuffle-links", action="store_true",
                        help="negative control: pretraining texts shuffled across utterances, so emotion words no "
                             "longer go with their utterance's face and voice")
    args = parser.parse_args()
    corpus = write_demo_corpus(args.root, seed=args.seed, pretrain_utterances=args.pretrain_utterances,
                               labelled_scale=args.labelled_scale, shuffle_links=args.shuffle_links)
    print(f"pretraining data: {corpus.pretrain_data}\nemotion data: {corpus.emotion_data}")


if __name__ == "__main__":
    main()
