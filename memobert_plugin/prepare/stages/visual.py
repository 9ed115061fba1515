"""Visual stage: the speaker's faces -> features (``visual``) and FER+ probabilities (``visual_fer``), one
row per face frame.

The ``visual`` features come from a pretrained vision encoder (a transformers ViT or CLIP vision
directory, :mod:`..encoders.vision`) when one is given, else from the FER DenseNet
(``memobert-train-fer``); ``visual_fer``, the targets of pretraining's ``span_mvfc_kl``, only from a
FER model.

The manifest's ``video`` cell is either a video file (faces are detected in frames sampled
at ``fps``, and the active speaker is chosen when several people are on screen) or a folder
of images that already are the speaker's face crops, one per frame, used in name order.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from memobert_plugin.prepare.media.active_speaker import choose_speaker
from memobert_plugin.prepare.media.audio import Warn, read_audio
from memobert_plugin.prepare.media.faces import (
    HaarFaceDetector,
    detect_faces,
    read_face_folder,
    track_faces,
    video_frames,
)
from memobert_plugin.prepare.fer.model import FACE_SIZE, FerModel, load_fer_model
from memobert_plugin.files import sha256_file
from memobert_plugin.prepare.manifest import Utterance
from memobert_plugin.prepare.encoders.loading import model_checksum
from memobert_plugin.prepare.report import ItemError
from memobert_plugin.prepare.shards import FrameStage, ShardPlan
from memobert_plugin.prepare.encoders.vision import VisionEncoder, load_vision_encoder, vision_model_name
from memobert_plugin.prepare.media.voice_activity import VoiceActivity, load_voice_activity, resolve_vad

__all__ = ["speaker_faces", "VisualStage"]


def speaker_faces(utterance: Utterance, detector: HaarFaceDetector, fps: float,
                  max_seconds: Optional[float], vad: VoiceActivity, warn: Optional[Warn] = None,
                  detect_every: int = 5) -> np.ndarray:
    """``[N, S, S]`` grey crops (``S``: the detector's face_size) of the active speaker's face in the utterance's video span."""
    frames = video_frames(utterance.video, utterance.start, utterance.end, fps, max_seconds, warn)
    per_frame, times = detect_faces(frames, detector, detect_every)
    if not per_frame:
        span = "" if utterance.start is None and utterance.end is None else (
            f" between {utterance.start or 0} s and {utterance.end if utterance.end is not None else 'the end'}")
        raise ItemError(f"no video frames{span} in {utterance.video}")
    voiced = None
    if utterance.audio:
        try:
            wave = read_audio(utterance.audio, utterance.start, utterance.end, max_seconds)
            voiced = vad.voiced(wave, np.asarray(times), window=1.0 / fps)
        except ItemError:
            pass  # the acoustic stage reports the audio; the largest face is taken instead
    speaker = choose_speaker(track_faces(per_frame), voiced)
    if speaker is None:
        raise ItemError(f"no face detected in {len(per_frame)} frames of {utterance.video}")
    return speaker.faces()


class VisualStage(FrameStage):
    """Writes the ``visual`` stream (a vision encoder's features of each face, else the FER DenseNet's)
    and, given a FER model, the ``visual_fer`` stream (its FER+ class probabilities)."""

    name = "visual"
    inputs = ("id", "line", "video", "audio", "start", "end")
    media = ("video", "audio")  # the audio decides the active speaker

    def __init__(self, checkpoint: Optional[str] = None, fps: float = 10.0, max_seconds: float = 10.0,
                 device: str = "cpu", vad: str = "auto", detect_every: int = 5, encoder: Optional[str] = None):
        if fps <= 0 or max_seconds <= 0 or detect_every < 1:
            raise ValueError(f"fps and max_seconds must be > 0 and detect_every >= 1, got {fps}, {max_seconds} "
                             f"and {detect_every}")
        if not checkpoint and not encoder:
            raise ValueError("the visual stage needs a vision encoder (--vision-encoder) or a FER model (--fer-model)")
        self.checkpoint = os.path.abspath(checkpoint) if checkpoint else None
        self.encoder = os.path.abspath(encoder) if encoder else None
        self.fps, self.max_seconds, self.device, self.vad = fps, max_seconds, device, resolve_vad(vad)
        self.detect_every = detect_every
        self._vad: Optional[VoiceActivity] = None
        self._model: Optional[FerModel] = None
        self._encoder: Optional[VisionEncoder] = None
        self._detector: Optional[HaarFaceDetector] = None
        self._identity: Optional[dict] = None

    def setup(self) -> None:
        if self._detector is None:
            self._model = load_fer_model(self.checkpoint, self.device) if self.checkpoint else None
            self._encoder = load_vision_encoder(self.encoder, self.device) if self.encoder else None
            self._detector = HaarFaceDetector(face_size=self._encoder.image_size if self._encoder else FACE_SIZE)
            self._vad = load_voice_activity(self.vad)

    def check_plan(self, plan: ShardPlan) -> None:
        plan.require_column("video", self.name)

    def config(self) -> dict:
        if self._identity is None:
            fer = {"checkpoint": self.checkpoint, "sha256": sha256_file(self.checkpoint) if self.checkpoint else None}
            self._identity = fer if not self.encoder else {
                "extractor": vision_model_name(self.encoder), "encoder": self.encoder,
                "encoder_sha256": model_checksum(self.encoder), **fer}
        return {"extractor": "densenet_fer", **self._identity, "face_detector": "opencv_haar_frontalface_default",
                "active_speaker": "mouth_motion_vs_voice_activity", "voice_activity": self.vad, "fps": self.fps,
                "max_seconds": self.max_seconds, "detect_every": self.detect_every}

    def summary(self) -> dict:
        self.setup()
        described = self._encoder.describe() if self._encoder else {"feature_dim": self._model.feature_dim}
        return {**self.config(), **described, "classes": self._model.num_classes if self._model else 0}

    @property
    def streams(self) -> Dict[str, int]:
        self.setup()
        streams = {"visual": self._encoder.dim if self._encoder else self._model.feature_dim}
        if self._model:
            streams["visual_fer"] = self._model.num_classes
        return streams

    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        self.setup()
        if not utterance.video:
            raise ItemError("no video path in the manifest")
        if os.path.isdir(utterance.video):
            faces = read_face_folder(utterance.video, self._detector.face_size)
        else:
            faces = speaker_faces(utterance, self._detector, self.fps, self.max_seconds, self._vad, self.warn,
                                  self.detect_every)
        out = {}
        if self._model:
            fer_faces = faces if faces.shape[1] == FACE_SIZE else _resized(faces, FACE_SIZE)
            out["visual"], out["visual_fer"] = self._model(fer_faces)
        if self._encoder:
            out["visual"] = self._encoder(faces)
        return out


def _resized(faces: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA) for face in faces])
