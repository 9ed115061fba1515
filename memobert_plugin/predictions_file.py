"""The per-utterance predictions TSV: ``id, gold, predicted, p_<class>...`` (one row per evaluated utterance).

Written by the emotion task (``--predictions-path``), read by memobert-cv; no fairseq or torch here.
"""

import os
from typing import List, Sequence, Tuple

__all__ = ["prediction_columns", "read_predictions"]

_FIXED = ("id", "gold", "predicted")
_PROB = "p_"


def prediction_columns(class_names: Sequence[str]) -> List[str]:
    return [*_FIXED, *(f"{_PROB}{name}" for name in class_names)]


def read_predictions(path: str) -> Tuple[List[str], List[List[str]]]:
    """The class names (from the header) and the rows of a predictions file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no predictions file (fairseq-validate --predictions-path writes it)")
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n").split("\t") for line in handle]
    header = lines[0] if lines else []
    classes = [column[len(_PROB):] for column in header[len(_FIXED):]]
    if tuple(header[:len(_FIXED)]) != _FIXED or prediction_columns(classes) != header:
        raise ValueError(f"{path}:1: header {header} is not {list(_FIXED)} followed by p_<class> columns")
    return classes, lines[1:]
