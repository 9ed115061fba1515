"""The base of the stages that write the ``acoustic`` stream from each utterance's audio.

They read the span as :func:`..media.audio.read_audio` does (16 kHz mono, clipped at ``max_seconds``,
clipping and truncation reported), and with ``trim_silence`` cut the silence before the first
and after the last voiced sample (:mod:`..media.voice_activity`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from memobert_plugin.prepare.media.audio import AUDIO_INPUTS, read_audio
from memobert_plugin.prepare.manifest import Utterance
from memobert_plugin.prepare.shards import FrameStage, ShardPlan
from memobert_plugin.prepare.media.voice_activity import VoiceActivity, load_voice_activity, resolve_vad

__all__ = ["SpeechStage"]


class SpeechStage(FrameStage):
    """Reads (and optionally trims) each utterance's audio for a subclass's extractor."""

    name = "acoustic"
    inputs = AUDIO_INPUTS
    media = ("audio",)

    def __init__(self, max_seconds: float = 10.0, trim_silence: bool = False, vad: str = "auto"):
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.max_seconds = max_seconds
        self.vad = resolve_vad(vad) if trim_silence else None  # None: no trimming
        self._vad: Optional[VoiceActivity] = None

    def setup(self) -> None:
        if self.vad and self._vad is None:
            self._vad = load_voice_activity(self.vad)

    def check_plan(self, plan: ShardPlan) -> None:
        plan.require_column("audio", self.name)

    def speech_config(self) -> dict:
        """The reading settings, part of every subclass's :meth:`config`."""
        return {"max_seconds": self.max_seconds, "trim_silence": self.vad or False}

    def read_speech(self, utterance: Utterance) -> np.ndarray:
        self.setup()
        wave = read_audio(utterance.audio, utterance.start, utterance.end, self.max_seconds, warn=self.warn)
        return self._vad.trim(wave) if self._vad else wave
