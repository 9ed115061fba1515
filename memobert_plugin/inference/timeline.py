"""Recordings of any length -> an emotion timeline: one prediction per stretch of speech.

A recording is an audio file, a video file (its sound track is used), or both. Its speech is found
with the voice-activity detector of :mod:`memobert_plugin.prepare.media.voice_activity` (silero-vad when
installed) on :data:`CHUNK_SECONDS`-long chunks of the audio, so an hour costs the memory of a chunk;
a stretch longer than the model's extractors read (their ``max_seconds``) is cut into equal parts.
Each stretch (a *segment*) is then one utterance for :class:`~memobert_plugin.inference.predictor.EmotionPredictor`:
its audio span, the speaker's face in its video span (the visual stage's face detection and
active-speaker choice), and its words from a timed transcript when one is given (:func:`align_text`).
memobert does no speech recognition: without a transcript the text is empty.

Every segment becomes one record (:data:`RECORD_FIELDS`), the schema of every output format
(:data:`FORMATS`) and of :func:`predict_recording`'s return value.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from memobert_plugin.files import atomic_open
from memobert_plugin.inference.transcripts import TRANSCRIPT_EXTENSIONS, read_transcript

__all__ = ["RECORD_FIELDS", "FORMATS", "AUDIO_EXTENSIONS", "VIDEO_EXTENSIONS", "CHUNK_SECONDS", "Recording",
           "speech_segments", "align_text", "recordings_in_folder", "predict_recording", "write_records",
           "output_format", "plot_timeline"]

#: one record per segment: the recording's file, seconds from its start, words, the predicted class,
#: ``{class: probability}``, and what was missing (no face found, ...)
RECORD_FIELDS = ("file", "start", "end", "text", "label", "probabilities", "notes")
FORMATS = ("tsv", "csv", "json", "jsonl")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm")
CHUNK_SECONDS = 300.0  # audio read and searched for speech at a time (19 MB at 16 kHz float32)
_JOIN_GAP = 0.1  # seconds: segments cut at a chunk boundary and resumed within this are one segment
_BLOCK = 32  # segments extracted and predicted at a time (their features are then dropped)


@dataclass
class Recording:
    """One recording's media: ``audio`` and/or ``video`` (its sound track used when there is no audio)."""

    audio: str = ""
    video: str = ""
    transcript: str = ""

    @property
    def name(self) -> str:
        return self.video or self.audio


@dataclass
class _Segment:
    start: float
    end: float
    words: List[str] = field(default_factory=list)


def _duration(path: str) -> float:
    import soundfile

    return soundfile.info(path).duration


def _readable_audio(path: str) -> bool:
    import soundfile

    try:
        soundfile.info(path)
        return True
    except (soundfile.SoundFileError, RuntimeError):
        return False


def speech_segments(audio: str, vad, max_seconds: float, progress: bool = False) -> List[Tuple[float, float]]:
    """``(start, end)`` seconds of the speech in ``audio`` (a file soundfile reads), none longer than ``max_seconds``.

    The audio is read :data:`CHUNK_SECONDS` at a time; speech running across a chunk boundary is joined.
    """
    from tqdm import tqdm

    from memobert_plugin.prepare.media.audio import SAMPLE_RATE, read_audio
    from memobert_plugin.prepare.report import ItemError

    total = _duration(audio)
    spans: List[List[float]] = []
    with tqdm(total=round(total), desc="find speech", unit="s", disable=not progress, file=sys.stderr) as bar:
        begin = 0.0
        while begin < total:
            end = min(total, begin + CHUNK_SECONDS)
            try:
                wave = read_audio(audio, begin, end, max_seconds=None)
            except ItemError:  # the file ended before its header said: what was read is all there is
                break
            for first, last in vad.segments(wave):
                start, stop = begin + first / SAMPLE_RATE, begin + last / SAMPLE_RATE
                if spans and start - spans[-1][1] <= _JOIN_GAP and spans[-1][1] >= begin - _JOIN_GAP:
                    spans[-1][1] = stop
                else:
                    spans.append([start, stop])
            bar.update(round(end) - bar.n)
            begin = end
    out = []
    for start, stop in spans:
        parts = max(1, math.ceil((stop - start) / max_seconds - 1e-9))
        step = (stop - start) / parts
        out.extend((start + i * step, start + (i + 1) * step) for i in range(parts))
    return out


