"""Acoustic stage: a speech encoder's frame features (:mod:`..encoders.speech`), average-pooled.

Frames of 20 ms are pooled by ``pool`` (3: 60 ms, the paper's setting), or into one frame per
utterance (``pool="utterance"``, the mean over the utterance, as utterance-level benchmarks use).
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from memobert_plugin.prepare.media.audio import SAMPLE_RATE
from memobert_plugin.prepare.manifest import Utterance
from memobert_plugin.prepare.encoders.loading import model_checksum
from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.encoders.speech import SpeechEncoder, load_speech_encoder, speech_model_name
from memobert_plugin.prepare.stages.speech import SpeechStage

__all__ = ["average_pool", "AcousticStage", "UTTERANCE_POOL"]

#: audio per transformer batch in the acoustic stage: enough to fill the matrix products, few enough
#: that the padded batch's activations stay small
_BATCH_SECONDS = 60.0
#: ``pool`` value for one frame per utterance
UTTERANCE_POOL = "utterance"


def average_pool(frames: np.ndarray, size: Union[int, str]) -> np.ndarray:
    """Mean of every ``size`` consecutive frames (a shorter last group is averaged too), or of all of
    them for ``size`` :data:`UTTERANCE_POOL`."""
    if size == UTTERANCE_POOL:
        return frames.mean(axis=0, keepdims=True)
    full = len(frames) // size * size
    pooled = frames[:full].reshape(-1, size, frames.shape[1]).mean(axis=1)
    if full < len(frames):
        pooled = np.concatenate([pooled, frames[full:].mean(axis=0, keepdims=True)])
    return pooled


class AcousticStage(SpeechStage):
    """Writes the ``acoustic`` stream: pooled speech-encoder features of each utterance's audio.

    Within a shard, consecutive utterances (up to :data:`_BATCH_SECONDS` of audio) go through the
    encoder together (:meth:`SpeechEncoder.batch`); each utterance's report rows stay its own.
    A shard's batches depend only on its entries, so the output is the same for any ``--workers``.
    """

    def __init__(self, checkpoint: str, layer: Union[None, int, Sequence[int]] = None, pool: Union[int, str] = 3,
                 max_seconds: float = 10.0, device: str = "cpu", trim_silence: bool = False, vad: str = "auto"):
        super().__init__(max_seconds, trim_silence, vad)
        if pool != UTTERANCE_POOL and not (type(pool) is int and pool >= 1):
            raise ValueError(f"pool must be a number of frames >= 1 or {UTTERANCE_POOL!r}, got {pool!r}")
        layers = [layer] if isinstance(layer, int) else sorted(set(layer)) if layer else None
        # recorded as given: one layer as a number, a mean of layers as their list
        self.layer = layers[0] if layers and len(layers) == 1 else layers
        self.checkpoint, self.layers, self.pool = os.path.abspath(checkpoint), layers, pool
        self.device = device
        self._model: Optional[SpeechEncoder] = None
        self._identity: Optional[dict] = None
        self._ahead: Optional[dict] = None  # during run_shard: the shard's entries and the features computed ahead

    def setup(self) -> None:
        super().setup()
        if self._model is None:
            self._model = load_speech_encoder(self.checkpoint, self.layers, self.device)
            if self._model.max_seconds is not None and self.max_seconds > self._model.max_seconds:
                raise ValueError(f"{self.checkpoint}: the encoder reads at most {self._model.max_seconds:g} s; "
                                 f"give --max-seconds {self._model.max_seconds:g} or less")

    def config(self) -> dict:
        if self._identity is None:
            self._identity = {"extractor": speech_model_name(self.checkpoint),
                              "checkpoint": self.checkpoint, "sha256": model_checksum(self.checkpoint)}
        return {**self._identity, "layer": self.layer, "pool": self.pool, **self.speech_config()}

    @property
    def streams(self) -> Dict[str, int]:
        self.setup()
        return {"acoustic": self._model.dim}

    def summary(self) -> dict:
        self.setup()
        return {**self.config(), **self._model.describe()}

    @contextlib.contextmanager
    def batching(self, entries: Sequence[Utterance]) -> Iterator[None]:
        """Within the block, :meth:`extract` of these entries runs them in batches (in this order)."""
        self._ahead = {"entries": list(entries), "ready": {}}
        try:
            yield
        finally:
            self._ahead = None

    def run_shard(self, entries: List[Utterance], prefix: str, advance,
                  reuse: Optional[Dict[int, int]] = None) -> list:
        reused = reuse or {}  # copied from the shard's previous outputs, not extracted
        with self.batching([e for i, e in enumerate(entries) if i not in reused]):
            return super().run_shard(entries, prefix, advance, reuse)

    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        self.setup()
        if self._ahead is None:  # called on its own (prediction): this utterance alone
            return {"acoustic": average_pool(self._model(self.read_speech(utterance)), self.pool)}
        if utterance.id not in self._ahead["ready"]:
            self._extract_batch(utterance)
        result, warnings = self._ahead["ready"].pop(utterance.id)
        for reason in warnings:
            self.warn(reason)
        if isinstance(result, ItemError):
            raise result
        return {"acoustic": result}

    def _extract_batch(self, first: Utterance) -> None:
        """Read the utterances from ``first`` on (up to :data:`_BATCH_SECONDS` of audio) and run them as one batch."""
        entries, ready = self._ahead["entries"], self._ahead["ready"]
        current, waves, samples = self._warnings, {}, 0
        for utterance in entries[entries.index(first):]:
            if samples >= _BATCH_SECONDS * SAMPLE_RATE:
                break
            self._warnings = []  # each utterance's report rows are collected on their own
            try:
                wave = self.read_speech(utterance)
                self._model.check_length(wave)
            except ItemError as err:
                ready[utterance.id] = (err, self._warnings)
                continue
            waves[utterance.id] = wave, self._warnings
            samples += len(wave)
        self._warnings = current
        features = self._model.batch([wave for wave, _ in waves.values()])
        for (uid, (_, warnings)), frames in zip(waves.items(), features):
            ready[uid] = average_pool(frames, self.pool), warnings
