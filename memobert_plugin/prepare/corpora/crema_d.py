"""CREMA-D -> a memobert-prepare manifest with its six classes, one speaker per actor.

Read from the release as distributed (examples/crema_d/README.md has the details):

  AudioWAV/1001_DFA_ANG_XX.wav      actor 1001..1091, sentence code, emotion, intensity (LO MD HI XX)
  VideoFlash/1001_DFA_ANG_XX.flv    the same take's video (or VideoMP4/<name>.mp4, a common conversion)

The file name gives everything: the text is the sentence the code names (12 sentences), the
label the intended emotion (ANG -> anger, DIS -> disgust, FEA -> fear, HAP -> happy, NEU ->
neutral, SAD -> sad), the speaker the actor. No sessions: memobert-cv leaves one actor out
per fold. A wav named otherwise is a LayoutError naming the file; a take without video is
kept without it and listed in the report.
"""

from __future__ import annotations

import os
import re
from typing import List

from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError, ManifestRow, MediaCheck

__all__ = ["CLASS_OF", "SENTENCES", "build_crema_d"]

CLASS_OF = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
INTENSITIES = ("LO", "MD", "HI", "XX")
ACTORS = range(1001, 1092)
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_VIDEO_FOLDERS = (("VideoFlash", ".flv"), ("VideoMP4", ".mp4"))


def _check_name(name: str, path: str) -> tuple:
    """(actor, sentence, emotion, intensity) of a take's name, or a LayoutError naming the file."""
    match = _NAME.match(name)
    if not match:
        raise LayoutError(path, "not a CREMA-D take name like 1001_DFA_ANG_XX (actor_sentence_emotion_intensity)")
    actor, sentence, emotion, intensity = match.groups()
    for value, allowed, what in ((int(actor), ACTORS, "actor"), (sentence, SENTENCES, "sentence"),
                                 (emotion, CLASS_OF, "emotion"), (intensity, INTENSITIES, "intensity")):
        if value not in allowed:
            shown = "1001..1091" if what == "actor" else ", ".join(allowed)
            raise LayoutError(path, f"{what} {value!r} is not one of CREMA-D's ({shown})")
    return actor, sentence, emotion, intensity


def _video_folder(root: str, report: CorpusReport):
    """(folder, extension) of the takes' videos; None, reported once, when the release has no video folder."""
    for folder, ext in _VIDEO_FOLDERS:
        if os.path.isdir(os.path.join(root, folder)):
            return os.path.join(root, folder), ext
    report.add(root, "", "no VideoFlash/ (or VideoMP4/) folder", "every take kept without video")
    return None


def build_crema_d(root: str, report: CorpusReport) -> List[ManifestRow]:
    """Every take in ``AudioWAV``; a missing video goes to ``report``."""
    audio_dir = os.path.join(root, "AudioWAV")
    if not os.path.isdir(audio_dir):
        raise LayoutError(root, "no AudioWAV folder (expected the CREMA-D release with AudioWAV/ and VideoFlash/)")
    videos = _video_folder(root, report)
    media = MediaCheck(report)
    rows = []
    for entry in sorted(os.listdir(audio_dir)):
        name, ext = os.path.splitext(entry)
        if ext.lower() != ".wav" or entry.startswith("."):  # ._* copies macOS leaves, and non-audio files
            continue
        path = os.path.join(audio_dir, entry)
        actor, sentence, emotion, _ = _check_name(name, path)
        video = media(path, name, "video", os.path.join(videos[0], name + videos[1])) if videos else ""
        rows.append(ManifestRow(id=name, text=SENTENCES[sentence], speaker=actor, label=CLASS_OF[emotion],
                                raw_label=emotion, audio=path, video=video))
    if not rows:
        raise LayoutError(audio_dir, "no take (expected wavs named like 1001_DFA_ANG_XX.wav)")
    media.require_some("VideoFlash/<name>.flv or VideoMP4/<name>.mp4")
    return rows