def align_text(segments: Sequence[Tuple[float, float]], cues) -> Tuple[List[str], int]:
    """Each segment's words from timed cues, and how many cues overlap no segment (their words are unused).

    A cue's words are spread evenly over its time; each word goes to the segment that overlaps its
    share of that time most, so a cue that spans two segments is split between them and no word is
    used twice.
    """
    words: List[List[str]] = [[] for _ in segments]
    starts = np.array([s for s, _ in segments])
    ends = np.array([e for _, e in segments])
    unused = 0
    for cue in cues:
        tokens = cue.text.split()
        if not tokens:
            continue
        if not len(segments) or not np.any((starts < cue.end) & (ends > cue.start)):
            unused += 1
            continue
        step = (cue.end - cue.start) / len(tokens)
        for i, token in enumerate(tokens):
            lo, hi = cue.start + i * step, cue.start + (i + 1) * step
            overlap = np.minimum(ends, hi) - np.maximum(starts, lo)
            if overlap.max() <= 0:  # the word's share falls in a pause: the nearest segment the cue overlaps
                middle = (lo + hi) / 2
                inside = (starts < cue.end) & (ends > cue.start)
                distance = np.where(inside, np.maximum(starts - middle, middle - ends), np.inf)
                words[int(distance.argmin())].append(token)
            else:
                words[int(overlap.argmax())].append(token)
    return [" ".join(w) for w in words], unused


def recordings_in_folder(folder: str) -> Tuple[List[Recording], List[str]]:
    """The recordings of a folder, by file name without extension: a video and/or an audio file, and a
    transcript (``.srt``, ``.vtt``, ``.tsv``) of the same name if there is one; and the files not used."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder")
    found: Dict[str, Dict[str, str]] = {}
    ignored = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        stem, ext = os.path.splitext(entry)
        kind = ("audio" if ext.lower() in AUDIO_EXTENSIONS else "video" if ext.lower() in VIDEO_EXTENSIONS
                else "transcript" if ext.lower() in TRANSCRIPT_EXTENSIONS else None)
        if kind is None or not os.path.isfile(path):
            ignored.append(path)
            continue
        slot = found.setdefault(stem, {})
        if kind in slot:
            raise ValueError(f"{folder}: two {kind} files named {stem}: {os.path.basename(slot[kind])} and {entry}; "
                             "keep one (same-named files are one recording)")
        slot[kind] = path
    recordings = []
    for stem, files in found.items():
        if "audio" in files or "video" in files:
            recordings.append(Recording(files.get("audio", ""), files.get("video", ""), files.get("transcript", "")))
        else:
            ignored.append(files["transcript"])
    if not recordings:
        raise ValueError(f"{folder}: no audio ({', '.join(AUDIO_EXTENSIONS)}) or video "
                         f"({', '.join(VIDEO_EXTENSIONS)}) files")
    return recordings, sorted(ignored)


def _max_segment_seconds(predictor) -> float:
    """The longest span the model's extractors read (their ``max_seconds``): a longer segment would be clipped."""
    limits = [predictor.extractors.extractors[s].get("max_seconds") for s in predictor.extractors.media_stages]
    return min([v for v in limits if v] or [10.0])


