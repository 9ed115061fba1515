"""Tokenised text -> fairseq mmap indexed dataset, with the dictionary the tasks read.

Writes exactly what ``fairseq-preprocess --user-dir memobert_plugin --task memobert_pretrain
--only-source --srcdict dict.txt --dataset-impl mmap`` writes (each line's ids, then [SEP]),
streaming, and renames the files into place only once complete.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from fairseq.data import indexed_dataset

from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.files import atomic_open

__all__ = ["save_dictionary", "write_dictionary", "TextBinarizer"]


def save_dictionary(vocab: BertVocabulary, data_dir: str) -> str:
    """Write ``vocab`` as the data dir's fairseq ``dict.txt`` (``token 1`` lines, in id order); return its path."""
    path = os.path.join(data_dir, "dict.txt")
    with atomic_open(path) as handle:
        vocab.save(handle)
    return path


def write_dictionary(vocab_txt: str, data_dir: str) -> BertVocabulary:
    """Copy a BERT vocab.txt as the data dir's fairseq ``dict.txt`` (``token 1`` lines, BERT's order)."""
    vocab = BertVocabulary.load(vocab_txt)
    os.makedirs(data_dir, exist_ok=True)
    save_dictionary(vocab, data_dir)
    return vocab


class TextBinarizer:
    """``add(pieces)`` per utterance, then ``close()``: ``{prefix}.bin`` and ``{prefix}.idx``."""

    def __init__(self, vocab: BertVocabulary, prefix: str):
        self.vocab, self.prefix = vocab, prefix
        self._tmp = prefix + ".partial"
        self._builder = indexed_dataset.make_builder(self._tmp + ".bin", impl="mmap", vocab_size=len(vocab))
        self.unknown = 0

    def add(self, pieces: Sequence[str]) -> None:
        ids = [self.vocab.index(p) for p in pieces]
        self.unknown += sum(i == self.vocab.unk() and p != self.vocab.unk_word for i, p in zip(ids, pieces))
        self._builder.add_item(torch.tensor(ids + [self.vocab.eos()], dtype=torch.int64))

    def close(self) -> None:
        self._builder.finalize(self._tmp + ".idx")
        for ext in (".bin", ".idx"):
            os.replace(self._tmp + ext, self.prefix + ext)
