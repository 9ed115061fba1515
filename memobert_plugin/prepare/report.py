"""Per-utterance problems: raised by a stage as :class:`ItemError`, kept as :class:`Problem` rows.

Every stage writes the problems of each shard next to its outputs; the output stage
gathers them into ``report.tsv`` together with what was done about each one (the
utterance dropped, or kept without that modality). Nothing is dropped silently.
A problem is an ``error`` (the stage has no output for the utterance) or a ``warning``
(the output is degraded but kept: audio cut short by a truncated file, media clipped at
``--max-seconds``).
"""

from __future__ import annotations

import re
from dataclasses import astuple, dataclass
from typing import Iterable, List, Sequence

from memobert_plugin.files import atomic_open

__all__ = [
    "ItemError", "Problem", "PROBLEM_COLUMNS", "ERROR", "WARNING", "write_tsv", "write_problems", "read_problems",
    "clean_field",
]

PROBLEM_COLUMNS = ("id", "line", "stage", "reason", "severity")
ERROR, WARNING = "error", "warning"


class ItemError(Exception):
    """A stage cannot process one utterance; the message says why (e.g. ``no face detected``)."""


@dataclass(frozen=True)
class Problem:
    """What went wrong for one utterance (``line``: its line in the manifest) in one stage."""

    id: str
    line: int
    stage: str
    reason: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def clean_field(text: str) -> str:
    """One TSV cell: tabs and line breaks (e.g. from a decoder's message) become spaces."""
    return re.sub(r"\s+", " ", str(text)).strip()


def write_tsv(path: str, columns: Sequence[str], rows: Iterable[Iterable[object]]) -> None:
    """Write ``path`` atomically: the header line, then one line of cleaned cells per row."""
    with atomic_open(path) as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(clean_field(v) for v in row) + "\n")


def write_problems(path: str, problems: Iterable[Problem]) -> None:
    write_tsv(path, PROBLEM_COLUMNS, (astuple(problem) for problem in problems))


def read_problems(path: str) -> List[Problem]:
    with open(path, encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle]
    if not rows or tuple(rows[0]) != PROBLEM_COLUMNS:
        raise ValueError(f"{path}: not a problem list (header {PROBLEM_COLUMNS})")
    return [Problem(r[0], int(r[1]), r[2], r[3], r[4]) for r in rows[1:]]
