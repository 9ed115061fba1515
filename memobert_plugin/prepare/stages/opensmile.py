"""Acoustic stage without a wav2vec 2.0 checkpoint: openSMILE's eGeMAPS low-level descriptors.

The ``opensmile`` pip package ships openSMILE and the eGeMAPS v02 configuration (the
Geneva minimalistic acoustic parameter set of affective computing): 25 descriptors per
10 ms (loudness, pitch, jitter, shimmer, formants, spectral slopes, MFCCs 1-4, ...).
They are average-pooled every 6 frames, to the 60 ms frames of the pooled wav2vec 2.0
features, so both feed the model at the same rate. (ComParE's descriptors are not offered:
their raw values exceed the float16 range of the feature stores.)
"""

from __future__ import annotations

import warnings
from typing import Dict

import numpy as np

from memobert_plugin.prepare.stages.acoustic import average_pool
from memobert_plugin.prepare.media.audio import SAMPLE_RATE
from memobert_plugin.prepare.manifest import Utterance
from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.stages.speech import SpeechStage

__all__ = ["OPENSMILE_FEATURE_SETS", "OpenSmileStage"]

#: --acoustic-features name -> openSMILE feature set
OPENSMILE_FEATURE_SETS = {"egemaps": "eGeMAPSv02"}
_HOP_SECONDS = 0.01
_FRAME_SECONDS = 0.06  # the pooled wav2vec 2.0 frame


class OpenSmileStage(SpeechStage):
    """Writes the ``acoustic`` stream: eGeMAPS descriptors pooled to 60 ms."""

    def __init__(self, feature_set: str = "egemaps", max_seconds: float = 10.0, trim_silence: bool = False,
                 vad: str = "auto"):
        super().__init__(max_seconds, trim_silence, vad)
        if feature_set not in OPENSMILE_FEATURE_SETS:
            raise ValueError(f"openSMILE feature set {feature_set!r}: choose from {sorted(OPENSMILE_FEATURE_SETS)}")
        self.feature_set = feature_set
        self.pool = round(_FRAME_SECONDS / _HOP_SECONDS)
        self._smile = None

    @classmethod
    def options_from_record(cls, recorded: dict) -> dict:
        """Constructor options from its ``dataset.json`` record, which names openSMILE's feature set, not ours."""
        return {**recorded, "feature_set": {v: k for k, v in OPENSMILE_FEATURE_SETS.items()}.get(recorded["feature_set"])}

    def setup(self) -> None:
        super().setup()
        if self._smile is None:
            import opensmile

            feature_set = getattr(opensmile.FeatureSet, OPENSMILE_FEATURE_SETS[self.feature_set])
            self._smile = opensmile.Smile(feature_set=feature_set,
                                          feature_level=opensmile.FeatureLevel.LowLevelDescriptors)

    def config(self) -> dict:
        import opensmile

        return {"extractor": "opensmile", "feature_set": OPENSMILE_FEATURE_SETS[self.feature_set],
                "level": "low-level descriptors", "opensmile": opensmile.__version__, "pool": self.pool,
                **self.speech_config()}

    @property
    def streams(self) -> Dict[str, int]:
        self.setup()
        return {"acoustic": len(self._smile.feature_names)}

    def summary(self) -> dict:
        self.setup()
        return {**self.config(), "dim": len(self._smile.feature_names), "features": list(self._smile.feature_names)}

    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        wave = self.read_speech(utterance)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "segment too short": the NaN rows are caught below
            frames = self._smile.process_signal(wave, SAMPLE_RATE).to_numpy(dtype=np.float32)
        if not len(frames) or np.isnan(frames).all(axis=1).any():
            raise ItemError(f"audio too short for openSMILE ({len(wave) / SAMPLE_RATE * 1000:.0f} ms)")
        return {"acoustic": average_pool(frames, self.pool)}
