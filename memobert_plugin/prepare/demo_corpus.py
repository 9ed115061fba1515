"""A generative demo world: where MEmoBERT's claims can be checked end to end, on CPU, in minutes.

One latent emotion per utterance (anger, happy, neutral, sad) drives all three modalities:

- **face** (342-d frames) and **voice** (768-d frames, 60 ms each) are low-rank latents mixed into
  their dimensions, plus a little frame noise (5% of the variance). The latents: in an
  expression space, the emotion's expression (one of 2 styles around the emotion's mean
  expression: a few labelled utterances cannot show a model every style, 20,000 unlabelled ones
  do) with a smooth onset and offset that face and voice share, and a slow movement over the
  utterance; the utterance's pose, 70% shared between face and voice; the speaker's offset
  (pose and speaker orthogonal to the expression space: an encoder can learn to ignore them, a
  new speaker still shifts every frame). So a masked span of frames can be inferred from its
  context: the rest of the utterance, the other stream, the emotion.
- **FER+ soft labels** (8 classes per face frame) come from a noisy teacher: a linear classifier
  of the frame's expression (class directions: the emotions' mean expressions), confused by the
  movement, by each face's own look and by frame noise. Its agreement with the latent emotion
  (argmax of the utterance's mean) is printed, 55-67% on the pretraining split for seeds 1-4.
- **text**: ``emotion_text_share`` of the pretraining texts (default 40%) say how someone feels
  in varied contexts ("i am so ...", "she felt ...", "... , i am ... .", "... ! i am ... .") with
  the label word (half the time) or a synonym, several of them split into word pieces
  ("cheer ##ful", "heart ##broken"); 5% of those name a wrong emotion (people say "fine" when
  they are not). The rest is neutral talk.
  The text around the emotion word never reveals it, so whole-word MLM can only fill a masked
  emotion word in from the face and voice of the same utterance: what the prompt read-out
  ``<utterance> i am [MASK] .`` asks later.

Splits:

- ``pretrain/`` (``train`` and ``valid``): unlabelled, ``pretrain_utterances`` utterances
  (default 20,000) from 100 film speakers; face and voice show the emotion 85% of the time.
- ``emotion/all`` with ``all.meta.tsv``: labelled like IEMOCAP, 5 sessions x 2 speakers and the
  class counts of the paper's Table 1 (1103 anger, 1636 happy, 1708 neutral, 1084 sad), scaled
  by ``labelled_scale``; the text names the (right) emotion 35% of the time, face and voice show
  it 70% of the time each, so fusing modalities pays.

The rates that matter (texts naming an emotion, a wrong one, the gold label word; the FER
teacher's agreement) are counted while writing and printed per split by ``memobert-demo-corpus``.

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

import dataclasses
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
_LABEL_WORD_SHARE = 0.5
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
    """How often each modality shows the emotion (text: names one), and how often a named emotion is wrong."""

    text: float
    visual: float
    acoustic: float
    wrong_word: float = 0.0


#: the pretraining split's cues; its text share is ``emotion_text_share`` (an option)
_PRETRAIN_CUES = _Modalities(text=0.4, visual=0.85, acoustic=0.85, wrong_word=0.05)
_LABELLED_CUES = _Modalities(text=0.35, visual=0.7, acoustic=0.7)
#: expression styles per emotion and modality: a few labels cannot cover them all, many unlabelled utterances do
_STYLES = 2
#: latent dimensions per frame and modality: the expression space (where emotions, styles and the
#: utterance's own movement share dimensions), the pose's and the speaker's (orthogonal to it)
_EXPRESSION_DIMS, _POSE_DIMS, _SPEAKER_DIMS = 6, 4, 4
#: per-dimension variance of each part of a frame (about 1 in all: stores stay on a unit-ish scale)
_VARIANCE = {"pose": 0.2, "movement": 0.05, "expression": 0.6, "speaker": 0.1, "noise": 0.05}
#: how much of an utterance's pose (arousal, posture) face and voice share: each stream predicts the other
_SHARED_POSE = 0.7
#: how far an emotion's styles vary around its mean expression (share of the expression's variance)
_STYLE_SHARE = 0.3
#: FER teacher: logits per unit of expression latent along a class direction; how much movement
#: it mistakes for expression; its noise per face (utterance) and per frame
_FER_SHARPNESS, _FER_CONFUSION, _FER_FACE_NOISE, _FER_FRAME_NOISE = 4.0, 0.3, 1.5, 0.3
_FRAMES = {"visual": (3, 10), "acoustic": (4, 12)}  # [low, high) frames per utterance
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
    #: per split ("pretrain train", "pretrain valid", "emotion all"): the shares :class:`_Rates` counts
    rates: Dict[str, Dict[str, float]]


class _World:
    """The fixed parts of the world (prototypes, bases, speakers) and the per-utterance draws."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        # the negative control's shuffles draw from their own stream: everything else stays the same
        self.shuffle_rng = np.random.default_rng([seed, 1])
        dims = {"visual": _VISUAL_DIM, "acoustic": _ACOUSTIC_DIM}
        # [emotions, styles, latent]: each emotion shows in one of several styles per modality, variations
        # around the emotion's mean expression
        # (orthogonal mean expressions of unit variance per dimension: every seed's world is as hard)
        means = {m: np.sqrt(_EXPRESSION_DIMS) * np.linalg.qr(self.rng.standard_normal((_EXPRESSION_DIMS, len(EMOTIONS))))[0]
                 .T[:, None] for m in dims}
        self.proto = {m: np.sqrt(_STYLE_SHARE) * self.rng.standard_normal((len(EMOTIONS), _STYLES, _EXPRESSION_DIMS))
                      + np.sqrt(1 - _STYLE_SHARE) * means[m] for m in dims}
        # orthonormal columns: the expression space, then the pose's and the speaker's (orthogonal to it, so an
        # encoder can learn to ignore them, while a new speaker still shifts every frame)
        self.basis = {m: np.linalg.qr(self.rng.standard_normal((d, _EXPRESSION_DIMS + _POSE_DIMS + _SPEAKER_DIMS)))[0]
                      .astype(np.float32) for m, d in dims.items()}
        # the FER teacher's class directions: the emotions' mean expressions, random ones for the other 4 classes
        directions = self.rng.standard_normal((len(FER_CLASSES), _EXPRESSION_DIMS))
        directions[[FER_CLASSES.index(f) for f in _FER_OF_EMOTION]] = means["visual"][:, 0]
        self.fer_classifier = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        self.speakers: Dict[str, Dict[str, np.ndarray]] = {}

    def speaker_offsets(self, names: Sequence[str]) -> Dict[str, np.ndarray]:
        """``[len(names), speaker latent]`` offsets per modality (each speaker drawn once, on first use)."""
        for name in names:
            if name not in self.speakers:
                self.speakers[name] = {m: self.rng.standard_normal(_SPEAKER_DIMS) for m in self.proto}
        return {m: np.stack([self.speakers[n][m] for n in names]) for m in self.proto}

    def expression_events(self, n: int) -> Dict[str, np.ndarray]:
        """One expression per utterance, seen by face and voice alike: onset and offset (as fractions of
        the utterance) and intensity."""
        onset = self.rng.uniform(-0.3, 0.2, n)
        return {"onset": onset, "offset": onset + self.rng.uniform(0.6, 1.1, n), "intensity": self.rng.uniform(0.7, 1.2, n)}

    @staticmethod
    def _timeline(lengths: np.ndarray):
        """Per frame: its utterance and its time as a fraction of the utterance (frame centres)."""
        utterance = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        t = np.arange(int(lengths.sum())) - starts[utterance]
        return utterance, (t + 0.5) / np.maximum(lengths[utterance], 1), starts

    @staticmethod
    def envelope(events: Dict[str, np.ndarray], utterance: np.ndarray, time: np.ndarray) -> np.ndarray:
        """How much of the expression shows at each frame: a smooth onset, a hold and a smooth offset."""
        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        width = 0.07
        return (events["intensity"][utterance] * sigmoid((time - events["onset"][utterance]) / width)
                * sigmoid((events["offset"][utterance] - time) / width))

    def frames(self, modality: str, emotion: np.ndarray, cued: np.ndarray, speaker: np.ndarray, pose: np.ndarray,
               events: Dict[str, np.ndarray], lengths: np.ndarray):
        """Per utterance ``[T, dim]`` frames, and what a FER teacher sees of all of them ``[sum T, latent]``: in
        the expression space a slow movement over the utterance and, when cued, the emotion's expression
        (one of its styles, with the utterance's onset and offset, shared with the other stream); the
        utterance's pose (partly shared with the other stream); the speaker's offset; a little frame noise."""
        n, dim = len(emotion), self.basis[modality].shape[0]
        style = self.rng.integers(_STYLES, size=n)
        movement = self.rng.standard_normal((2, n, _EXPRESSION_DIMS))
        utterance, time, starts = self._timeline(lengths)
        shown = cued[utterance] * self.envelope(events, utterance, time)
        parts = {"movement": (movement[0][utterance] * np.cos(np.pi * time)[:, None]
                              + movement[1][utterance] * np.sin(np.pi * time)[:, None]),
                 "expression": shown[:, None] * self.proto[modality][emotion, style][utterance]}

        def scaled(part: str, latent: np.ndarray) -> np.ndarray:
            """Unit-variance latents scaled to the part's share of the frames' per-dimension variance."""
            return np.sqrt(_VARIANCE[part] * dim / latent.shape[1]) * latent

        parts = {p: scaled(p, x) for p, x in parts.items()}
        latent = np.concatenate([sum(parts.values()), scaled("pose", pose[utterance]),
                                 scaled("speaker", speaker[utterance])], axis=1)
        frames = latent.astype(np.float32) @ self.basis[modality].T
        frames += np.float32(np.sqrt(_VARIANCE["noise"])) * self.rng.standard_normal(frames.shape, dtype=np.float32)
        teacher_view = (parts["expression"] + _FER_CONFUSION * parts["movement"]) / np.sqrt(dim / _EXPRESSION_DIMS)
        return np.split(frames, starts[1:]), teacher_view

    def fer(self, teacher_view: np.ndarray, lengths: np.ndarray) -> List[np.ndarray]:
        """Per utterance ``[T, 8]`` FER+ probabilities of a noisy teacher reading each face frame (``teacher_view``,
        from :meth:`frames`): a linear classifier whose class directions are the emotions' mean
        expressions, confused by the movement, the style shown, each face's own look and frame noise."""
        utterance = np.repeat(np.arange(len(lengths)), lengths)
        logits = _FER_SHARPNESS * teacher_view @ self.fer_classifier.T
        logits += _FER_FACE_NOISE * self.rng.standard_normal((len(lengths), logits.shape[1]))[utterance]
        logits += _FER_FRAME_NOISE * self.rng.standard_normal(logits.shape)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        return np.split(probs / probs.sum(-1, keepdims=True), np.cumsum(lengths)[:-1])

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

    def said_emotions(self, emotion: np.ndarray, wrong_share: float) -> np.ndarray:
        """The emotion a text names: the utterance's, or another one ``wrong_share`` of the time (people
        say "fine" when they are not)."""
        wrong = self.rng.random(len(emotion)) < wrong_share
        other = (emotion + 1 + self.rng.integers(len(EMOTIONS) - 1, size=len(emotion))) % len(EMOTIONS)
        return np.where(wrong, other, emotion)

    def texts(self, said: np.ndarray, names_emotion: np.ndarray, context_share: float) -> List[str]:
        """A feeling phrase with a word for ``said`` where the text names an emotion (after a neutral
        clause ``context_share`` of the time), else neutral talk: a clause ending in punctuation."""
        n = len(said)
        phrases = self._pick(_FEELING_PHRASES, n)
        words = self.emotion_words(said)
        clauses = self.neutral_clause(n)
        endings = self._pick([".", "!", "?"], n)
        # the feeling follows the clause in the same sentence or in the next one (as the prompt's does)
        joints = self._pick([",", ".", "!", "?"], n)
        with_context = self.rng.random(n) < context_share
        out = []
        for i in range(n):
            if names_emotion[i]:
                feeling = phrases[i].format(w=words[i])
                out.append(f"{clauses[i]} {joints[i]} {feeling}" if with_context[i] else feeling)
            else:
                out.append(f"{clauses[i]} {endings[i]}")
        return out


