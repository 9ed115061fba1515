"""Visual stage: the speaker's faces -> DenseNet expression features (``visual``) and FER+ probabilities
(``visual_fer``), one row per face frame.

The manifest's ``video`` cell is either a video file (faces are detected in frames sampled
at ``fps``, and the active speaker is chosen when several people are on screen) or a folder
of images that already are the speaker's face crops, one per frame, used in name order.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from .active_speaker import choose_speaker
from .audio import Warn, read_audio
from .faces import HaarFaceDetector, detect_faces, read_face_folder, track_faces, video_frames
from .fer_model import FerModel, load_fer_model
from ..files import sha256_file
from .manifest import Utterance
from .report import ItemError
from .shards import FrameStage, ShardPlan
from .voice_activity import VoiceActivity, load_voice_activity, resolve_vad

__all__ = ["speaker_faces", "VisualStage"]


def speaker_faces(utterance: Utterance, detector: HaarFaceDetector, fps: float,
                  max_seconds: Optional[float], vad: VoiceActivity, warn: Optional[Warn] = None,
                  detect_every: int = 5) -> np.ndarray:
    """``[N, 48, 48]`` grey crops of the active speaker's face in the utterance's video span."""
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
    """Writes the ``visual`` (DenseNet features) and ``visual_fer`` (class probabilities) streams."""

    name = "visual"
    inputs = ("id", "line", "video", "audio", "start", "end")
    media = ("video", "audio")  # the audio decides the active speaker

    def __init__(self, checkpoint: str, fps: float = 10.0, max_seconds: float = 10.0, device: str = "cpu",
                 vad: str = "auto", detect_every: int = 5):
        if fps <= 0 or max_seconds <= 0 or detect_every < 1:
            raise ValueError(f"fps and max_seconds must be > 0 and detect_every >= 1, got {fps}, {max_seconds} "
                             f"and {detect_every}")
        self.checkpoint, self.fps = os.path.abspath(checkpoint), fps
        self.max_seconds, self.device, self.vad = max_seconds, device, resolve_vad(vad)
        self.detect_every = detect_every
        self._vad: Optional[VoiceActivity] = None
        self._model: Optional[FerModel] = None
        self._detector: Optional[HaarFaceDetector] = None
        self._checksum: Optional[str] = None

    def setup(self) -> None:
        if self._model is None:
            self._model = load_fer_model(self.checkpoint, self.device)
            self._detector = HaarFaceDetector()
            self._vad = load_voice_activity(self.vad)

    def check_plan(self, plan: ShardPlan) -> None:
        plan.require_column("video", self.name)

    def config(self) -> dict:
        if self._checksum is None:
            self._checksum = sha256_file(self.checkpoint)
        return {"extractor": "densenet_fer", "face_detector": "opencv_haar_frontalface_default",
                "active_speaker": "mouth_motion_vs_voice_activity", "voice_activity": self.vad,
                "checkpoint": self.checkpoint, "sha256": self._checksum, "fps": self.fps,
                "max_seconds": self.max_seconds, "detect_every": self.detect_every}

    def summary(self) -> dict:
        self.setup()
        return {**self.config(), "feature_dim": self._model.feature_dim, "classes": self._model.num_classes}

    @property
    def streams(self) -> Dict[str, int]:
        self.setup()
        return {"visual": self._model.feature_dim, "visual_fer": self._model.num_classes}

    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        self.setup()
        if not utterance.video:
            raise ItemError("no video path in the manifest")
        if os.path.isdir(utterance.video):
            faces = read_face_folder(utterance.video)
        else:
            faces = speaker_faces(utterance, self._detector, self.fps, self.max_seconds, self._vad, self.warn,
                                  self.detect_every)
        features, probs = self._model(faces)
        return {"visual": features, "visual_fer": probs}
