"""A long real recording for the timeline, server and speed tests (imported by them; not a test module itself).

Real speech (pocketsphinx-testdata's recordings, espeak-ng voices) put one after another with
:data:`GAP` seconds of near-silence between the pieces, and scikit-image's astronaut facing the
camera throughout, except during the pieces in ``dark`` (black frames: no face). Written as one
MPEG-4 video with its AAC sound track, the same sound as a WAV, and an SRT with one cue per piece.
"""

import os
import subprocess
from typing import Dict, List, Optional, Sequence

import numpy as np

from prepare_material import FPS, astronaut_gray, speech_utterances, write_video

GAP = 3.0  # seconds of near-silence between pieces
RATE = 16000
ESPEAK_VOICES = ("en-gb", "en-us", "en-gb-scotland")
ESPEAK_LINES = ("I cannot believe you did that again.", "What a lovely surprise, thank you so much.",
                "The meeting is moved to Tuesday.", "I miss the old days with all of you.")


def _srt_time(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    return f"{millis // 3600000:02d}:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"


def write_srt(path: str, pieces: Sequence[Dict]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for i, piece in enumerate(pieces, start=1):
            handle.write(f"{i}\n{_srt_time(piece['start'])} --> {_srt_time(piece['end'])}\n{piece['text']}\n\n")
    return path


def long_recording(root: str, pocketsphinx: str, dark: Sequence[int] = (), repeat: int = 1,
                   pieces: Optional[int] = None) -> Dict:
    """``{"video", "wav", "srt", "pieces": [{start, end, text}], "duration"}`` in ``root``: the first ``pieces``
    (default: all 22) played ``repeat`` times over (a longer recording with the same material)."""
    import soundfile

    sources = [(u["wav"], u["text"]) for u in speech_utterances(pocketsphinx)]
    for voice in ESPEAK_VOICES:
        for i, line in enumerate(ESPEAK_LINES):
            wav = os.path.join(root, f"{voice}-{i}.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-w", wav, line], check=True, capture_output=True)
            sources.append((wav, line))
    sources = sources[:pieces]
    noise = np.random.default_rng(0)
    sound: List[np.ndarray] = []
    spans: List[Dict] = []
    time = 0.0
    for _ in range(repeat):
        for wav, text in sources:
            speech, rate = soundfile.read(wav, dtype="float32")
            if rate != RATE:
                from memobert_plugin.prepare.media.audio import resample

                speech = resample(speech, rate, RATE)
            gap = np.zeros(int(GAP * RATE), np.float32)
            sound += [gap, speech / max(1e-3, float(np.abs(speech).max())) * 0.5]
            spans.append({"start": time + GAP, "end": time + GAP + len(speech) / RATE, "text": text})
            time = spans[-1]["end"]
    sound.append(np.zeros(int(GAP * RATE), np.float32))
    wave = np.concatenate(sound)
    wave += noise.normal(0, 1e-3, len(wave)).astype(np.float32)
    duration = len(wave) / RATE
    wav_path = os.path.join(root, "talk.wav")
    soundfile.write(wav_path, wave, RATE)
    face = astronaut_gray()[20:260, 110:350]
    black = np.zeros_like(face)
    dark_spans = [(spans[i]["start"], spans[i]["end"]) for i in dark]
    frames = [black if any(s - 0.5 <= t / FPS <= e + 0.5 for s, e in dark_spans) else face
              for t in range(int(duration * FPS))]
    video = os.path.join(root, "talk.mp4")
    write_video(video, frames, audio=wave)
    return {"video": video, "wav": wav_path, "srt": write_srt(os.path.join(root, "talk.srt"), spans),
            "pieces": spans, "duration": duration}