def predict_recording(predictor, audio: str = "", video: str = "", transcript: str = "", progress: bool = False,
                      warn=None, vad=None) -> List[dict]:
    """The timeline of one recording: a record (:data:`RECORD_FIELDS`) per speech segment, in time order.

    ``predictor``: an :class:`~memobert_plugin.inference.predictor.EmotionPredictor`; ``transcript``: an ``.srt``,
    ``.vtt`` or ``.tsv`` file timed like the recording; ``warn``: called with each message about
    missing input (default: printed to stderr); ``vad``: a loaded voice-activity detector to reuse.
    """
    from tqdm import tqdm

    from memobert_plugin.inference.predictor import media_entry
    from memobert_plugin.prepare.corpora.videos import extract_audio_track
    from memobert_plugin.prepare.report import ItemError
    from memobert_plugin.prepare.media.voice_activity import load_voice_activity

    warn = warn or (lambda message: print(f"memobert-predict: warning: {message}", file=sys.stderr))
    name = video or audio
    if not name:
        raise ValueError("a recording needs an audio or a video file")
    for path in (audio, video, transcript):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
    cues = read_transcript(transcript) if transcript else None
    with tempfile.TemporaryDirectory(prefix="memobert-timeline-") as scratch:
        sound = audio if audio and _readable_audio(audio) else os.path.join(scratch, "audio.wav")
        if sound != audio:  # a video's sound track, or audio soundfile cannot read: decoded once, streamed
            try:
                extract_audio_track(audio or video, sound)
            except ItemError as err:
                raise ValueError(f"{err}: the timeline is cut where there is speech, so the recording needs "
                                 "its sound") from None
        spans = speech_segments(sound, vad or load_voice_activity("auto"), _max_segment_seconds(predictor),
                                progress)
        if cues is None:
            texts = [""] * len(spans)
        else:
            texts, unused = align_text(spans, cues)
            if unused:
                warn(f"{transcript}: {unused} of {len(cues)} cues fall where no speech was found; their words "
                     "are in no segment")
        if not spans:
            warn(f"{name}: no speech found, so no segments")
        records = []
        with tqdm(total=len(spans), desc="predict", unit="segment", disable=not progress, file=sys.stderr) as bar:
            for first in range(0, len(spans), _BLOCK):
                entries = [media_entry(f"{os.path.basename(name)}@{start:.2f}", text, sound, video, start, end)
                           for (start, end), text in zip(spans[first: first + _BLOCK], texts[first: first + _BLOCK])]
                utterances = predictor.extract(entries)
                for entry, utt, probs in zip(entries, utterances, predictor.predict_proba(utterances)):
                    records.append({
                        "file": name, "start": round(entry.start, 3), "end": round(entry.end, 3), "text": entry.text,
                        "label": predictor.class_names[int(np.argmax(probs))],
                        "probabilities": {c: float(p) for c, p in zip(predictor.class_names, probs)},
                        "notes": "; ".join(f"{p}; predicted without it" for p in utt.problems)})
                bar.update(len(entries))
    return records


def output_format(path: str, requested: Optional[str] = None) -> str:
    """``requested``, else the output file's extension, else TSV (standard output)."""
    if requested:
        if requested not in FORMATS:
            raise ValueError(f"format {requested!r}: choose from {', '.join(FORMATS)}")
        return requested
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if path in ("", "-") or not ext:
        return "tsv"
    if ext not in FORMATS:
        raise ValueError(f"{path}: cannot tell the format from .{ext}; name it .tsv, .csv, .json or .jsonl, "
                         "or give --format")
    return ext


def _table(records: Sequence[dict], class_names: Sequence[str]) -> Tuple[List[str], List[list]]:
    header = ["file", "start", "end", "text", "label", *(f"p_{c}" for c in class_names), "notes"]
    rows = [[r["file"], f"{r['start']:.3f}", f"{r['end']:.3f}", r["text"], r["label"],
             *(f"{r['probabilities'][c]:.6f}" for c in class_names), r["notes"]] for r in records]
    return header, rows


def format_records(records: Sequence[dict], class_names: Sequence[str], fmt: str) -> str:
    """The records as ``fmt`` text: TSV/CSV with one ``p_<class>`` column per class, JSON a list, JSONL a line each."""
    if fmt == "json":
        return json.dumps(list(records), indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records)
    header, rows = _table(records, class_names)
    if fmt == "tsv":  # a tab or line break inside a cell would shift the columns: they become spaces
        return "".join("\t".join(" ".join(str(v).split()) for v in row) + "\n" for row in [header, *rows])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def write_records(records: Sequence[dict], class_names: Sequence[str], path: str, fmt: str) -> None:
    """Write ``records`` to ``path`` (``-``: standard output) in ``fmt``; a file is replaced only when complete."""
    text = format_records(records, class_names, fmt)
    if path in ("", "-"):
        sys.stdout.write(text)
    else:
        with atomic_open(path) as handle:
            handle.write(text)


