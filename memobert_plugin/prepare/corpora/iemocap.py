"""IEMOCAP (``IEMOCAP_full_release``) -> a memobert-prepare manifest with the usual four classes.

Read from the release as distributed (examples/iemocap/README.md has the details):

  Session{1..5}/dialog/EmoEvaluation/<dialog>.txt    per utterance a line
      [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
      followed by the annotators' lines (ignored)
  Session{n}/dialog/transcriptions/<dialog>.txt      Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
  Session{n}/dialog/wav/<dialog>.wav                 the dialog's audio
  Session{n}/dialog/avi/DivX/<dialog>.avi            the dialog's video (both actors on screen)

Each utterance points at its dialog's wav and avi with its start and end: the manifest has one
time span for both, and the sentence wavs (``sentences/wav``) are cut from these dialog wavs.
The speaker is the session and the gender letter of the id's last part (``..._F000`` in
Session 1 is ``Ses01F``). Classes: neu -> neutral, hap and exc -> happy, ang -> anger,
sad -> sad; every other label is excluded and listed in the report.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Tuple

from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError, ManifestRow, MediaCheck, read_lines

__all__ = ["CLASS_OF", "EXCLUDED", "build_iemocap"]

SESSIONS = range(1, 6)
CLASS_OF = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "anger", "sad": "sad"}
EXCLUDED = {"fru": "frustration", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other",
            "xxx": "no majority"}
_HEADER = re.compile(r"^\[(\S+) - (\S+)\]\s+(\S+)\s+(\S+)\s+\[[^\]]*\]\s*$")
_HEADER_EXAMPLE = "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]"
# transcription lines without an id and time (e.g. "M: Yeah.") belong to no labelled utterance
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_FALLBACK_ENCODING = "latin-1"  # a few release files are not UTF-8; Latin-1 decodes any byte


def _session_dirs(root: str) -> List[Tuple[int, str]]:
    if not os.path.isdir(root):
        raise LayoutError(root, "no such directory (expected IEMOCAP_full_release with Session1 .. Session5)")
    dirs = [(n, os.path.join(root, f"Session{n}")) for n in SESSIONS]
    missing = [os.path.basename(d) for _, d in dirs if not os.path.isdir(d)]
    if missing:
        raise LayoutError(root, f"missing {', '.join(missing)}: IEMOCAP_full_release has Session1 .. Session5 "
                                "(the 10-fold cross-validation needs all five)")
    return dirs


def _transcripts(path: str) -> Dict[str, str]:
    if not os.path.isfile(path):
        raise LayoutError(path, "transcription file missing (each dialog has one in dialog/transcriptions)")
    texts = {}
    for line in read_lines(path, _FALLBACK_ENCODING):
        match = _TRANSCRIPT.match(line.strip())
        if match:
            texts[match.group(1)] = match.group(2).strip()
    return texts


def _seconds(cell: str, path: str, line_no: int) -> float:
    try:
        return float(cell)
    except ValueError:
        raise LayoutError(path, f"time {cell!r} is not a number of seconds", line_no) from None


def _dialog_rows(path: str, session: int, session_dir: str, report: CorpusReport, media: MediaCheck,
                 seen: Dict[str, str]) -> List[ManifestRow]:
    dialog = os.path.splitext(os.path.basename(path))[0]
    if not dialog.startswith(f"Ses0{session}"):
        raise LayoutError(path, f"dialog {dialog!r} is not of Session{session} (names start with Ses0{session})")
    texts = _transcripts(os.path.join(session_dir, "dialog", "transcriptions", f"{dialog}.txt"))
    audio = os.path.join(session_dir, "dialog", "wav", f"{dialog}.wav")
    video = os.path.join(session_dir, "dialog", "avi", "DivX", f"{dialog}.avi")
    id_pattern = re.compile(rf"^{re.escape(dialog)}_([FM])\d{{3}}$")
    rows = []
    for line_no, line in enumerate(read_lines(path, _FALLBACK_ENCODING), start=1):
        if not line.startswith("["):
            continue  # the header comment and the annotators' lines
        match = _HEADER.match(line)
        if not match:
            raise LayoutError(path, f"utterance line {line!r} is not like {_HEADER_EXAMPLE!r}", line_no)
        start, end, uid, raw = match.groups()
        source = f"{path}:{line_no}"
        gender = id_pattern.match(uid)
        if not gender:
            raise LayoutError(path, f"utterance id {uid!r} is not of dialog {dialog} (expected {dialog}_F000 "
                                    f"or {dialog}_M000 style ids)", line_no)
        if uid in seen:
            raise LayoutError(path, f"utterance {uid} is listed twice (first at {seen[uid]})", line_no)
        seen[uid] = source
        start_s, end_s = _seconds(start, path, line_no), _seconds(end, path, line_no)
        if not 0 <= start_s < end_s:
            raise LayoutError(path, f"utterance {uid}: end {end} is not after start {start}", line_no)
        if raw in EXCLUDED:
            report.add(source, uid, f"label {raw} ({EXCLUDED[raw]})", "excluded")
            continue
        if raw not in CLASS_OF:
            raise LayoutError(path, f"utterance {uid}: unknown label {raw!r} (IEMOCAP's are "
                                    f"{sorted(CLASS_OF) + sorted(EXCLUDED)})", line_no)
        text = texts.get(uid)
        if text is None:
            report.add(source, uid, "no line in the transcription file", "kept with empty text")
        rows.append(ManifestRow(
            id=uid, text=text or "", speaker=f"Ses0{session}{gender.group(1)}", session=f"Ses0{session}",
            label=CLASS_OF[raw], raw_label=raw, audio=media(source, uid, "audio", audio),
            video=media(source, uid, "video", video), start=start_s, end=end_s,
        ))
    return rows


def build_iemocap(root: str, report: CorpusReport) -> List[ManifestRow]:
    """The four-class utterances of an IEMOCAP_full_release folder; exclusions and gaps go to ``report``."""
    rows: List[ManifestRow] = []
    seen: Dict[str, str] = {}
    media = MediaCheck(report)
    for session, session_dir in _session_dirs(root):
        labels_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
        label_files = sorted(glob.glob(os.path.join(labels_dir, "Ses*.txt")))  # not the ._* copies macOS leaves
        if not label_files:
            raise LayoutError(labels_dir, "no Ses*.txt label files (expected one per dialog, e.g. Ses01F_impro01.txt)")
        for path in label_files:
            rows += _dialog_rows(path, session, session_dir, report, media, seen)
    media.require_some("Session<n>/dialog/wav/<dialog>.wav and Session<n>/dialog/avi/DivX/<dialog>.avi")
    return rows
