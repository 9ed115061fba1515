"""MELD (``MELD.Raw``) -> one memobert-prepare manifest with the official train/dev/test split.

Read from the release as distributed (examples/meld/README.md has the details):

  train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv   one row per utterance, columns
      Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime
  train_splits/dia{D}_utt{U}.mp4                 the utterance's clip (dev: dev_splits_complete/,
  dev_splits_complete/dia{D}_utt{U}.mp4           test: output_repeated_splits_test/)
  output_repeated_splits_test/dia{D}_utt{U}.mp4

Each utterance's subset is its file's (dev -> ``valid``): memobert-cv then evaluates on the
official split. Its label is the emotion (anger, disgust, fear, joy, neutral, sadness,
surprise) or, with ``target="sentiment"``, the sentiment (negative, neutral, positive); the
speaker is the character, the session the dialogue. Ids are ``{subset}_dia{D}_utt{U}``
(dialogue numbers restart in every file). The clip's sound is decoded once to
``AUDIO_DIR/{subset}/dia{D}_utt{U}.wav`` (memobert-prepare reads audio with soundfile).

The CSVs carry Windows-1252 punctuation decoded as Latin-1 (``\\x92`` for an apostrophe) and
UTF-8 read as Latin-1 (``â\\x80\\x99``): :func:`clean_text` restores the characters and writes
smart quotes, dashes and ellipses as ASCII. A missing clip (the release lacks a few) or one
that cannot be decoded excludes its utterance, listed in the report.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import replace
from typing import Dict, List, NamedTuple, Tuple

from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError, ManifestRow, read_text
from memobert_plugin.prepare.corpora.videos import extract_audio_track

__all__ = ["EMOTIONS", "SENTIMENTS", "TARGETS", "SUBSET_FILES", "clean_text", "build_meld"]

logger = logging.getLogger(__name__)

EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
SENTIMENTS = ("negative", "neutral", "positive")
TARGETS = {"emotion": ("Emotion", EMOTIONS), "sentiment": ("Sentiment", SENTIMENTS)}
#: subset -> (label file, clip folder), in the release's names
SUBSET_FILES = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "valid": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
_COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
_FALLBACK_ENCODING = "latin-1"  # decodes any byte; clean_text then reads C1 characters as Windows-1252
_MOJIBAKE = re.compile(r"[\xc2-\xf4][\x80-\xbf]{1,3}")  # UTF-8 bytes read as Latin-1
_C1 = re.compile(r"[\x80-\x9f]")  # Windows-1252 punctuation read as Latin-1
_ASCII = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                        "\u2026": "...", "\u00a0": " "})
_PROGRESS_EVERY = 500  # clips between progress lines while decoding sound


def _mojibake(match: re.Match) -> str:
    try:
        return match.group().encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return match.group()


def _c1(match: re.Match) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # the five bytes Windows-1252 leaves undefined
        return " "


def clean_text(text: str) -> str:
    """The utterance as spoken: encoding damage repaired, smart punctuation as ASCII, spaces collapsed."""
    text = _C1.sub(_c1, _MOJIBAKE.sub(_mojibake, text))
    return " ".join(text.translate(_ASCII).split())


def _records(path: str) -> List[Tuple[int, Dict[str, str]]]:
    """``(line, row)`` of each CSV record; a header without MELD's columns is a LayoutError."""
    if not os.path.isfile(path):
        raise LayoutError(path, "label file missing (MELD.Raw has train_sent_emo.csv, dev_sent_emo.csv and "
                                "test_sent_emo.csv)")
    # not split into lines first: str.splitlines would also split at the \x85 (an ellipsis) of some texts
    reader = csv.reader(io.StringIO(read_text(path, _FALLBACK_ENCODING), newline=""))
    header = [cell.strip() for cell in next(reader, [])]
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise LayoutError(path, f"header lacks the columns {missing} (has {header})", 1)
    records = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise LayoutError(path, f"{len(cells)} comma-separated fields, the header has {len(header)} (a quote "
                                    "not closed?)", reader.line_num)
        records.append((reader.line_num, dict(zip(header, (cell.strip() for cell in cells)))))
    return records