def plot_timeline(records: Sequence[dict], class_names: Sequence[str], path: str) -> None:
    """A PNG of each class's probability over time, one panel per recording (segments as flat steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = list(dict.fromkeys(r["file"] for r in records)) or [""]
    figure, axes = plt.subplots(len(files), 1, figsize=(11, 2.6 * len(files) + 0.6), squeeze=False)
    for ax, name in zip(axes[:, 0], files):
        mine = [r for r in records if r["file"] == name]
        for c in class_names:  # a step per segment, broken between segments (no line across pauses)
            xs = [x for r in mine for x in (r["start"], r["end"], np.nan)]
            ys = [y for r in mine for y in (r["probabilities"][c],) * 2 + (np.nan,)]
            ax.plot(xs, ys, label=c, linewidth=2)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(f"{os.path.basename(name)}: {len(mine)} segments", fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds")
    axes[0, 0].legend(loc="upper right", ncol=len(class_names), fontsize=8)
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=90)
    plt.close(figure)


def quiet_library_logs() -> None:
    """Show warnings, not debug lines: importing fairseq (its wav2vec2_classification) calls
    ``logging.basicConfig(level=DEBUG)``, after which matplotlib's font search fills stderr."""
    logging.getLogger().setLevel(logging.WARNING)


def _recordings(args) -> Tuple[List[Recording], List[str]]:
    if args.media and os.path.isdir(args.media):
        if args.transcript:
            raise ValueError(f"--transcript: {args.media} is a folder; put each transcript next to its media, "
                             "with the same name (talk.mp4, talk.srt)")
        return recordings_in_folder(args.media)
    if args.media:
        ext = os.path.splitext(args.media)[1].lower()
        video = args.media if ext in VIDEO_EXTENSIONS else ""
        return [Recording("" if video else args.media, video, args.transcript or "")], []
    return [Recording(args.audio or "", args.video or "", args.transcript or "")], []


def timeline_command(args, parser) -> None:
    """``memobert-predict --media/--timeline``: parsed by :mod:`memobert_plugin.inference.cli`."""
    from memobert_plugin.inference.bundle import ExtractorSettings
    from memobert_plugin.inference.predictor import EmotionPredictor
    from memobert_plugin.prepare.media.voice_activity import load_voice_activity

    def warn(message: str) -> None:
        print(f"memobert-predict: warning: {message}", file=sys.stderr)

    try:
        fmt = output_format(args.output, args.format)
        recordings, ignored = _recordings(args)
        for path in ignored:
            warn(f"{path}: neither audio, video nor a transcript with a same-named recording; not used")
        if not any(r.transcript for r in recordings):
            warn("no transcript, so every segment's text is empty (memobert does no speech recognition); give "
                 "--transcript, or put a same-named .srt/.vtt/.tsv next to each recording")
        checkpoints = {k: v for k, v in (("acoustic", args.wav2vec2), ("visual", args.fer_model)) if v}
        extractors = ExtractorSettings.from_data_dir(args.data) if args.data else None
        predictor = EmotionPredictor(args.checkpoint, args.vocab, args.device, extractors, checkpoints)
        quiet_library_logs()
        vad = load_voice_activity("auto")
        records = []
        for recording in recordings:
            records += predict_recording(predictor, recording.audio, recording.video, recording.transcript,
                                         progress=not args.no_progress, warn=warn, vad=vad)
        for record in records:
            if record["notes"]:
                warn(f"{record['file']} {record['start']:.2f}-{record['end']:.2f} s: {record['notes']}")
        write_records(records, predictor.class_names, args.output, fmt)
        if args.plot:
            plot_timeline(records, predictor.class_names, args.plot)
    except (OSError, ValueError) as err:  # bad inputs: the message names the file
        parser.exit(1, f"memobert-predict: error: {err}\n")
