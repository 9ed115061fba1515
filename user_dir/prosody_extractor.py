"""The prosody stream's extractor: 25 descriptors per 60 ms of speech, computed with numpy from the audio.

Per frame (960 samples at 16 kHz): log RMS energy, zero-crossing rate, pitch (autocorrelation peak
within 60-400 Hz; 0 when unvoiced) and its voicing strength, spectral centroid, 85% roll-off and
flatness, and the log energies of 18 equal bands up to 8 kHz. The stream's declaration
(``user_dir/prosody.py``) names this class for the recorded extractor ``prosody_descriptors``, so a
model trained on these features predicts from audio with ``memobert-predict --user-dir user_dir``.
Kept apart from ``prosody.py`` so that ``fairseq-train --user-dir`` imports no media reader.
"""

from typing import Dict

import numpy as np

from memobert_plugin.prepare.media.audio import SAMPLE_RATE
from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.stages.speech import SpeechStage

__all__ = ["ProsodyStage", "prosody_descriptors", "PROSODY_DIM"]

PROSODY_DIM = 25
_FRAME = int(0.06 * SAMPLE_RATE)
_BANDS = PROSODY_DIM - 7


def prosody_descriptors(wave: np.ndarray) -> np.ndarray:
    """``[frames, 25]`` float32 descriptors of consecutive 60 ms frames of a 16 kHz wave."""
    frames = wave[: len(wave) // _FRAME * _FRAME].reshape(-1, _FRAME).astype(np.float64)
    rms = np.sqrt((frames ** 2).mean(1))
    zcr = (np.diff(np.signbit(frames), axis=1)).mean(1)
    centred = frames - frames.mean(1, keepdims=True)
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(_FRAME), axis=1)) ** 2 + 1e-12
    autocorr = np.fft.irfft(np.abs(np.fft.rfft(centred, 2 * _FRAME, axis=1)) ** 2, axis=1)[:, :_FRAME]
    lags = np.arange(SAMPLE_RATE // 400, SAMPLE_RATE // 60)
    best = lags[autocorr[:, lags].argmax(1)]
    voicing = autocorr[np.arange(len(frames)), best] / np.maximum(autocorr[:, 0], 1e-12)
    pitch = np.where(voicing > 0.3, SAMPLE_RATE / best, 0.0)
    freqs = np.fft.rfftfreq(_FRAME, 1 / SAMPLE_RATE)
    power = spectrum.sum(1)
    centroid = (spectrum * freqs).sum(1) / power
    rolloff = freqs[(np.cumsum(spectrum, 1) < 0.85 * power[:, None]).sum(1).clip(max=len(freqs) - 1)]
    flatness = np.exp(np.log(spectrum).mean(1)) / spectrum.mean(1)
    bands = np.log(np.stack([b.sum(1) for b in np.array_split(spectrum, _BANDS, axis=1)], 1))
    return np.column_stack([np.log(rms + 1e-8), zcr, pitch, voicing, centroid, rolloff, flatness, bands]
                           ).astype(np.float32)


class ProsodyStage(SpeechStage):
    """Writes the ``prosody`` stream from each utterance's audio."""

    name = "prosody"

    def config(self) -> dict:
        return {"extractor": "prosody_descriptors", "frame_ms": 60, "dim": PROSODY_DIM, **self.speech_config()}

    @property
    def streams(self) -> Dict[str, int]:
        return {"prosody": PROSODY_DIM}

    def extract(self, utterance) -> Dict[str, np.ndarray]:
        wave = self.read_speech(utterance)
        if len(wave) < _FRAME:
            raise ItemError(f"audio too short for a prosody frame ({len(wave) / SAMPLE_RATE * 1000:.0f} ms)")
        return {"prosody": prosody_descriptors(wave)}
