"""A fairseq :class:`~fairseq.data.Dictionary` whose ids are exactly a BERT vocab's ids.

fairseq's stock dictionary prepends ``<s> <pad> </s> <unk>``, which would shift every id
by four and break the row-for-row mapping onto a BERT embedding matrix. This dictionary
adds no symbols of its own: ``[CLS]``/``[SEP]``/``[PAD]``/``[UNK]``/``[MASK]`` play the
roles of bos/eos/pad/unk/mask, so a binarized line ``w1 .. wn </s>`` is ``w1 .. wn [SEP]``.
"""

from __future__ import annotations

import os
from typing import Iterable, List

import numpy as np
from fairseq.data import Dictionary

from memobert_plugin.data.vocab_file import read_vocab_file

__all__ = ["BertVocabulary", "SPECIAL_TOKENS"]

#: role -> token, as in bert-base-uncased's vocab.txt
SPECIAL_TOKENS = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "bos": "[CLS]",
    "eos": "[SEP]",
    "mask": "[MASK]",
}

#: sentencepiece's word-start marker
SENTENCEPIECE_WORD_START = "\u2581"


class BertVocabulary(Dictionary):
    """Symbols in file order; special roles looked up by name, never added."""

    def __init__(self, symbols: Iterable[str], source: str = "<memory>"):
        super().__init__(add_special_symbols=False)
        self.source = source
        for line_no, sym in enumerate(symbols, start=1):
            if sym in self.indices:
                raise ValueError(f"{source}:{line_no}: duplicate token {sym!r}")
            self.indices[sym] = len(self.symbols)
            self.symbols.append(sym)
            self.count.append(1)
        missing = [tok for tok in SPECIAL_TOKENS.values() if tok not in self.indices]
        if missing:
            raise ValueError(
                f"{source}: vocabulary lacks the special tokens {missing}; a BERT-style "
                f"vocab.txt needs {sorted(SPECIAL_TOKENS.values())}"
            )
        self.bos_word, self.eos_word = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]
        self.pad_word, self.unk_word = SPECIAL_TOKENS["pad"], SPECIAL_TOKENS["unk"]
        self.bos_index = self.indices[self.bos_word]
        self.eos_index = self.indices[self.eos_word]
        self.pad_index = self.indices[self.pad_word]
        self.unk_index = self.indices[self.unk_word]
        self.mask_index = self.indices[SPECIAL_TOKENS["mask"]]
        self.nspecial = 0  # Dictionary.save writes symbols[nspecial:]: keep them all

    @classmethod
    def load(cls, f: str) -> "BertVocabulary":
        """Read a vocab.txt (one token a line) or a fairseq dict.txt (``token count``)."""
        return cls(read_vocab_file(f), source=os.path.abspath(f))

    def special_ids(self) -> List[int]:
        """Ids of bracketed control tokens ([CLS], [unused0], ...): never masked or sampled."""
        return [i for i, s in enumerate(self.symbols) if s.startswith("[") and s.endswith("]")]

    @property
    def is_sentencepiece(self) -> bool:
        """Whether the pieces are sentencepiece's (word starts marked ``\u2581``), not WordPiece's."""
        return any(s.startswith(SENTENCEPIECE_WORD_START) for s in self.symbols)

    def word_start_flags(self) -> np.ndarray:
        """Per id: True where a token begins a word.

        WordPiece marks continuations with ``##``; a sentencepiece vocab marks word
        starts with ``\u2581``. Which convention applies is decided by the vocab itself.
        """
        if self.is_sentencepiece:
            flags = [s.startswith(SENTENCEPIECE_WORD_START) for s in self.symbols]
        else:
            flags = [not s.startswith("##") for s in self.symbols]
        return np.asarray(flags, dtype=bool)
