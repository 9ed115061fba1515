"""What every corpus builder shares: manifest rows, the layout error, and the report of what was left out.

A builder reads a corpus in its official layout and returns :class:`ManifestRow` s plus a
:class:`CorpusReport` listing every utterance it excluded or could only partly describe
(an excluded label, a missing transcript or media file), so nothing is dropped silently.
A layout that differs from what the builder expects is a :class:`LayoutError` naming the
file and line.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import astuple, dataclass
from typing import Dict, Iterable, List, Optional, Sequence

from memobert_plugin.prepare.manifest import MANIFEST_COLUMNS, ManifestEntry
from memobert_plugin.prepare.report import write_tsv

__all__ = ["LayoutError", "ManifestRow", "CorpusReport", "ReportEntry", "REPORT_COLUMNS", "write_manifest",
           "label_summary", "MediaCheck", "read_lines", "read_text"]

REPORT_COLUMNS = ("source", "id", "problem", "action")


class LayoutError(ValueError):
    """The corpus is not laid out as the builder expects; the message names the file (and line)."""

    def __init__(self, path: str, problem: str, line: Optional[int] = None):
        super().__init__(f"{path}{'' if line is None else f':{line}'}: {problem}")


def read_text(path: str, fallback: Optional[str] = None) -> str:
    """A text file decoded as UTF-8 (a BOM is dropped), else as ``fallback``, else a LayoutError."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if fallback:
            return raw.decode(fallback)
        raise LayoutError(path, f"not UTF-8 text ({err.reason}); convert it, e.g. iconv -f cp1252 -t utf-8",
                          raw.count(b"\n", 0, err.start) + 1) from None


def read_lines(path: str, fallback: Optional[str] = None) -> List[str]:
    """A text file's lines (see :func:`read_text`)."""
    return read_text(path, fallback).splitlines()


@dataclass(frozen=True)
class ManifestRow(ManifestEntry):
    """One utterance of a memobert-prepare manifest (docs/prepare.md), as a builder found it."""

    raw_label: str = ""  # the corpus's own label (e.g. IEMOCAP's exc), for the summary; not written


@dataclass(frozen=True)
class ReportEntry:
    source: str  # file:line the utterance comes from
    id: str
    problem: str
    action: str  # "excluded", or what the utterance is kept without


class CorpusReport:
    """Every excluded or incomplete utterance, with where it came from and what was done."""

    def __init__(self) -> None:
        self.entries: List[ReportEntry] = []

    def add(self, source: str, uid: str, problem: str, action: str) -> None:
        self.entries.append(ReportEntry(source, uid, problem, action))

    def counts(self) -> Counter:
        """``(action, problem)`` -> number of utterances."""
        return Counter((e.action, e.problem) for e in self.entries)

    def write(self, path: str) -> None:
        write_tsv(path, REPORT_COLUMNS, (astuple(entry) for entry in self.entries))

    def summary(self) -> List[str]:
        """One line per action: ``excluded: label fru 3, label xxx 5``."""
        by_action: Dict[str, List[str]] = {}
        for (action, problem), count in sorted(self.counts().items()):
            by_action.setdefault(action, []).append(f"{problem} {count}")
        return [f"{action}: {', '.join(parts)}" for action, parts in by_action.items()]


class MediaCheck:
    """Reports each utterance whose audio or video file is missing (each path is looked up once).

    The path stays in the manifest: memobert-prepare then keeps the utterance without that
    modality and lists it in its own report.tsv too. Not one file of a kind found means the
    media are laid out otherwise than expected: :meth:`require_some` makes that an error.
    """

    def __init__(self, report: CorpusReport):
        self.report = report
        self._exists: Dict[str, bool] = {}
        self._kinds: Dict[str, List[str]] = {}  # kind -> its paths, in order

    def __call__(self, source: str, uid: str, kind: str, path: str) -> str:
        if path not in self._exists:
            self._exists[path] = os.path.isfile(path)
            self._kinds.setdefault(kind, []).append(path)
        if not self._exists[path]:
            self.report.add(source, uid, f"missing {kind} file {path}", f"kept without {kind}")
        return path

    def require_some(self, layout: str) -> None:
        """A LayoutError if none of the files of a kind exists (``layout`` describes where they are expected)."""
        for kind, paths in self._kinds.items():
            if not any(self._exists[p] for p in paths):
                raise LayoutError(paths[0], f"none of the {len(paths)} {kind} files exists (this is the first); "
                                            f"expected {layout}")


def write_manifest(path: str, rows: Iterable[ManifestRow]) -> None:
    """Write a manifest: the header, then one line per row (cells cleaned of tabs and line breaks)."""
    write_tsv(path, MANIFEST_COLUMNS,
              (("" if getattr(row, c) is None else getattr(row, c) for c in MANIFEST_COLUMNS) for row in rows))


def label_summary(rows: Sequence[ManifestRow]) -> str:
    """``anger 3, happy 5 (exc 2, hap 3), ...``: kept utterances per label, and the corpus labels merged into one."""
    per_label = Counter(r.label for r in rows if r.label)
    raw = Counter((r.label, r.raw_label) for r in rows)
    parts = []
    for label in sorted(per_label):
        merged = sorted((name, n) for (lab, name), n in raw.items() if lab == label and name)
        detail = f" ({', '.join(f'{name} {n}' for name, n in merged)})" if len(merged) > 1 else ""
        parts.append(f"{label} {per_label[label]}{detail}")
    return ", ".join(parts)
