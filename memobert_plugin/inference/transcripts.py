"""Timed transcripts of a recording: SubRip (``.srt``), WebVTT (``.vtt``) or a TSV with ``start, end, text``.

Each is read into :class:`~memobert_plugin.prepare.corpora.videos.Cue` s (seconds, text without markup);
a line that is not what the format expects is a ValueError naming the file and line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import List

from memobert_plugin.prepare.corpora.common import LayoutError, read_lines
from memobert_plugin.prepare.corpora.videos import Cue, read_srt

__all__ = ["TRANSCRIPT_EXTENSIONS", "read_transcript", "read_vtt", "read_transcript_tsv"]

TRANSCRIPT_EXTENSIONS = (".srt", ".vtt", ".tsv")
_VTT_TIME = r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})"  # WebVTT may leave the hours out
_VTT_TIMING = re.compile(rf"^{_VTT_TIME}\s+-->\s+{_VTT_TIME}(?:\s.*)?$")  # cue settings may follow
_VTT_MARKUP = re.compile(r"<[^>]*>")


def _vtt_seconds(hours, minutes, seconds, millis) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def read_vtt(path: str) -> List[Cue]:
    """The cues of a WebVTT file: a ``WEBVTT`` header, then blocks (an optional identifier line, a timing
    line, text lines) separated by blank lines; ``NOTE``, ``STYLE`` and ``REGION`` blocks are skipped."""
    lines = read_lines(path)
    if not lines or not lines[0].startswith("WEBVTT"):
        raise LayoutError(path, "a WebVTT file starts with the line 'WEBVTT'", 1)
    cues, i = [], 1
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block_start = i
        if lines[i].split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        timing = _VTT_TIMING.match(lines[i].strip())
        if not timing and i + 1 < len(lines):  # an identifier line before the timing
            i += 1
            timing = _VTT_TIMING.match(lines[i].strip())
        if not timing:
            raise LayoutError(path, "expected a cue timing like '00:01:02.500 --> 00:01:04.000', found "
                                    f"{lines[i]!r}", i + 1)
        i += 1
        text = []
        while i < len(lines) and lines[i].strip():
            text.append(_VTT_MARKUP.sub("", lines[i]))
            i += 1
        values = timing.groups()
        cues.append(Cue(block_start + 1, _vtt_seconds(*values[:4]), _vtt_seconds(*values[4:]),
                        " ".join(" ".join(text).split())))
    return cues


def read_transcript_tsv(path: str) -> List[Cue]:
    """A tab-separated table with a header naming ``start``, ``end`` (seconds) and ``text`` columns."""
    lines = read_lines(path)
    reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [c for c in ("start", "end", "text") if c not in (reader.fieldnames or [])]
    if missing:
        raise LayoutError(path, f"the header needs the columns start, end, text (seconds, seconds, words); "
                                f"{', '.join(missing)} missing", 1)
    cues = []
    for line, row in enumerate(reader, start=2):
        try:
            start, end = float(row["start"]), float(row["end"])
        except (TypeError, ValueError):
            raise LayoutError(path, f"start and end must be seconds, found {row['start']!r} and {row['end']!r}",
                              line) from None
        cues.append(Cue(line, start, end, " ".join((row["text"] or "").split())))
    return cues


def read_transcript(path: str) -> List[Cue]:
    """The cues of ``path``, by its extension (:data:`TRANSCRIPT_EXTENSIONS`), each checked to end after it starts."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such transcript file")
    reader = {".srt": read_srt, ".vtt": read_vtt, ".tsv": read_transcript_tsv}.get(os.path.splitext(path)[1].lower())
    if reader is None:
        raise ValueError(f"{path}: a transcript is .srt, .vtt or .tsv (start, end, text)")
    cues = reader(path)
    for cue in cues:
        if not 0 <= cue.start < cue.end:
            raise LayoutError(path, f"a cue must end after it starts, at 0 s or later ({cue.start} -> {cue.end})",
                              cue.line)
    return cues
