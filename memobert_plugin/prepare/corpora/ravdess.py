"""RAVDESS (speech) -> a memobert-prepare manifest with its eight classes, one speaker per actor.

Read from the release as distributed (examples/ravdess/README.md has the details): the audio
archive (Audio_Speech_Actors_01-24) and the video archives (Video_Speech_Actor_XX) all unpack
to ``Actor_01`` .. ``Actor_24`` folders, which may be merged into one root:

  Actor_12/03-01-05-01-02-01-12.wav    audio only
  Actor_12/01-01-05-01-02-01-12.mp4    audio and video
  Actor_12/02-01-05-01-02-01-12.mp4    video only

The seven two-digit parts: modality (01 audio-video, 02 video, 03 audio), vocal channel (01
speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07
disgust, 08 surprised), intensity (01 normal, 02 strong), statement (01 "Kids are talking by
the door", 02 "Dogs are sitting by the door"), repetition (01, 02), actor (01-24). A take's id
is its name without the modality; the text is the statement; the speaker the actor. Songs are
excluded and listed. The audio is the 03 wav, else the sound of the 01 mp4 (decoded once to
``AUDIO_DIR/<id>.wav``); the video is the 01 mp4, else the 02 one. A file named otherwise is a
LayoutError naming it.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Dict, List

from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError, ManifestRow
from memobert_plugin.prepare.corpora.videos import extract_audio_track

__all__ = ["CLASS_OF", "STATEMENTS", "build_ravdess"]

CLASS_OF = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "anger", "06": "fear", "07": "disgust",
            "08": "surprise"}
STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
MODALITIES = {"01": ".mp4", "02": ".mp4", "03": ".wav"}  # audio-video, video only, audio only
SPEECH, SONG = "01", "02"
_RANGES = (("modality", MODALITIES), ("vocal channel", (SPEECH, SONG)), ("emotion", CLASS_OF),
           ("intensity", ("01", "02")), ("statement", STATEMENTS), ("repetition", ("01", "02")),
           ("actor", tuple(f"{n:02d}" for n in range(1, 25))))
_NAME = re.compile(r"^\d{2}(-\d{2}){6}$")
_ACTOR = re.compile(r"^Actor_(\d{2})$")


def _check_name(entry: str, path: str, actor: str) -> List[str]:
    """The seven parts of a take file's name, or a LayoutError naming the file."""
    name, ext = os.path.splitext(entry)
    if not _NAME.match(name):
        raise LayoutError(path, "not a RAVDESS file name like 03-01-05-01-02-01-12.wav (seven two-digit parts)")
    parts = name.split("-")
    for value, (what, allowed) in zip(parts, _RANGES):
        if value not in allowed:
            raise LayoutError(path, f"{what} {value} is not one of RAVDESS's ({', '.join(allowed)})")
    if ext.lower() != MODALITIES[parts[0]]:
        raise LayoutError(path, f"modality {parts[0]} files are {MODALITIES[parts[0]]}, not {ext}")
    if parts[6] != actor:
        raise LayoutError(path, f"a take of actor {parts[6]} in the folder of actor {actor}")
    return parts


def _takes(root: str) -> Dict[str, Dict[str, str]]:
    """``take id -> {modality: path}`` over every Actor_XX folder."""
    if not os.path.isdir(root):
        raise LayoutError(root, "no such directory (expected the RAVDESS folders Actor_01 .. Actor_24)")
    takes: Dict[str, Dict[str, str]] = defaultdict(dict)
    for folder in sorted(os.listdir(root)):
        match = _ACTOR.match(folder)
        if not match or not os.path.isdir(os.path.join(root, folder)):
            continue
        for entry in sorted(os.listdir(os.path.join(root, folder))):
            if entry.startswith("."):  # ._* copies macOS leaves
                continue
            path = os.path.join(root, folder, entry)
            parts = _check_name(entry, path, match.group(1))
            takes["-".join(parts[1:])][parts[0]] = path
    if not takes:
        raise LayoutError(root, "no Actor_XX folder with RAVDESS files (e.g. Actor_01/03-01-01-01-01-01-01.wav)")
    return takes


def build_ravdess(root: str, audio_dir: str, report: CorpusReport) -> List[ManifestRow]:
    """Every spoken take; songs and takes without audio or video go to ``report``."""
    takes = _takes(root)
    any_video = any({"01", "02"} & set(files) for files in takes.values())
    if not any_video:
        report.add(root, "", "no video file (01-*.mp4 or 02-*.mp4) in any Actor_XX folder",
                   "every take kept without video")
    os.makedirs(audio_dir, exist_ok=True)
    rows = []
    for uid, files in sorted(takes.items()):
        source = next(iter(files.values()))
        channel, emotion, _, statement, _, actor = uid.split("-")
        if channel == SONG:
            report.add(source, uid, "song (vocal channel 02)", "excluded")
            continue
        audio = files.get("03", "")
        if not audio and "01" in files:
            try:
                audio = extract_audio_track(files["01"], os.path.join(audio_dir, f"{uid}.wav"))
            except ItemError as err:
                report.add(files["01"], uid, str(err), "kept without audio")
        elif not audio:
            report.add(source, uid, "no audio (03-*.wav) nor audio-video (01-*.mp4) file", "kept without audio")
        video = files.get("01", files.get("02", ""))
        if not video and any_video:
            report.add(source, uid, "no video (01-*.mp4 or 02-*.mp4) file", "kept without video")
        rows.append(ManifestRow(id=uid, text=STATEMENTS[statement], speaker=f"Actor_{actor}", label=CLASS_OF[emotion],
                                raw_label=emotion, audio=audio, video=video))
    return rows
