"""Faces from video: frames sampled at a fixed rate (PyAV), OpenCV Haar detection, IoU tracking.

The cascade searches the whole frame only on every ``detect_every``-th sampled frame (a keyframe).
When two consecutive keyframes hold the same faces at nearly the same place (each box overlapping
its partner by IoU >= 0.7), the faces did not move in between, and the frames between them take
the boxes interpolated from the two keyframes. Otherwise each face is followed from frame to frame
between them: the cascade searches only a region around the face's box in the frame before, at
scales near its size, downscaled so that the face is about :data:`_FOLLOW_SIDE` pixels wide (a
fraction of a full-frame search). So a face that appears between keyframes is found from the next
keyframe on, and a face the region search loses is missing until then.
Crops are always cut from each frame's own pixels, so expressions and mouth motion are not reused.

Only small crops are kept per detection (the 48x48 face for the expression model and a
mouth patch for the active-speaker choice), never whole frames, so memory does not depend
on the video's resolution or length.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from memobert_plugin.prepare.fer.model import FACE_SIZE
from memobert_plugin.prepare.report import ItemError

__all__ = [
    "IMAGE_EXTENSIONS", "Detection", "FaceTrack", "HaarFaceDetector", "video_frames", "read_face_folder",
    "detect_faces", "track_faces",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MOUTH_SIZE = (24, 12)  # width, height of the resampled mouth patch
_DETECT_MAX_SIDE = 640  # frames are searched at this size at most (speed); boxes are scaled back
_TRACK_IOU = 0.3
_STILL_IOU = 0.7  # keyframe boxes overlapping this much: the face did not move in between
_FOLLOW_MARGIN = 0.4  # a followed face is searched for within this many face sides around its last box
_FOLLOW_SIDE = 64  # ... in a region downscaled so that the face is about this wide (the cascade's window is 24)
_FOLLOW_SCALE = 1.25  # ... at sizes within this factor of its last size

Box = Tuple[int, int, int, int]  # x, y, width, height in frame pixels


@dataclass
class Detection:
    """One face in one sampled frame."""

    frame: int
    box: Box
    face: np.ndarray  # uint8 [S, S] grey, the face encoder's input (S: the detector's face_size, 48 for FER)
    mouth: np.ndarray  # float32 [12, 24], lower-middle face, brightness-normalised

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass
class FaceTrack:
    """Detections of (presumably) one person in consecutive sampled frames."""

    detections: List[Detection] = field(default_factory=list)

    @property
    def last_box(self) -> Box:
        return self.detections[-1].box

    def faces(self) -> np.ndarray:
        return np.stack([d.face for d in self.detections])


def _crop(gray: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return gray[max(y, 0): y + h, max(x, 0): x + w]


def _mouth(gray: np.ndarray, box: Box) -> np.ndarray:
    import cv2

    x, y, w, h = box
    # the mouth sits in the lower third of a frontal Haar face box, around the middle
    patch = gray[y + int(0.65 * h): y + int(0.95 * h), x + int(0.25 * w): x + int(0.75 * w)]
    patch = cv2.resize(patch, _MOUTH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    return patch / max(float(patch.mean()), 1.0)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (shipped with OpenCV under ``cv2.data.haarcascades``)."""

    def __init__(self, min_face: int = 30, face_size: int = FACE_SIZE):
        import cv2

        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"{path}: OpenCV could not load its Haar cascade")
        self.min_face, self.face_size = min_face, face_size

    def boxes(self, gray: np.ndarray) -> List[Box]:
        import cv2

        scale = min(1.0, _DETECT_MAX_SIDE / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        min_side = max(8, int(self.min_face * scale))
        found = self.cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        return [tuple(int(round(v / scale)) for v in box) for box in found]

    def detect(self, gray: np.ndarray, frame: int) -> List[Detection]:
        return crops(gray, self.boxes(gray), frame, self.face_size)

    def follow(self, gray: np.ndarray, last: List[Box]) -> List[Box]:
        """Where each face of ``last`` (boxes in the frame before) is in ``gray``: a search of the
        region around each box only, near its size (module docstring); a face not found is left out."""
        import cv2

        found = []
        for box in last:
            x, y, w, h = box
            margin, side = int(_FOLLOW_MARGIN * max(w, h)), max(w, h)
            x0, y0 = max(0, x - margin), max(0, y - margin)
            region = gray[y0: y + h + margin, x0: x + w + margin]
            scale = min(1.0, _FOLLOW_SIDE / side)
            small = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else region
            low, high = int(side * scale / _FOLLOW_SCALE), int(np.ceil(side * scale * _FOLLOW_SCALE))
            near = self.cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(low, low),
                                                 maxSize=(high, high))
            candidates = [(x0 + int(round(bx / scale)), y0 + int(round(by / scale)), int(round(bw / scale)),
                           int(round(bh / scale))) for bx, by, bw, bh in near]
            if candidates:
                found.append(max(candidates, key=lambda other: _iou(box, other)))
        return found


def crops(gray: np.ndarray, boxes: List[Box], frame: int, size: int = FACE_SIZE) -> List[Detection]:
    """The ``size`` x ``size`` face and the mouth crops of ``boxes`` in one frame."""
    import cv2

    return [
        Detection(frame, box, cv2.resize(_crop(gray, box), (size, size), interpolation=cv2.INTER_AREA),
                  _mouth(gray, box))
        for box in boxes
    ]


