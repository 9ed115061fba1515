"""Faces, active speaker choice and expression features on a real photo and generated videos."""

import os

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the visual extractor needs the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the visual extractor needs the 'extract' extra (av)")
pytest.importorskip("skimage", reason="the astronaut photo comes from scikit-image (test extra)")

import cv2  # noqa: E402

from memobert_plugin.prepare.media.active_speaker import choose_speaker  # noqa: E402
from memobert_plugin.prepare.media.voice_activity import load_voice_activity  # noqa: E402
from memobert_plugin.prepare.media.faces import HaarFaceDetector, track_faces, video_frames  # noqa: E402
from memobert_plugin.prepare.fer.model import FER_CLASSES, DenseNetFER, FerModel, load_fer_model  # noqa: E402
from memobert_plugin.prepare.manifest import Utterance  # noqa: E402
from memobert_plugin.prepare.report import ItemError  # noqa: E402
from memobert_plugin.prepare.stages.visual import VisualStage  # noqa: E402
from prepare_material import FPS, astronaut_gray, pocketsphinx, tiny_fer  # noqa: E402,F401  (fixtures)
from prepare_material import write_two_face_video, write_video  # noqa: E402

# where the astronaut's face is in skimage's 512x512 photo (x, y, width, height), checked by eye
_ASTRONAUT_FACE = (177, 66, 95, 95)


def _video(tmp_path, pocketsphinx, speaker_left=True):  # noqa: F811
    video, wav = str(tmp_path / f"talk_{speaker_left}.mp4"), str(tmp_path / f"talk_{speaker_left}.wav")
    speech = os.path.join(pocketsphinx, "librivox", "sense_and_sensibility_01_austen_64kb-0870.wav")
    voiced = write_two_face_video(video, wav, speech, speaker_left)
    return video, wav, voiced


def test_haar_detector_finds_the_astronaut():
    gray = astronaut_gray()
    boxes = HaarFaceDetector().boxes(gray)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    ex, ey, ew, eh = _ASTRONAUT_FACE
    assert abs((x + w / 2) - (ex + ew / 2)) < 10 and abs((y + h / 2) - (ey + eh / 2)) < 10 and 0.8 < w / ew < 1.25
    # the same face in a frame twice as large is found at twice the coordinates (detection runs downscaled)
    (big,) = HaarFaceDetector().boxes(cv2.resize(gray, (1024, 1024)))
    assert all(abs(a - 2 * b) <= 12 for a, b in zip(big, boxes[0]))


def test_densenet_fer_on_the_astronaut_face(tiny_fer):  # noqa: F811
    assert DenseNetFER().feature_dim == 342  # DenseNet-BC-100, k=12: the paper's 342-d features
    model = load_fer_model(tiny_fer)
    detections = HaarFaceDetector().detect(astronaut_gray(), frame=0)
    features, probs = model(np.stack([d.face for d in detections]))
    assert features.shape == (1, model.feature_dim) and probs.shape == (1, len(FER_CLASSES))
    assert np.isclose(probs.sum(), 1.0, atol=1e-5) and np.all(probs > 0) and np.isfinite(features).all()
    # the same network through FerModel in memory gives the same numbers (load is faithful)
    again, _ = FerModel(model.network)(np.stack([d.face for d in detections]))
    assert np.allclose(again, features)


def test_video_frames_are_sampled_at_the_requested_rate(tmp_path, pocketsphinx):  # noqa: F811
    video, _, voiced = _video(tmp_path, pocketsphinx)
    times = [t for t, _ in video_frames(video, None, None, FPS, None)]
    assert len(times) == len(voiced) and np.allclose(np.diff(times), 1 / FPS)
    half = [t for t, _ in video_frames(video, 1.0, 2.0, FPS / 2, None)]
    assert np.allclose(half, [0.0, 0.2, 0.4, 0.6, 0.8])  # from 1 s, every other frame, until 2 s
    assert len(list(video_frames(video, None, None, FPS, 1.0))) == FPS  # clipped at max_seconds
    with pytest.raises(ItemError, match="missing file: video"):
        list(video_frames(str(tmp_path / "none.mp4"), None, None, FPS, None))
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ItemError, match="unreadable video .*broken.mp4"):
        list(video_frames(str(tmp_path / "broken.mp4"), None, None, FPS, None))


