"""The corpus manifest: one tab-separated line per utterance (format documented in docs/prepare.md).

Header columns, any order: ``id`` and ``text`` are required; ``speaker``, ``session``,
``label``, ``audio``, ``video``, ``start``, ``end``, ``subset`` are optional, and any cell of an
optional column may be empty. Relative paths are relative to the manifest's folder.
A malformed header is an error; a malformed row becomes a reported :class:`Problem`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Iterator, List, Optional, Union

from memobert_plugin.data.utterance_meta import FIXED_SUBSETS, SUBSET_COLUMN
from memobert_plugin.prepare.report import Problem

__all__ = [
    "MANIFEST_COLUMNS", "META_FIELDS", "PAPER_LABELS", "REQUIRED_COLUMNS",
    "ManifestError", "ManifestEntry", "Utterance", "manifest_columns",
    "read_manifest",
]

MANIFEST_COLUMNS = ("id", "speaker", "session", "label", "text", "audio", "video", "start", "end", SUBSET_COLUMN)
#: the emotion classes of the paper's IEMOCAP and MSP-IMPROV setups (the emotion task's default --emotion-labels)
PAPER_LABELS = ("anger", "happy", "neutral", "sad")
#: columns only the written metadata holds: editing them re-runs no extractor
META_FIELDS = ("speaker", "session", "label", SUBSET_COLUMN)
REQUIRED_COLUMNS = ("id", "text")
_STAGE = "manifest"


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (missing file, bad header)."""


@dataclass(frozen=True)
class ManifestEntry:
    """The manifest columns of one utterance; paths are absolute, times in seconds (None: not given)."""

    id: str
    text: str
    speaker: str = ""
    session: str = ""
    label: str = ""
    audio: str = ""
    video: str = ""
    start: Optional[float] = None
    end: Optional[float] = None
    subset: str = ""  # the corpus's fixed split: train, valid or test (memobert-cv evaluates on it), or none


@dataclass(frozen=True)
class Utterance(ManifestEntry):
    """One validated manifest row and the manifest line it came from."""

    line: int = 0

    def to_row(self) -> List[str]:
        """Cells for a shard's entry list (same field order as the dataclass)."""
        return ["" if v is None else str(v) for v in (getattr(self, f.name) for f in fields(self))]

    @classmethod
    def from_row(cls, cells: List[str]) -> "Utterance":
        if len(cells) == len(fields(cls)) - 1:  # an entry list written before the subset field: none
            cells = [*cells[:-1], "", cells[-1]]
        uid, text, speaker, session, label, audio, video, start, end, subset, line = cells
        as_time = lambda cell: float(cell) if cell else None  # noqa: E731
        return cls(uid, text, speaker, session, label, audio, video, as_time(start), as_time(end), subset, int(line))


def _header(path: str, line: str) -> List[str]:
    columns = line.rstrip("\r\n").split("\t")
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if unknown or missing or duplicated:
        raise ManifestError(
            f"{path}:1: bad header {columns}: "
            + "; ".join(
                msg for msg in (
                    f"unknown columns {unknown}" if unknown else "",
                    f"missing required columns {missing}" if missing else "",
                    f"repeated columns {duplicated}" if duplicated else "",
                ) if msg
            )
            + f". Allowed columns: {list(MANIFEST_COLUMNS)} (tab-separated)"
        )
    return columns


def _seconds(cell: str, name: str) -> Optional[float]:
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{name} {cell!r} is not a number of seconds") from None
    if not value >= 0:  # also rejects nan
        raise ValueError(f"{name} {cell!r} must be >= 0 seconds")
    return value


def _utterance(cells: dict, line_no: int, base_dir: str) -> Utterance:
    uid = cells["id"]
    if not uid or any(ch.isspace() for ch in uid):
        raise ValueError(f"id {uid!r} must be non-empty and without spaces")
    start, end = _seconds(cells.get("start", ""), "start"), _seconds(cells.get("end", ""), "end")
    if end is not None and end <= (start or 0.0):
        raise ValueError(f"end {end} s is not after start {start or 0.0} s")
    subset = cells.get(SUBSET_COLUMN, "")
    if subset not in ("",) + FIXED_SUBSETS:
        raise ValueError(f"subset {subset!r} is not one of {', '.join(FIXED_SUBSETS)} (or empty)")
    path = lambda name: os.path.join(base_dir, cells[name]) if cells.get(name) else ""  # noqa: E731
    return Utterance(
        line=line_no, id=uid, text=cells["text"], speaker=cells.get("speaker", ""),
        session=cells.get("session", ""), label=cells.get("label", ""),
        audio=path("audio"), video=path("video"), start=start, end=end, subset=subset,
    )


def _open(path: str):
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: manifest not found")
    return open(path, encoding="utf-8-sig", newline="")  # -sig: tolerate the BOM some editors write


def _encoding_error(path: str, err: UnicodeDecodeError) -> ManifestError:
    """Name the first line that is not UTF-8 (text I/O decodes ahead in blocks, so find it again)."""
    with open(path, "rb") as raw:
        for line_no, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                break
    return ManifestError(f"{path}:{line_no}: not UTF-8 text ({err.reason}); save the manifest as UTF-8, "
                         "e.g. iconv -f cp1252 -t utf-8")


def _decoded_lines(path: str, handle) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as err:
        raise _encoding_error(path, err) from None


def _read_header(path: str, handle) -> List[str]:
    try:
        first = handle.readline()
    except UnicodeDecodeError as err:
        raise _encoding_error(path, err) from None
    if not first.strip():
        raise ManifestError(f"{path}: empty file; the first line must be the header")
    return _header(path, first)


def manifest_columns(path: str) -> List[str]:
    """The manifest's (validated) header columns."""
    with _open(path) as handle:
        return _read_header(path, handle)


def read_manifest(path: str) -> Iterator[Union[Utterance, Problem]]:
    """Stream the manifest: an :class:`Utterance` per valid row, a :class:`Problem` per bad one.

    Rows are never held in memory together; only the ids seen so far are (to refuse duplicates).
    """
    base_dir = os.path.dirname(os.path.abspath(path))
    seen = set()
    with _open(path) as handle:
        columns = _read_header(path, handle)
        id_col = columns.index("id")
        for line_no, line in enumerate(_decoded_lines(path, handle), start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            values = line.split("\t")
            if len(values) != len(columns):
                uid = values[id_col] if id_col < len(values) else ""
                yield Problem(uid, line_no, _STAGE, f"{len(values)} tab-separated fields, the header has {len(columns)}")
                continue
            cells = dict(zip(columns, values))
            try:
                utterance = _utterance(cells, line_no, base_dir)
            except ValueError as err:
                yield Problem(cells["id"], line_no, _STAGE, str(err))
                continue
            if utterance.id in seen:
                yield Problem(utterance.id, line_no, _STAGE, "duplicate id (an earlier line has it); row skipped")
                continue
            seen.add(utterance.id)
            yield utterance
