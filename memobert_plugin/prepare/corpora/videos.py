"""A folder of videos with subtitles -> pretraining manifests (train and valid), one utterance per cue.

``ROOT/<name>.mp4|.mkv|.avi`` with ``ROOT/<name>.srt`` beside it. Every subtitle cue becomes an
utterance: its start and end, its text without markup (``<i>``, ``<font ...>``, ``{\\an8}``), no
label, and the video's name as session and speaker (who speaks is unknown; the visual stage
finds the active speaker). The video's audio track is decoded once to ``AUDIO_DIR/<name>.wav``
(16 kHz mono) because memobert-prepare reads audio with soundfile. Whole videos are held out
for validation, so no film is in both splits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List

from memobert_plugin.prepare.media.audio import SAMPLE_RATE
from memobert_plugin.files import atomic_open
from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError, ManifestRow, read_lines

__all__ = ["Cue", "VIDEO_EXTENSIONS", "read_srt", "extract_audio_track", "build_video_corpus"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi")
_TIME = r"(\d+):(\d{2}):(\d{2})[,.](\d{3})"
_TIMING = re.compile(rf"^{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")  # a position may follow (X1:... Y2:...)
_MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    line: int  # the line of its timing
    start: float
    end: float
    text: str


def _seconds(hours: str, minutes: str, seconds: str, millis: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def read_srt(path: str) -> List[Cue]:
    """The cues of a SubRip file (UTF-8): blocks of an optional number, a timing line and text lines,
    separated by blank lines. A block without a valid timing is a LayoutError naming the line."""
    lines = read_lines(path)
    cues = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        if lines[i].strip().isdigit():
            i += 1
        timing = _TIMING.match(lines[i].strip()) if i < len(lines) else None
        if not timing:
            found = repr(lines[i]) if i < len(lines) else "the end of the file"
            raise LayoutError(path, f"expected a cue timing like '00:01:02,500 --> 00:01:04,000', found {found}", i + 1)
        timing_line, text = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip():
            if _TIMING.match(lines[i].strip()):
                raise LayoutError(path, "a timing line inside a cue's text: a blank line is missing before it", i + 1)
            text.append(_MARKUP.sub("", lines[i]))
            i += 1
        values = timing.groups()
        cues.append(Cue(timing_line, _seconds(*values[:4]), _seconds(*values[4:]), " ".join(" ".join(text).split())))
    return cues


def extract_audio_track(video: str, wav: str) -> str:
    """Decode ``video``'s first audio stream to a 16 kHz mono 16-bit ``wav`` (kept and reused once written).

    Raises :class:`ItemError` when the video has no audio stream or it cannot be decoded.
    """
    if os.path.isfile(wav):
        return wav
    import av
    import soundfile

    try:
        with av.open(video) as container:
            if not container.streams.audio:
                raise ItemError(f"no audio stream in {video}")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            # renamed into place only when complete: a half-decoded wav would be reused next time
            with (atomic_open(wav, "wb") as handle,
                  soundfile.SoundFile(handle, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV") as out):
                for frame in container.decode(container.streams.audio[0]):
                    for chunk in resampler.resample(frame):
                        out.write(chunk.to_ndarray().reshape(-1))
                for chunk in resampler.resample(None):  # what the resampler still holds
                    out.write(chunk.to_ndarray().reshape(-1))
    except av.error.FFmpegError as err:
        raise ItemError(f"unreadable audio in {video}: {err}") from None
    return wav


def _videos_with_subtitles(root: str, report: CorpusReport) -> Dict[str, str]:
    """``name -> video path`` for every video with a same-name .srt; the others are reported."""
    if not os.path.isdir(root):
        raise LayoutError(root, "no such directory")
    videos: Dict[str, str] = {}
    subtitles = set()
    for entry in sorted(os.listdir(root)):
        name, ext = os.path.splitext(entry)
        if ext.lower() in VIDEO_EXTENSIONS:
            if name in videos:
                raise LayoutError(root, f"two videos named {name}: {os.path.basename(videos[name])} and {entry} "
                                        "(which one do the subtitles belong to?)")
            videos[name] = os.path.join(root, entry)
        elif ext.lower() == ".srt":
            subtitles.add(name)
    for name in sorted(subtitles - set(videos)):
        report.add(os.path.join(root, f"{name}.srt"), "", f"no video {name}{'|'.join(VIDEO_EXTENSIONS)}", "ignored")
    for name in sorted(set(videos) - subtitles):
        report.add(videos[name], "", f"no subtitles {name}.srt", "excluded")
    kept = {name: path for name, path in videos.items() if name in subtitles}
    if len(kept) < 2:
        raise LayoutError(root, f"{len(kept)} video(s) with a same-name .srt; at least 2 are needed "
                                "(whole videos are held out for validation)")
    return kept


def _session_ids(names: List[str], root: str) -> Dict[str, str]:
    """Video name -> an id without spaces, used as session, speaker and utterance id prefix."""
    ids: Dict[str, str] = {}
    for name in names:
        session = re.sub(r"\s+", "_", name)
        if session in ids.values():
            other = next(n for n, s in ids.items() if s == session)
            raise LayoutError(root, f"videos {other!r} and {name!r} both become the id {session!r}; rename one")
        ids[name] = session
    return ids


def _validation_videos(names: List[str], fraction: float) -> set:
    """``fraction`` of the videos (at least one, at most all but one), chosen by a hash of their names
    (the same videos whatever the listing order, and mostly the same when videos are added)."""
    if not 0 < fraction < 1:
        raise ValueError(f"--valid-fraction must be between 0 and 1, got {fraction}")
    count = min(max(1, round(fraction * len(names))), len(names) - 1)
    return set(sorted(names, key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest())[:count])


def build_video_corpus(root: str, audio_dir: str, report: CorpusReport,
                       valid_fraction: float = 0.05) -> Dict[str, List[ManifestRow]]:
    """``{"train": rows, "valid": rows}`` from the videos under ``root``; every skipped cue goes to ``report``."""
    videos = _videos_with_subtitles(root, report)
    sessions = _session_ids(sorted(videos), root)
    valid = _validation_videos(sorted(videos), valid_fraction)
    cues = {name: read_srt(os.path.join(root, f"{name}.srt")) for name in videos}  # every file checked first
    os.makedirs(audio_dir, exist_ok=True)
    splits: Dict[str, List[ManifestRow]] = {"train": [], "valid": []}
    for done, (name, video) in enumerate(videos.items(), start=1):
        session, srt = sessions[name], os.path.join(root, f"{name}.srt")
        logger.info("[%d/%d] %s: %d cues", done, len(videos), video, len(cues[name]))
        try:
            audio, audio_problem = extract_audio_track(video, os.path.join(audio_dir, f"{session}.wav")), ""
        except ItemError as err:
            audio, audio_problem = "", str(err)
        for number, cue in enumerate(cues[name], start=1):
            uid, source = f"{session}_{number:05d}", f"{srt}:{cue.line}"
            if not cue.text:
                report.add(source, uid, "empty cue", "excluded")
                continue
            if cue.end <= cue.start:
                report.add(source, uid, f"cue ends ({cue.end:.3f} s) before it starts ({cue.start:.3f} s)", "excluded")
                continue
            if not audio:
                report.add(source, uid, audio_problem, "kept without audio")
            splits["valid" if name in valid else "train"].append(ManifestRow(
                id=uid, text=cue.text, speaker=session, session=session, audio=audio, video=video,
                start=cue.start, end=cue.end,
            ))
    return splits