def _number(row: Dict[str, str], column: str, path: str, line_no: int) -> int:
    if not row[column].isdigit():
        raise LayoutError(path, f"{column} {row[column]!r} is not a number", line_no)
    return int(row[column])


class _Utterance(NamedTuple):
    source: str  # file:line
    name: str  # dia{D}_utt{U}, as the clip is named
    row: ManifestRow  # audio still to decode


def _read_subset(root: str, subset: str, target: str) -> List[_Utterance]:
    """The checked rows of a subset's label file (no clip looked at yet)."""
    path = os.path.join(root, SUBSET_FILES[subset][0])
    column, classes = TARGETS[target]
    utterances, seen = [], {}
    for line_no, row in _records(path):
        dialogue, turn = _number(row, "Dialogue_ID", path, line_no), _number(row, "Utterance_ID", path, line_no)
        name = f"dia{dialogue}_utt{turn}"
        if name in seen:
            raise LayoutError(path, f"{name} is listed twice (first on line {seen[name]})", line_no)
        seen[name] = line_no
        if row[column].lower() not in classes:
            raise LayoutError(path, f"{column} {row[column]!r} is not one of MELD's {', '.join(classes)}", line_no)
        if not row["Speaker"]:
            raise LayoutError(path, f"{name} has no Speaker", line_no)
        utterances.append(_Utterance(f"{path}:{line_no}", name, ManifestRow(
            id=f"{subset}_{name}", text=clean_text(row["Utterance"]), speaker=row["Speaker"],
            session=f"{subset}_dia{dialogue}", label=row[column].lower(), raw_label=row[column], subset=subset)))
    return utterances


def _with_media(utterances: List[_Utterance], clips: str, audio_dir: str, report: CorpusReport) -> List[ManifestRow]:
    """The utterances whose clip is there and decodes (its sound written to ``audio_dir``); the others reported."""
    if not os.path.isdir(clips):
        raise LayoutError(clips, "clip folder missing (extract the release's clips there)")
    rows, found = [], 0
    for done, (source, name, row) in enumerate(utterances, start=1):
        if done % _PROGRESS_EVERY == 0:
            logger.info("%s: %d/%d clips", clips, done, len(utterances))
        clip = os.path.join(clips, f"{name}.mp4")
        if not os.path.isfile(clip):
            report.add(source, row.id, f"missing clip {clip}", "excluded")
            continue
        found += 1
        try:
            audio = extract_audio_track(clip, os.path.join(audio_dir, f"{name}.wav"))
        except ItemError as err:
            report.add(source, row.id, str(err), "excluded")
            continue
        if not row.text:
            report.add(source, row.id, "empty Utterance", "kept with empty text")
        rows.append(replace(row, audio=audio, video=clip))
    if utterances and not found:
        raise LayoutError(clips, f"none of the {len(utterances)} clips is there (the first: {utterances[0].name}.mp4; "
                                 f"listed at {utterances[0].source})")
    return rows


def build_meld(root: str, audio_dir: str, report: CorpusReport, target: str = "emotion") -> List[ManifestRow]:
    """Every utterance of the three subsets, labelled by ``target``; exclusions go to ``report``."""
    if target not in TARGETS:
        raise ValueError(f"MELD's target is one of {sorted(TARGETS)}, not {target!r}")
    if not os.path.isdir(root):
        raise LayoutError(root, "no such directory (expected MELD.Raw with the three *_sent_emo.csv files)")
    subsets = {subset: _read_subset(root, subset, target) for subset in SUBSET_FILES}  # all checked before decoding
    rows = []
    for subset, utterances in subsets.items():
        os.makedirs(os.path.join(audio_dir, subset), exist_ok=True)
        rows += _with_media(utterances, os.path.join(root, SUBSET_FILES[subset][1]), os.path.join(audio_dir, subset),
                            report)
    return rows