def video_frames(path: str, start: Optional[float], end: Optional[float], fps: float,
                 max_seconds: Optional[float],
                 warn: Optional[Callable[[str], None]] = None) -> Iterator[Tuple[float, np.ndarray]]:
    """``(seconds from start, grey frame)`` at about ``fps`` frames a second, from start to end.

    ``warn`` is told when the span is clipped at ``max_seconds``.
    """
    import av

    if not os.path.isfile(path):
        raise ItemError(f"missing file: video {path}")
    begin = start or 0.0
    stop = end if end is not None else float("inf")
    if max_seconds is not None:
        stop = min(stop, begin + max_seconds)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ItemError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if begin > 0:  # jump to the keyframe before the start instead of decoding from 0
                container.seek(int(begin / stream.time_base), stream=stream, backward=True, any_frame=False)
            last_slot = -1
            for frame in container.decode(stream):
                if frame.time is None or frame.time < begin:
                    continue
                if frame.time >= stop:
                    if warn and (end is None or frame.time < end) and stop < (end or float("inf")):
                        warn(f"clipped at --max-seconds {max_seconds:g} s: the video goes on past "
                             f"{stop - begin:.2f} s of the span")
                    break
                # one frame per 1/fps slot (the epsilon absorbs float error in the timestamps)
                slot = int(math.floor((frame.time - begin) * fps + 1e-6))
                if slot > last_slot:
                    last_slot = slot
                    yield frame.time - begin, frame.to_ndarray(format="gray")
    except av.error.FFmpegError as err:
        raise ItemError(f"unreadable video {path}: {err}") from None


def read_face_folder(path: str, size: int = FACE_SIZE) -> np.ndarray:
    """All images in a folder (name order) as ``[N, size, size]`` grey faces, used as given."""
    import cv2

    names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
    faces = []
    for name in names:
        image = cv2.imread(os.path.join(path, name), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ItemError(f"unreadable image {os.path.join(path, name)}")
        faces.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    if not faces:
        raise ItemError(f"no face: the face folder {path} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return np.stack(faces)


def _iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def _still_pairs(before: List[Box], after: List[Box]) -> Optional[List[Tuple[Box, Box]]]:
    """``before``'s boxes paired with ``after``'s if each face stayed put (IoU >= 0.7), else None."""
    if len(before) != len(after):
        return None
    free, pairs = list(after), []
    for box in before:
        best = max(free, key=lambda other: _iou(box, other))
        if _iou(box, best) < _STILL_IOU:
            return None
        free.remove(best)
        pairs.append((box, best))
    return pairs


def _between(a: Box, b: Box, weight: float) -> Box:
    return tuple(int(round(u + (v - u) * weight)) for u, v in zip(a, b))


def detect_faces(frames: Iterable[Tuple[float, np.ndarray]], detector: HaarFaceDetector,
                 detect_every: int = 5) -> Tuple[List[List[Detection]], List[float]]:
    """``(detections per sampled frame, frame times)``, searching whole frames only where needed
    (module docstring). At most ``detect_every - 1`` frames are held at a time."""
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    per_frame: List[List[Detection]] = []
    times: List[float] = []
    waiting: List[Tuple[int, np.ndarray]] = []  # frames since the last keyframe
    key: Tuple[int, List[Box]] = (-1, [])  # the last keyframe's index and boxes

    def keyframe(index: int, gray: np.ndarray) -> None:
        nonlocal key
        boxes = detector.boxes(gray)
        pairs = _still_pairs(key[1], boxes) if key[0] >= 0 else None
        followed = key[1]
        for between, frame in waiting:
            if pairs is None:  # the faces moved: follow them from the last keyframe on
                followed = detector.follow(frame, followed)
                per_frame[between] = crops(frame, followed, between, detector.face_size)
            else:
                weight = (between - key[0]) / (index - key[0])
                per_frame[between] = crops(frame, [_between(a, b, weight) for a, b in pairs], between,
                                           detector.face_size)
        waiting.clear()
        per_frame[index] = crops(gray, boxes, index, detector.face_size)
        key = (index, boxes)

    for index, (time, gray) in enumerate(frames):
        times.append(time)
        per_frame.append([])
        if index % detect_every == 0:
            keyframe(index, gray)
        else:
            waiting.append((index, gray))
    if waiting:  # the last frame closes the last gap
        last, gray = waiting.pop()
        keyframe(last, gray)
    return per_frame, times


def track_faces(frames: List[List[Detection]]) -> List[FaceTrack]:
    """Link each frame's detections to the track whose last box overlaps most (greedy, IoU >= 0.3)."""
    tracks: List[FaceTrack] = []
    for detections in frames:
        free = list(range(len(tracks)))
        for det in sorted(detections, key=lambda d: -d.area):
            scores = [(_iou(tracks[i].last_box, det.box), i) for i in free]
            best = max(scores, default=(0.0, -1))
            if best[0] >= _TRACK_IOU:
                tracks[best[1]].detections.append(det)
                free.remove(best[1])
            else:
                tracks.append(FaceTrack([det]))
    return tracks
