"""Which face is speaking: the one whose mouth moves with the voice (paper, section 3.3.1).

For each face track, mouth motion is the mean absolute change of its mouth patch between
consecutive sampled frames. Voice activity comes from the utterance's audio
(:mod:`.voice_activity`: silero-vad, or an energy threshold). A track's score is its mean
mouth motion while voiced minus its mean motion while silent, so the speaker, who moves the
mouth when there is voice and rests it in pauses, scores highest. Tracks seen in under a quarter of the frames of the
longest track (mostly false detections) do not compete.
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np

from memobert_plugin.prepare.media.faces import FaceTrack

__all__ = ["mouth_motion", "speaking_score", "choose_speaker"]

_MIN_TRACK_SHARE = 0.25


def mouth_motion(track: FaceTrack) -> tuple:
    """(frame indices, motion) for each detection that follows one in the previous sampled frame."""
    frames, motion = [], []
    for prev, cur in zip(track.detections, track.detections[1:]):
        if cur.frame == prev.frame + 1:
            frames.append(cur.frame)
            motion.append(float(np.abs(cur.mouth - prev.mouth).mean()))
    return np.asarray(frames, dtype=np.int64), np.asarray(motion)


def speaking_score(track: FaceTrack, voiced: np.ndarray) -> float:
    """Mean mouth motion in voiced frames minus that in silent frames (-inf: no voiced frame to judge)."""
    frames, motion = mouth_motion(track)
    is_voiced = voiced[frames] if len(frames) else np.zeros(0, dtype=bool)
    if not is_voiced.any():
        return -math.inf
    silent = motion[~is_voiced].mean() if (~is_voiced).any() else 0.0
    return float(motion[is_voiced].mean() - silent)


def choose_speaker(tracks: List[FaceTrack], voiced: Optional[np.ndarray]) -> Optional[FaceTrack]:
    """The active speaker's track; with no voice activity to go by, the largest face seen most.

    ``voiced`` is indexed by sampled frame number (None when the audio is unavailable).
    """
    if not tracks:
        return None
    longest = max(len(t.detections) for t in tracks)
    candidates = [t for t in tracks if len(t.detections) >= math.ceil(_MIN_TRACK_SHARE * longest)]
    presence = lambda t: sum(d.area for d in t.detections)  # noqa: E731
    if len(candidates) == 1 or voiced is None:
        return max(candidates, key=presence)
    scores = [speaking_score(t, voiced) for t in candidates]
    if all(s == -math.inf for s in scores):
        return max(candidates, key=presence)
    return candidates[int(np.argmax(scores))]
