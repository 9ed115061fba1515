"""MSP-IMPROV -> a memobert-prepare manifest with four classes, texts from a transcript file you supply.

Read from the release as distributed (examples/msp_improv/README.md has the details):

  Evalution.txt (spelled so in the release; Evaluation.txt is accepted too): blocks separated
      by blank lines, each starting with the utterance's consensus line
      UTD-IMPROV-S01A-F01-S-FM01.avi; A; A:3.000000; V:2.600000; D:2.400000; N:0.000000
      and followed by the individual ratings (ignored)
  Audio/session<n>/S01A/<type>/MSP-IMPROV-S01A-F01-S-FM01.wav
  Video/session<n>/S01A/<type>/MSP-IMPROV-S01A-F01-S-FM01.avi

The name reads: sentence 01 with target emotion A, actor F01 (the woman of session 1; the
speaker id), recording type S, dyad order FM, turn 01. Consensus labels A -> anger,
H -> happy, S -> sad, N -> neutral; O (other) and X (no agreement) are excluded and listed in
the report, as are recording types not asked for. Transcripts are not part of the release:
``--transcripts`` is a TSV with columns ``id`` and ``text`` (ids as the audio files are named).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, NamedTuple, Sequence, Tuple

from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError, ManifestRow, MediaCheck, read_lines

__all__ = ["CLASS_OF", "EXCLUDED", "RECORDING_TYPES", "build_msp_improv", "read_transcripts"]

CLASS_OF = {"A": "anger", "H": "happy", "S": "sad", "N": "neutral"}
EXCLUDED = {"O": "other", "X": "no agreement"}
RECORDING_TYPES = ("P", "R", "S", "T")
LABEL_FILES = ("Evalution.txt", "Evaluation.txt")
# sentence + target emotion, gender + session, recording type, dyad order + turn
_NAME = re.compile(r"^(?:MSP|UTD)-IMPROV-(S\d{2}[AHNS])-([FM])(\d{2})-([A-Z])-([FM]{2}\d{2,3})$")
_NAME_EXAMPLE = "MSP-IMPROV-S01A-F01-S-FM01"


def _label_file(root: str) -> str:
    if not os.path.isdir(root):
        raise LayoutError(root, "no such directory (expected the MSP-IMPROV folder with Evalution.txt and Audio/)")
    found = [os.path.join(root, name) for name in LABEL_FILES if os.path.isfile(os.path.join(root, name))]
    if len(found) != 1:
        raise LayoutError(root, f"expected one label file {' or '.join(LABEL_FILES)}, found "
                                f"{[os.path.basename(f) for f in found] or 'none'}")
    return found[0]


class _Name(NamedTuple):
    id: str  # as the media files are named: the consensus lines say UTD-IMPROV-..., the files MSP-IMPROV-...
    sentence: str
    speaker: str
    session: int
    kind: str  # the recording type


def _parse_name(name: str, path: str, line_no: int) -> _Name:
    match = _NAME.match(name)
    if not match:
        raise LayoutError(path, f"{name!r} is not an MSP-IMPROV utterance name like {_NAME_EXAMPLE}", line_no)
    sentence, gender, session, kind, _ = match.groups()
    return _Name("MSP-IMPROV-" + name.split("-IMPROV-", 1)[1], sentence, f"{gender}{session}", int(session), kind)


def read_transcripts(path: str) -> Dict[str, Tuple[str, int]]:
    """``id -> (text, line)`` from a UTF-8 TSV with a header naming the columns ``id`` and ``text``."""
    if not os.path.isfile(path):
        raise LayoutError(path, "transcript file not found")
    lines = read_lines(path)
    header = lines[0].split("\t") if lines else []
    if "id" not in header or "text" not in header:
        raise LayoutError(path, f"the header must name the columns id and text (tab-separated), got {header}", 1)
    id_col, text_col = header.index("id"), header.index("text")
    texts: Dict[str, Tuple[str, int]] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise LayoutError(path, f"{len(cells)} tab-separated fields, the header has {len(header)}", line_no)
        uid = _parse_name(cells[id_col].strip(), path, line_no).id
        if uid in texts:
            raise LayoutError(path, f"{uid} has a second transcript (first on line {texts[uid][1]})", line_no)
        texts[uid] = (cells[text_col].strip(), line_no)
    return texts


def _consensus_lines(path: str):
    """``(line number, name, label letter)`` of each utterance's consensus line."""
    for line_no, line in enumerate(read_lines(path), start=1):
        fields = [f.strip() for f in line.split(";")]
        if not fields[0].lower().endswith((".avi", ".wav")):
            continue  # a blank line or an individual rating
        if len(fields) < 2 or not fields[1]:
            raise LayoutError(path, f"consensus line without a label: {line.strip()!r} (expected like "
                                    f"'UTD-IMPROV-S01A-F01-S-FM01.avi; A; A:3.0; V:2.6; D:2.4; N:0.0')", line_no)
        yield line_no, os.path.splitext(fields[0])[0], fields[1]


def build_msp_improv(root: str, transcripts: str, report: CorpusReport,
                     types: Sequence[str] = ("S",)) -> List[ManifestRow]:
    """The four-class utterances of the recording ``types`` asked for; exclusions and gaps go to ``report``."""
    unknown = sorted(set(types) - set(RECORDING_TYPES))
    if unknown or not types:
        raise ValueError(f"recording types must be some of {RECORDING_TYPES}, got {list(types)}")
    label_file = _label_file(root)
    texts = read_transcripts(transcripts)
    media = MediaCheck(report)
    rows: List[ManifestRow] = []
    seen: Dict[str, str] = {}
    for line_no, name, letter in _consensus_lines(label_file):
        parsed = _parse_name(name, label_file, line_no)
        uid = parsed.id
        source = f"{label_file}:{line_no}"
        if uid in seen:
            raise LayoutError(label_file, f"{uid} is rated twice (first at {seen[uid]})", line_no)
        seen[uid] = source
        if letter not in CLASS_OF and letter not in EXCLUDED:
            raise LayoutError(label_file, f"{uid}: unknown consensus label {letter!r} (MSP-IMPROV's are "
                                          f"{sorted(CLASS_OF) + sorted(EXCLUDED)})", line_no)
        if parsed.kind not in types:
            report.add(source, uid, f"recording type {parsed.kind}", "excluded")
            continue
        if letter in EXCLUDED:
            report.add(source, uid, f"label {letter} ({EXCLUDED[letter]})", "excluded")
            continue
        text, text_line = texts.get(uid, ("", 0))
        if not text:
            problem = f"empty transcript ({transcripts}:{text_line})" if text_line else "no transcript"
            report.add(source, uid, problem, "kept with empty text")
        folder = os.path.join(f"session{parsed.session}", parsed.sentence, parsed.kind)
        rows.append(ManifestRow(
            id=uid, text=text, speaker=parsed.speaker, session=f"session{parsed.session}", label=CLASS_OF[letter],
            raw_label=letter, audio=media(source, uid, "audio", os.path.join(root, "Audio", folder, f"{uid}.wav")),
            video=media(source, uid, "video", os.path.join(root, "Video", folder, f"{uid}.avi")),
        ))
    media.require_some("Audio/session<n>/<sentence>/<type>/<id>.wav and Video/session<n>/<sentence>/<type>/<id>.avi")
    for uid in sorted(set(texts) - set(seen)):
        report.add(f"{transcripts}:{texts[uid][1]}", uid, f"transcript of an utterance not in {LABEL_FILES[0]}",
                   "ignored")
    return rows