@pytest.mark.parametrize("vad_method", ["energy", "silero"])
@pytest.mark.parametrize("speaker_left", [True, False])
def test_active_speaker_is_the_face_whose_mouth_moves_with_the_voice(tmp_path, pocketsphinx, speaker_left,  # noqa: F811
                                                                    vad_method):
    from memobert_plugin.prepare.media.audio import read_audio

    if vad_method == "silero":
        pytest.importorskip("silero_vad", reason="silero-vad is not installed (pip install silero-vad)")
    video, wav, voiced = _video(tmp_path, pocketsphinx, speaker_left)
    detector = HaarFaceDetector()
    frames = list(video_frames(video, None, None, FPS, None))
    tracks = track_faces([detector.detect(gray, i) for i, (_, gray) in enumerate(frames)])
    assert sorted(len(t.detections) for t in tracks) == [len(voiced), len(voiced)]
    vad = load_voice_activity(vad_method).voiced(read_audio(wav), np.array([t for t, _ in frames]), 1 / FPS)
    assert (vad == voiced).mean() >= 0.9
    speaker = choose_speaker(tracks, vad)
    assert (speaker.detections[0].box[0] < 240) == speaker_left


def test_without_audio_the_largest_face_is_taken(tmp_path, pocketsphinx):  # noqa: F811
    video, _, _ = _video(tmp_path, pocketsphinx)
    detector = HaarFaceDetector()
    per_frame = [detector.detect(gray, i) for i, (_, gray) in enumerate(video_frames(video, None, None, FPS, None))]
    for detections in per_frame:  # make the right face smaller
        for d in detections:
            if d.box[0] > 240:
                d.box = (d.box[0], d.box[1], d.box[2] - 20, d.box[3] - 20)
    assert choose_speaker(track_faces(per_frame), None).detections[0].box[0] < 240
    assert choose_speaker([], None) is None


def test_visual_stage_on_video_folder_and_failures(tmp_path, pocketsphinx, tiny_fer):  # noqa: F811
    video, wav, voiced = _video(tmp_path, pocketsphinx, speaker_left=False)
    stage = VisualStage(tiny_fer, fps=FPS)
    assert stage.streams == {"visual": 27, "visual_fer": 8}
    out = stage.extract(Utterance(line=2, id="talk", text="t", audio=wav, video=video, start=0.8, end=2.4))
    assert out["visual"].shape == (16, 27) and out["visual_fer"].shape == (16, 8)
    assert np.allclose(out["visual_fer"].sum(axis=1), 1.0, atol=1e-5)

    folder = tmp_path / "faces"
    folder.mkdir()
    for i, (_, gray) in enumerate(list(video_frames(video, None, None, FPS, None))[:5]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), gray[44:144, 304:404])  # the right face, as a crop
    (folder / "notes.txt").write_text("not an image")
    out = stage.extract(Utterance(line=3, id="crops", text="t", video=str(folder)))
    assert out["visual"].shape == (5, 27)

    with pytest.raises(ItemError, match="no video frames between 9.0 s and the end in .*talk_False.mp4"):
        stage.extract(Utterance(line=4, id="late", text="t", video=video, start=9.0))
    blank = tmp_path / "blank"
    blank.mkdir()
    with pytest.raises(ItemError, match="no face: the face folder .*blank has no images"):
        stage.extract(Utterance(line=4, id="empty", text="t", video=str(blank)))
    with pytest.raises(ItemError, match="no video path"):
        stage.extract(Utterance(line=5, id="none", text="t"))
    write_video(str(tmp_path / "black.mp4"), [np.zeros((240, 320), np.uint8)] * 5)
    with pytest.raises(ItemError, match="no face detected in 5 frames of .*black.mp4"):
        stage.extract(Utterance(line=6, id="dark", text="t", video=str(tmp_path / "black.mp4")))
