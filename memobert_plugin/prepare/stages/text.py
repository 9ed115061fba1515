"""Text stage: transcripts -> word pieces, with BERT's WordPiece or a corpus-trained sentencepiece model.

Word boundaries (for whole-word masking) need no extra files: they follow from the
pieces themselves, ``##`` continuations in WordPiece and ``\u2581`` word starts in
sentencepiece (see :meth:`BertVocabulary.word_start_flags`).
"""

from __future__ import annotations

import io
import os
from typing import Dict, Iterable, List, Optional

from memobert_plugin.files import atomic_open, sha256_file
from memobert_plugin.prepare.manifest import Utterance
from memobert_plugin.prepare.report import Problem
from memobert_plugin.prepare.shards import Progress, Stage
from memobert_plugin.data.wordpiece import WordPieceTokenizer

__all__ = ["TOKENIZERS", "Tokenizer", "train_sentencepiece", "TextStage", "read_tokens"]

TOKENIZERS = ("wordpiece", "sentencepiece")


class Tokenizer:
    """Pieces of a text and the vocabulary they index (in id order), for either tokenizer."""

    def __init__(self, kind: str, path: str):
        if kind not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {kind!r}; choose from {TOKENIZERS}")
        if not os.path.isfile(path):
            what = "BERT vocab.txt" if kind == "wordpiece" else "sentencepiece .model"
            raise FileNotFoundError(f"{path}: no such {what}")
        self.kind, self.path = kind, path
        if kind == "wordpiece":
            self._wordpiece = WordPieceTokenizer.from_file(path)
            symbols = list(self._wordpiece.vocab)
        else:
            import sentencepiece

            self._sentencepiece = sentencepiece.SentencePieceProcessor(model_file=path)
            symbols = [self._sentencepiece.id_to_piece(i) for i in range(self._sentencepiece.get_piece_size())]
        from memobert_plugin.data.vocabulary import BertVocabulary  # imports fairseq: not at import, for memobert-prepare --help

        self.vocab = BertVocabulary(symbols, source=path)  # raises if the special tokens are missing

    @property
    def symbols(self) -> List[str]:
        return self.vocab.symbols

    def tokenize(self, text: str) -> List[str]:
        if self.kind == "wordpiece":
            return self._wordpiece.tokenize(text)
        return self._sentencepiece.encode(text, out_type=str)


def train_sentencepiece(
    texts: Iterable[str], model_path: str, vocab_size: int = 8000, model_type: str = "unigram",
    max_sentences: int = 2_000_000,
) -> Tokenizer:
    """Train a lower-casing sentencepiece model whose first ids are [PAD] [UNK] [CLS] [SEP] [MASK].

    [CLS]/[SEP]/[PAD]/[MASK] are control symbols (never produced from text), [UNK] is the
    unknown piece; word starts carry ``\u2581``. The vocabulary may come out smaller than
    ``vocab_size`` on a small corpus. At most ``max_sentences`` texts (a random sample) are used.
    """
    import sentencepiece

    from memobert_plugin.data.vocabulary import SPECIAL_TOKENS

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(t for t in texts if t.strip()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        hard_vocab_limit=False,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        normalization_rule_name="nmt_nfkc_cf",  # NFKC + case folding: uncased, as bert-base-uncased
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        pad_piece=SPECIAL_TOKENS["pad"], unk_piece=SPECIAL_TOKENS["unk"],
        bos_piece=SPECIAL_TOKENS["bos"], eos_piece=SPECIAL_TOKENS["eos"],
        control_symbols=[SPECIAL_TOKENS["mask"]],
        minloglevel=2,
    )
    with atomic_open(model_path, "wb") as handle:
        handle.write(model.getvalue())
    return Tokenizer("sentencepiece", model_path)


def read_tokens(prefix: str) -> List[str]:
    """A text shard's lines: the pieces of each entry, space-separated (an empty line: no text)."""
    with open(prefix + ".tokens", encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


class TextStage(Stage):
    """Tokenise every entry into ``{shard}.tokens``, one line of space-separated pieces each."""

    name = "text"
    parallel = False  # tokenising a shard takes milliseconds; a worker takes seconds to start
    inputs = ("id", "line", "text")

    def __init__(self, kind: str, path: str):
        self.kind, self.path = kind, os.path.abspath(path)
        self._tokenizer: Optional[Tokenizer] = None
        self._checksum: Optional[str] = None

    def config(self) -> dict:
        if self._checksum is None:  # hashed once per stage object: run_stage's fingerprints and summary share it
            self._checksum = sha256_file(self.path)
        return {"tokenizer": self.kind, "path": self.path, "sha256": self._checksum}

    def setup(self) -> None:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.kind, self.path)

    @property
    def tokenizer(self) -> Tokenizer:
        self.setup()
        return self._tokenizer

    def run_shard(self, entries: List[Utterance], prefix: str, advance: Progress,
                  reuse: Optional[Dict[int, int]] = None) -> List[Problem]:
        problems = []  # tokenising is cheap: nothing is reused
        with atomic_open(prefix + ".tokens") as handle:
            for utterance in entries:
                pieces = self.tokenizer.tokenize(utterance.text)
                if not pieces:
                    reason = "empty text" if not utterance.text.strip() else (
                        f"empty text after normalisation (was {utterance.text!r})")
                    problems.append(Problem(utterance.id, utterance.line, self.name, reason))
                handle.write(" ".join(pieces) + "\n")
                advance(1)
        return problems
