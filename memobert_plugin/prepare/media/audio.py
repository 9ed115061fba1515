"""Audio input: any file soundfile reads -> 16 kHz mono float32, cut to the utterance, clipped.

Only the requested span is read from disk, so long recordings (a whole session or
film with start/end times per utterance) cost the memory of one utterance.
Degraded but usable audio is read and reported through ``warn``: a span clipped at
``max_seconds``, and a truncated file (fewer samples than its header promises, or a
decoder error part-way), whose readable part is kept.
"""

from __future__ import annotations

import math
import os
import struct
from typing import Callable, List, Optional, Tuple

import numpy as np

from memobert_plugin.prepare.report import ItemError

__all__ = ["SAMPLE_RATE", "AUDIO_INPUTS", "read_audio", "resample", "window_energy_db"]

SAMPLE_RATE = 16000
#: the manifest fields an utterance's audio depends on (with the file itself); see Stage.inputs
AUDIO_INPUTS = ("id", "line", "audio", "start", "end")
_READ_BLOCK = 1 << 14  # frames per read (about 1 s): a decoder error part-way keeps the blocks before it
_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                 "FLOAT": 4, "DOUBLE": 8}

Warn = Callable[[str], None]


def _wav_declared_frames(path: str, handle) -> Optional[int]:
    """Frames the ``data`` chunk of a RIFF WAV header promises (None: not a plain WAV, or size unset).

    libsndfile silently shortens a WAV whose data were cut to what is in the file; the header still says.
    """
    width = _SAMPLE_BYTES.get(handle.subtype)
    if handle.format not in ("WAV", "WAVEX") or not width:
        return None
    with open(path, "rb") as raw:
        head = raw.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = raw.read(8)
            if len(chunk) < 8:
                return None
            size = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                return None if size in (0, 0xFFFFFFFF) else size // (width * handle.channels)  # 0/-1: streamed
            raw.seek(size + (size & 1), os.SEEK_CUR)


def _read_blocks(handle, frames: int, path: str) -> Tuple[np.ndarray, Optional[str]]:
    """Up to ``frames`` frames, and the decoder's error if one came after the first block (what came before is kept)."""
    import soundfile

    blocks: List[np.ndarray] = []
    done = 0
    while done < frames:
        try:
            block = handle.read(min(_READ_BLOCK, frames - done), dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, RuntimeError) as err:
            if not done:
                raise ItemError(f"unreadable audio {path}: {err}") from None
            return np.concatenate(blocks), str(err)
        if not len(block):
            break
        blocks.append(block)
        done += len(block)
    return (np.concatenate(blocks) if blocks else np.zeros((0, handle.channels), np.float32)), None


def resample(wave: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) by the reduced ratio ``target/orig``."""
    if orig_rate == target_rate:
        return wave
    from scipy.signal import resample_poly

    common = math.gcd(orig_rate, target_rate)
    return resample_poly(wave, target_rate // common, orig_rate // common).astype(np.float32)


def read_audio(
    path: str, start: Optional[float] = None, end: Optional[float] = None,
    max_seconds: Optional[float] = 10.0, sample_rate: int = SAMPLE_RATE, warn: Optional[Warn] = None,
) -> np.ndarray:
    """``[samples]`` float32 at ``sample_rate``, channels averaged, from ``start`` to ``end``
    seconds (file start/end when None) and at most ``max_seconds`` long.

    Raises :class:`ItemError` for a missing, unreadable or empty span; calls ``warn`` with the
    reason when the span is clipped at ``max_seconds`` or the file is truncated.
    """
    import soundfile

    if not path:
        raise ItemError("no audio path in the manifest")
    if not os.path.isfile(path):
        raise ItemError(f"missing file: audio {path}")
    try:
        with soundfile.SoundFile(path) as handle:
            rate, available = handle.samplerate, handle.frames
            total = _wav_declared_frames(path, handle) or available  # what the header promises
            first = int(round((start or 0.0) * rate))
            last = total if end is None else min(total, int(round(end * rate)))
            if max_seconds is not None and last - first > round(max_seconds * rate):
                if warn:
                    warn(f"clipped at --max-seconds {max_seconds:g} s: the audio span is {(last - first) / rate:.2f} s")
                last = first + int(round(max_seconds * rate))
            if total == 0:
                raise ItemError(f"zero-length audio {path} (no samples)")
            if first >= total:
                raise ItemError(f"start {start} s is past the end of {path} ({total / rate:.2f} s)")
            if first >= available:
                raise ItemError(f"truncated audio {path}: the header promises {total / rate:.2f} s, the file holds "
                                f"{available / rate:.2f} s, and the utterance starts at {first / rate:.2f} s")
            handle.seek(first)
            data, error = _read_blocks(handle, last - first, path)
            end_read = (first + len(data)) / rate
            if error and warn:
                warn(f"truncated audio {path}: decoder error at {end_read:.2f} s ({error}); features from the "
                     f"{len(data) / rate:.2f} s of the span before it")
            elif len(data) < last - first and warn:  # the data ended before the header said they would
                warn(f"truncated audio {path}: the header promises {total / rate:.2f} s, the file holds "
                     f"{end_read:.2f} s; features from the {len(data) / rate:.2f} s of the span that are there")
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
