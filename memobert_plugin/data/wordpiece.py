"""BERT's uncased WordPiece tokenisation from a local vocab.txt, without extra dependencies.

Matches ``transformers.BertTokenizer(do_lower_case=True)``: text cleaning, CJK
spacing, lower-casing with accent stripping, punctuation splitting, then greedy
longest-match-first WordPiece with ``##`` continuations.
"""

from __future__ import annotations

import unicodedata
from typing import Dict, Iterable, List

from memobert_plugin.data.vocab_file import read_vocab_file

__all__ = ["WordPieceTokenizer"]

_MAX_WORD_CHARS = 100


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPieceTokenizer:
    """``tokenize(text) -> word pieces``; words are recoverable from the ``##`` marks."""

    def __init__(self, vocab: Dict[str, int], unk_token: str = "[UNK]", never_split: Iterable[str] = ()):
        self.vocab = vocab
        self.unk_token = unk_token
        self.never_split = set(never_split)

    @classmethod
    def from_file(cls, path: str, never_split: Iterable[str] = ()) -> "WordPieceTokenizer":
        return cls({token: i for i, token in enumerate(read_vocab_file(path))}, never_split=never_split)

    def basic_tokens(self, text: str) -> List[str]:
        cleaned = []
        for ch in text:
            if ch == "\x00" or ch == "\ufffd" or _is_control(ch):
                continue
            cleaned.append(" " if _is_whitespace(ch) else (f" {ch} " if _is_cjk(ord(ch)) else ch))
        tokens = []
        for word in "".join(cleaned).split():
            if word in self.never_split:
                tokens.append(word)
                continue
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    if current:
                        tokens.append(current)
                    tokens.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                tokens.append(current)
        return tokens

    def word_pieces(self, word: str) -> List[str]:
        if len(word) > _MAX_WORD_CHARS:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> List[str]:
        return [p for word in self.basic_tokens(text) for p in (
            [word] if word in self.never_split else self.word_pieces(word)
        )]
