"""``{split}.meta.tsv``: one row per utterance (id, speaker, session, label[, subset]), in data order.

``subset`` (optional column) is the corpus's own fixed split of the utterance (train, valid or
test; empty: none), for corpora evaluated on their official split instead of speaker folds.
"""

import codecs
import csv
import io
import os
from dataclasses import dataclass
from typing import List

__all__ = ["UtteranceMeta", "read_meta", "META_COLUMNS", "SUBSET_COLUMN", "FIXED_SUBSETS"]

META_COLUMNS = ("id", "speaker", "session", "label")  #: the required columns
SUBSET_COLUMN = "subset"  #: the optional column of a corpus's fixed split
FIXED_SUBSETS = ("train", "valid", "test")  #: its values (fairseq's subset names)


@dataclass(frozen=True)
class UtteranceMeta:
    id: str
    speaker: str
    session: str
    label: str
    subset: str = ""  # the corpus's fixed split (FIXED_SUBSETS), or "" where it has none


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
    subset_col = header.index(SUBSET_COLUMN) if SUBSET_COLUMN in header else None
    for line_no, fields in enumerate(reader, start=2):
        if len(fields) != len(header):
            raise ValueError(f"{path}:{line_no}: {len(fields)} fields, the header has {len(header)}")
        row = UtteranceMeta(*(fields[col[c]].strip() for c in META_COLUMNS),
                            subset="" if subset_col is None else fields[subset_col].strip())
        if row.id in seen:
            raise ValueError(f"{path}:{line_no}: duplicate utterance id {row.id!r} (first on line {seen[row.id]})")
        if not row.speaker:
            raise ValueError(f"{path}:{line_no}: utterance {row.id!r} has no speaker")
        if row.subset and row.subset not in FIXED_SUBSETS:
            raise ValueError(f"{path}:{line_no}: utterance {row.id!r} has subset {row.subset!r}, not one of "
                             f"{FIXED_SUBSETS} (or empty)")
        seen[row.id] = line_no
        rows.append(row)
    return rows