@dataclass
class _Rates:
    """Counts behind the rates the world prints: what its texts say and how good its FER teacher is."""

    utterances: int = 0
    texts_naming_an_emotion: int = 0
    texts_naming_a_wrong_one: int = 0
    texts_with_the_gold_label_word: int = 0
    faces: int = 0
    fer_agrees: int = 0  #: faces whose mean FER distribution peaks on the utterance's emotion

    def add(self, other: "_Rates") -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_shares(self) -> Dict[str, float]:
        n = max(self.utterances, 1)
        return {"utterances": self.utterances,
                "texts naming an emotion": self.texts_naming_an_emotion / n,
                "texts naming a wrong emotion": self.texts_naming_a_wrong_one / n,
                "texts with the gold label word": self.texts_with_the_gold_label_word / n,
                "FER teacher agreement with the emotion": self.fer_agrees / max(self.faces, 1)}


def _write_split(world: _World, data_dir: str, split: str, vocab, tokenizer: WordPieceTokenizer,
                 speakers: Sequence[str], emotion: np.ndarray, cues: _Modalities, shuffle_links: bool = False,
                 context_share: float = 0.5) -> _Rates:
    """Draw and write ``len(emotion)`` utterances of ``speakers[i]`` with ``emotion[i]``, in chunks."""
    from memobert_plugin.prepare.binarize import TextBinarizer  # torch and fairseq: imported when writing, not for --help

    text = TextBinarizer(vocab, os.path.join(data_dir, split))
    dims = {"visual": _VISUAL_DIM, "visual_fer": len(FER_CLASSES), "acoustic": _ACOUSTIC_DIM}
    writers = {s: FeatureStoreWriter(data_dir, split, s, d) for s, d in dims.items()}
    # the negative control: texts speak of another utterance's emotion (a permutation keeps the counts)
    text_emotion = world.shuffle_rng.permutation(emotion) if shuffle_links else emotion
    pieces: Dict[str, List[str]] = {}
    rates = _Rates()
    fer_class = np.array([FER_CLASSES.index(f) for f in _FER_OF_EMOTION])
    for start in range(0, len(emotion), _CHUNK):
        rows = slice(start, min(start + _CHUNK, len(emotion)))
        emo, n = emotion[rows], len(emotion[rows])
        offsets = world.speaker_offsets(speakers[rows])
        cued = {m: world.rng.random(n) < getattr(cues, m) for m in ("text", "visual", "acoustic")}
        face_lengths = world.lengths("visual", n, may_be_empty=True)
        events = world.expression_events(n)
        shared_pose = world.rng.standard_normal((n, _POSE_DIMS))
        poses = {m: np.sqrt(_SHARED_POSE) * shared_pose + np.sqrt(1 - _SHARED_POSE) * world.rng.standard_normal(
            (n, _POSE_DIMS)) for m in ("visual", "acoustic")}
        visual, teacher_view = world.frames("visual", emo, cued["visual"], offsets["visual"], poses["visual"], events,
                                    face_lengths)
        acoustic, _ = world.frames("acoustic", emo, cued["acoustic"], offsets["acoustic"], poses["acoustic"], events,
                                   world.lengths("acoustic", n, may_be_empty=False))
        streams = {"visual": visual, "visual_fer": world.fer(teacher_view, face_lengths), "acoustic": acoustic}
        said = world.said_emotions(text_emotion[rows], cues.wrong_word)
        chunk = _Rates(utterances=n, texts_naming_an_emotion=int(cued["text"].sum()),
                       texts_naming_a_wrong_one=int((cued["text"] & (said != emo)).sum()))
        for i, sentence in enumerate(world.texts(said, cued["text"], context_share)):
            words = sentence.split()  # lower-case words and separate punctuation: tokenised word by word
            chunk.texts_with_the_gold_label_word += int(EMOTIONS[emo[i]] in words)
            if len(streams["visual_fer"][i]):
                chunk.faces += 1
                chunk.fer_agrees += int(np.argmax(streams["visual_fer"][i].mean(0)) == fer_class[emo[i]])
            for word in words:
                if word not in pieces:
                    pieces[word] = tokenizer.tokenize(word)
            text.add([piece for word in words for piece in pieces[word]])
            for stream, writer in writers.items():
                writer.append(streams[stream][i], item=f"{split}:{start + i}")
        rates.add(chunk)
    text.close()
    for writer in writers.values():
        writer.close()
    return rates


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
                      shuffle_links: bool = False, emotion_text_share: float = _PRETRAIN_CUES.text) -> DemoCorpus:
    """Write the demo world under ``root`` (the same arguments give the same bytes).

    ``pretrain/`` holds unlabelled ``train``/``valid`` splits; ``emotion/`` holds one ``all``
    split with ``all.meta.tsv`` (id, speaker, session, label) for the cross-validation folds.
    """
    if pretrain_utterances < 16:
        raise ValueError(f"pretrain_utterances must be at least 16, got {pretrain_utterances}")
    if not 0 < labelled_scale <= 1:
        raise ValueError(f"labelled_scale must be in (0, 1], got {labelled_scale}")
    if not 0 <= emotion_text_share <= 1:
        raise ValueError(f"emotion_text_share must be in [0, 1], got {emotion_text_share}")
    from memobert_plugin.prepare.binarize import write_dictionary  # fairseq: imported when writing, not for --help

    os.makedirs(root, exist_ok=True)
    vocab_path = os.path.join(root, "vocab.txt")
    with atomic_open(vocab_path) as handle:
        handle.write("".join(f"{tok}\n" for tok in _vocabulary()))
    tokenizer = WordPieceTokenizer.from_file(vocab_path)
    world = _World(seed)
    prior = np.asarray(TABLE1_COUNTS) / sum(TABLE1_COUNTS)
    pretrain_cues = dataclasses.replace(_PRETRAIN_CUES, text=emotion_text_share)
    rates: Dict[str, Dict[str, float]] = {}

    pretrain_dir = os.path.join(root, "pretrain")
    vocab = write_dictionary(vocab_path, pretrain_dir)
    film_speakers = np.array([f"Movie{m:02d}_{c}" for m in range(1, _PRETRAIN_SPEAKERS // 2 + 1) for c in "AB"])
    for split, count in (("train", pretrain_utterances), ("valid", max(pretrain_utterances // 20, 16))):
        speakers = film_speakers[world.rng.integers(len(film_speakers), size=count)]
        emotion = world.rng.choice(len(EMOTIONS), size=count, p=prior)
        rates[f"pretrain {split}"] = _write_split(world, pretrain_dir, split, vocab, tokenizer, speakers, emotion,
                                                  pretrain_cues, shuffle_links).as_shares()
    _write_checksums(pretrain_dir)

    emotion_dir = os.path.join(root, "emotion")
    write_dictionary(vocab_path, emotion_dir)
    names, speaker_index, emotion = _labelled_layout(world.rng, labelled_scale)
    speakers = np.asarray(names)[speaker_index]
    rates["emotion all"] = _write_split(world, emotion_dir, "all", vocab, tokenizer, speakers, emotion,
                                        _LABELLED_CUES).as_shares()
    with atomic_open(os.path.join(emotion_dir, "all.meta.tsv")) as handle:
        handle.write("\t".join(META_COLUMNS) + "\n")
        seen: Dict[str, int] = {}
        for speaker, e in zip(speakers, emotion):
            seen[speaker] = seen.get(speaker, 0) + 1
            handle.write(f"{speaker}_{seen[speaker] - 1:04d}\t{speaker}\t{speaker[:5]}\t{EMOTIONS[e]}\n")
    _write_checksums(emotion_dir)
    return DemoCorpus(root, vocab_path, pretrain_dir, emotion_dir, rates)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-utterances", type=int, default=20000, help="size of the unlabelled train split")
    parser.add_argument("--labelled-scale", type=float, default=1.0,
                        help="fraction of IEMOCAP's Table 1 class counts in the labelled split (1.0: 5531 utterances)")
    parser.add_argument("--emotion-text-share", type=float, default=_PRETRAIN_CUES.text,
                        help="share of pretraining texts that name an emotion (a wrong one "
                             f"{100 * _PRETRAIN_CUES.wrong_word:.0f}%% of the time); the rest is neutral talk")
    parser.add_argument("--shuffle-links", action="store_true",
                        help="negative control: pretraining texts shuffled across utterances, so emotion words no "
                             "longer go with their utterance's face and voice")
    args = parser.parse_args()
    corpus = write_demo_corpus(args.root, seed=args.seed, pretrain_utterances=args.pretrain_utterances,
                               labelled_scale=args.labelled_scale, shuffle_links=args.shuffle_links,
                               emotion_text_share=args.emotion_text_share)
    for split, shares in corpus.rates.items():
        print(f"{split}: " + ", ".join(f"{name} {value:.1%}" if isinstance(value, float) else f"{value} {name}"
                                       for name, value in shares.items()))
    print(f"pretraining data: {corpus.pretrain_data}\nemotion data: {corpus.emotion_data}")


if __name__ == "__main__":
    main()
