"""``{split}.meta.tsv``: one row per utterance (id, speaker, session, label), in data order."""

import codecs
import csv
import io
import os
from dataclasses import dataclass
from typing import List

__all__ = ["UtteranceMeta", "read_meta", "META_COLUMNS"]

META_COLUMNS = ("id", "speaker", "session", "label")


@dataclass(frozen=True)
class UtteranceMeta:
    id: str
    speaker: str
    session: str
    label: str


def read_meta(path: str) -> List[UtteranceMeta]:
    """Read and check a meta file: the columns, one row per utterance, unique ids."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no utterance metadata (id, speaker, session, label)")
    rows: List[UtteranceMeta] = []
    seen = {}
    with open(path, "rb") as handle:
        raw = handle.read().removeprefix(codecs.BOM_UTF8)  # as some spreadsheets write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line_no}: not UTF-8 text ({err.reason}); save it as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    missing = [c for c in META_COLUMNS if header is None or c not in header]
    if missing:
        raise ValueError(f"{path}:1: header lacks the columns {missing} (has {header})")
    col = {c: header.index(c) for c in META_COLUMNS}
    for line_no, fields in enumerate(reader, start=2):
        if len(fields) != len(header):
            raise ValueError(f"{path}:{line_no}: {len(fields)} fields, the header has {len(header)}")
        row = UtteranceMeta(*(fields[col[c]].strip() for c in META_COLUMNS))
        if row.id in seen:
            raise ValueError(f"{path}:{line_no}: duplicate utterance id {row.id!r} (first on line {seen[row.id]})")
        if not row.speaker:
            raise ValueError(f"{path}:{line_no}: utterance {row.id!r} has no speaker")
        seen[row.id] = line_no
        rows.append(row)
    return rows
