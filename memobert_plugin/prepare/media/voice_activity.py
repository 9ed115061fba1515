"""Where an utterance's audio holds voice: silero-vad's network, or an energy threshold as fallback.

Used to choose the active speaker (voice at each sampled video frame) and, with
``--trim-silence``, to cut leading and trailing silence before the acoustic features.

* ``silero``: the silero-vad package's pretrained network (shipped inside the pip package,
  loaded from it offline), speech segments at its default threshold.
* ``energy``: a window is voiced when its energy (dB) lies above the midpoint between the
  quietest and loudest windows; with under 6 dB between them there are no pauses to tell
  apart and everything is voiced.
* ``auto`` (the default): silero when the package is installed, energy otherwise.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import List, Tuple

import numpy as np

from memobert_plugin.prepare.media.audio import SAMPLE_RATE, window_energy_db

__all__ = ["VAD_METHODS", "resolve_vad", "VoiceActivity", "SileroVoiceActivity", "EnergyVoiceActivity",
           "load_voice_activity"]

VAD_METHODS = ("auto", "silero", "energy")
_MIN_CONTRAST_DB = 6.0  # quieter-to-louder range below which the audio says nothing about pauses
_ENERGY_WINDOW = 0.03  # seconds per window when the energy detector segments a whole utterance

Segment = Tuple[int, int]  # first and end sample of a voiced stretch


def resolve_vad(method: str) -> str:
    """``auto`` -> ``silero`` if the package is installed, else ``energy``; other names are checked."""
    if method not in VAD_METHODS:
        raise ValueError(f"voice activity method {method!r}: choose from {VAD_METHODS}")
    if method == "auto":
        return "silero" if importlib.util.find_spec("silero_vad") else "energy"
    return method


class VoiceActivity(ABC):
    """16 kHz mono wave -> voiced segments; the per-frame and trimming views derive from them."""

    name: str

    @abstractmethod
    def segments(self, wave: np.ndarray) -> List[Segment]:
        """Voiced stretches in samples, in order."""

    def voiced(self, wave: np.ndarray, times: np.ndarray, window: float) -> np.ndarray:
        """Per time (seconds): True where voice fills at least half the ``window``-second span around it."""
        half = window / 2 * SAMPLE_RATE
        centres = np.asarray(times, dtype=np.float64) * SAMPLE_RATE
        covered = np.zeros(len(centres))
        for first, end in self.segments(wave):
            covered += np.clip(np.minimum(centres + half, end) - np.maximum(centres - half, first), 0, None)
        return covered >= half

    def trim(self, wave: np.ndarray) -> np.ndarray:
        """The wave from the first voiced sample to the last (all of it when no voice is found)."""
        segments = self.segments(wave)
        return wave[segments[0][0]: segments[-1][1]] if segments else wave


class SileroVoiceActivity(VoiceActivity):
    name = "silero"

    def __init__(self):
        from silero_vad import load_silero_vad

        self.model = load_silero_vad()  # the TorchScript network inside the package; nothing is downloaded

    def segments(self, wave: np.ndarray) -> List[Segment]:
        import torch
        from silero_vad import get_speech_timestamps

        with torch.inference_mode():
            found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), self.model,
                                          sampling_rate=SAMPLE_RATE)
        return [(int(s["start"]), int(s["end"])) for s in found]


class EnergyVoiceActivity(VoiceActivity):
    name = "energy"

    @staticmethod
    def _above_midpoint(energy: np.ndarray) -> np.ndarray:
        if len(energy) == 0 or energy.max() - energy.min() < _MIN_CONTRAST_DB:
            return np.ones(len(energy), dtype=bool)  # no pauses to tell apart: all voiced
        return energy > (energy.min() + energy.max()) / 2

    def voiced(self, wave: np.ndarray, times: np.ndarray, window: float) -> np.ndarray:
        # one window per time, thresholded among those windows (not among fixed 30 ms windows)
        return self._above_midpoint(window_energy_db(wave, np.asarray(times), window))

    def segments(self, wave: np.ndarray) -> List[Segment]:
        step = int(_ENERGY_WINDOW * SAMPLE_RATE)
        starts = np.arange(0, len(wave), step)
        voiced = self._above_midpoint(window_energy_db(wave, (starts + step / 2) / SAMPLE_RATE, _ENERGY_WINDOW))
        segments: List[Segment] = []
        for first, is_voiced in zip(starts, voiced):
            if not is_voiced:
                continue
            end = min(int(first) + step, len(wave))
            if segments and segments[-1][1] == first:
                segments[-1] = (segments[-1][0], end)
            else:
                segments.append((int(first), end))
        return segments


def load_voice_activity(method: str) -> VoiceActivity:
    """The detector named by ``method`` (see :data:`VAD_METHODS`)."""
    return SileroVoiceActivity() if resolve_vad(method) == "silero" else EnergyVoiceActivity()
