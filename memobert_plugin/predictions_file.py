"""The per-utterance predictions TSV, one format for both writers: the emotion task's ``--predictions-path``
(``fairseq-validate``) and ``memobert-predict``.

Columns: ``id, gold, predicted, p_<class>..., problems``. ``gold`` is empty where no label is known
(``memobert-predict``); ``problems`` names what went wrong for the utterance (a missing media file, a
modality predicted without), empty when nothing did; an utterance that could not be predicted at all
keeps its row with ``predicted`` and the probabilities empty and the reason in ``problems``.
No fairseq or torch here.
"""

import os
from typing import List, Sequence, Tuple

__all__ = ["prediction_columns", "prediction_row", "unpredicted_row", "read_predictions"]

_FIXED = ("id", "gold", "predicted")
_PROB = "p_"
_PROBLEMS = "problems"


def prediction_columns(class_names: Sequence[str]) -> List[str]:
    return [*_FIXED, *(f"{_PROB}{name}" for name in class_names), _PROBLEMS]


def prediction_row(utterance_id: str, gold: str, predicted: str, probabilities: Sequence[float],
                   problems: Sequence[str] = ()) -> List[str]:
    """A predicted utterance's row, each probability to 6 decimals."""
    return [utterance_id, gold, predicted, *(f"{p:.6f}" for p in probabilities), "; ".join(problems)]


def unpredicted_row(utterance_id: str, gold: str, class_names: Sequence[str], problems: Sequence[str]) -> List[str]:
    """The row of an utterance that was asked for but could not be predicted, with the reasons."""
    return [utterance_id, gold, "", *("" for _ in class_names), "; ".join(problems)]


def read_predictions(path: str) -> Tuple[List[str], List[List[str]]]:
    """The class names (from the header) and the rows of a predictions file (files written before the
    ``problems`` column read with it empty)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no predictions file (fairseq-validate --predictions-path writes it)")
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n").split("\t") for line in handle]
    header = lines[0] if lines else []
    legacy = header[-1:] != [_PROBLEMS]
    classes = [column[len(_PROB):] for column in header[len(_FIXED):len(header) - (not legacy)]]
    if header != prediction_columns(classes)[:len(classes) + len(_FIXED) + (not legacy)]:
        raise ValueError(f"{path}:1: header {header} is not {list(_FIXED)}, p_<class> columns and {_PROBLEMS!r}")
    return classes, [row + [""] * legacy for row in lines[1:]]
