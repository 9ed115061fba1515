"""The one reader of vocabulary files: a BERT ``vocab.txt`` (a token a line) or a fairseq ``dict.txt``
(``token count``); the data dictionary, the WordPiece tokenizer and ``--bert-init``'s check all use it."""

from __future__ import annotations

from typing import List

__all__ = ["read_vocab_file"]


def read_vocab_file(path: str) -> List[str]:
    """The tokens in file order (a line's id is its position); a malformed line is named."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text vocabulary (not UTF-8: byte {err.object[err.start]:#x})") from None
    if lines and lines[-1] == "":
        lines.pop()
    symbols = []
    for line_no, line in enumerate(lines, start=1):
        parts = line.split(" ")
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            symbols.append(parts[0])
        elif len(parts) == 1 and parts[0]:
            symbols.append(parts[0])
        else:
            raise ValueError(f"{path}:{line_no}: expected 'token' or 'token count', got {line!r}")
    return symbols
