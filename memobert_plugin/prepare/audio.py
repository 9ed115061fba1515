"""Audio input: any file soundfile reads -> 16 kHz mono float32, cut to the utterance, clipped.

Only the requested span is read from disk, so long recordings (a whole session or
film with start/end times per utterance) cost the memory of one utterance.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from .report import ItemError

__all__ = ["SAMPLE_RATE", "read_audio", "resample", "window_energy_db"]

SAMPLE_RATE = 16000


def resample(wave: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) by the reduced ratio ``target/orig``."""
    if orig_rate == target_rate:
        return wave
    from scipy.signal import resample_poly

    common = math.gcd(orig_rate, target_rate)
    return resample_poly(wave, target_rate // common, orig_rate // common).astype(np.float32)


def read_audio(
    path: str, start: Optional[float] = None, end: Optional[float] = None,
    max_seconds: Optional[float] = 10.0, sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """``[samples]`` float32 at ``sample_rate``, channels averaged, from ``start`` to ``end``
    seconds (file start/end when None) and at most ``max_seconds`` long.

    Raises :class:`ItemError` for a missing, unreadable or empty span.
    """
    import soundfile

    if not path:
        raise ItemError("no audio path in the manifest")
    if not os.path.isfile(path):
        raise ItemError(f"missing file: audio {path}")
    try:
        with soundfile.SoundFile(path) as handle:
            rate, total = handle.samplerate, handle.frames
            first = int(round((start or 0.0) * rate))
            last = total if end is None else min(total, int(round(end * rate)))
            if max_seconds is not None:
                last = min(last, first + int(round(max_seconds * rate)))
            if total == 0:
                raise ItemError(f"zero-length audio {path} (no samples)")
            if first >= total:
                raise ItemError(f"start {start} s is past the end of {path} ({total / rate:.2f} s)")
            handle.seek(first)
            data = handle.read(max(last - first, 0), dtype="float32", always_2d=True)
    except soundfile.SoundFileError as err:
        raise ItemError(f"unreadable audio {path}: {err}") from None
    if data.shape[0] == 0:
        raise ItemError(f"empty audio span in {path}")
    return resample(data.mean(axis=1), rate, sample_rate)


def window_energy_db(wave: np.ndarray, times: np.ndarray, window: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log energy (dB, full scale 0) of ``window``-second spans centred on each of ``times``."""
    half = max(1, int(round(window * sample_rate / 2)))
    energy = np.empty(len(times))
    for i, t in enumerate(times):
        centre = int(round(t * sample_rate))
        span = wave[max(0, centre - half): centre + half]
        energy[i] = 10 * np.log10(np.mean(span.astype(np.float64) ** 2) + 1e-10) if len(span) else -100.0
    return energy
