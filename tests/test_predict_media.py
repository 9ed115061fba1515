"""Real media in, emotions out: real speech (pocketsphinx-testdata), synthetic voices (espeak-ng) and a real
face made into a video (scikit-image's astronaut), prepared, trained on, bundled and predicted end to end
with small randomly initialised wav2vec 2.0 and FER checkpoints."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("cv2", reason="the extractors need the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the extractors need the 'extract' extra (av)")
pytest.importorskip("skimage", reason="the astronaut photo comes from scikit-image (test extra)")

from conftest import BIN, PLUGIN_DIR, run_cli  # noqa: E402
from memobert_plugin.inference.bundle import MODEL_FILE  # noqa: E402
from memobert_plugin.data.feature_store import FeatureStore  # noqa: E402
from memobert_plugin.inference.predictor import EmotionPredictor, UtteranceFeatures, media_entry  # noqa: E402
from prepare_material import FPS, astronaut_gray, pocketsphinx, speech_utterances, tiny_fer  # noqa: E402,F401
from prepare_material import prepare_here, read_tsv, tiny_wav2vec2, write_manifest, write_video  # noqa: E402,F401

pytestmark = pytest.mark.slow  # prepares, trains and predicts: minutes on 2 loaded cores

PREDICT = [sys.executable, "-m", "memobert_plugin.inference.cli"]
BUNDLE = [sys.executable, "-m", "memobert_plugin.inference.bundle"]
LABELS = ("anger", "happy", "neutral", "sad")
_ESPEAK_VOICES = ("en-gb", "en-us", "en-gb-scotland")
_ESPEAK_LINES = ("I cannot believe you did that again.", "What a lovely surprise, thank you so much.",
                 "The meeting is moved to Tuesday.", "I miss the old days with all of you.")


def _espeak(path: str, voice: str, text: str) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-w", path, text], check=True, capture_output=True)


def _astronaut_video(path: str, frames: int = 20) -> None:
    """The astronaut's face, still for half the clip and then drifting right (detections must follow it)."""
    photo = astronaut_gray()
    shifts = [0] * (frames // 2) + [4 * i for i in range(frames - frames // 2)]
    write_video(path, [photo[20:260, 110 - s: 350 - s] for s in shifts], fps=FPS)  # the window moves left


@pytest.fixture(scope="module")
def media(tmp_path_factory, pocketsphinx):  # noqa: F811
    """A manifest of real recordings, espeak-ng voices and astronaut videos, one label per utterance."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("media")
    rows = [{"id": u["id"], "speaker": u["speaker"], "text": u["text"], "audio": u["wav"]}
            for u in speech_utterances(pocketsphinx)]
    for v, voice in enumerate(_ESPEAK_VOICES):
        for i, line in enumerate(_ESPEAK_LINES):
            _espeak(str(root / f"{voice}-{i}.wav"), voice, line)
            rows.append({"id": f"{voice}-{i}", "speaker": voice, "text": line, "audio": f"{voice}-{i}.wav"})
    for i in range(3):
        _astronaut_video(str(root / f"astronaut-{i}.mp4"))
        _espeak(str(root / f"astronaut-{i}.wav"), "en-us", _ESPEAK_LINES[i])
        rows.append({"id": f"astronaut-{i}", "speaker": "astronaut", "text": _ESPEAK_LINES[i],
                     "audio": f"astronaut-{i}.wav", "video": f"astronaut-{i}.mp4", "start": 0, "end": 1.5})
    for i, row in enumerate(rows):
        row["label"] = LABELS[i % len(LABELS)]
    columns = ["id", "speaker", "session", "label", "text", "audio", "video", "start", "end"]
    return {"root": root, "rows": rows, "manifest": write_manifest(str(root / "manifest.tsv"), rows, columns)}


@pytest.fixture(scope="module")
def trained(media, tiny_wav2vec2, tiny_fer, minilm_dir, tmp_path_factory):  # noqa: F811
    """The media prepared as split ``all``, an emotion model trained on it for 2 updates, and its bundle."""
    work = tmp_path_factory.mktemp("trained")
    data = work / "data"
    error = prepare_here("all", "--manifest", media["manifest"], "--out", data, "--split", "all",
                         "--vocab", f"{minilm_dir}/vocab.txt", "--wav2vec2", tiny_wav2vec2["fairseq"],
                         "--fer-model", tiny_fer, "--fps", FPS, "--require", "text,acoustic")
    assert not error, error
    run_cli([f"{BIN}/fairseq-train", str(data), "--user-dir", PLUGIN_DIR, "--task", "memobert_emotion",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam",
             "--lr", "1e-3", "--max-update", "2", "--batch-size", "8", "--num-workers", "0", "--seed", "1",
             "--cpu", "--disable-validation", "--save-dir", str(work / "ckpt")])
    checkpoint = str(work / "ckpt" / "checkpoint_last.pt")
    bundle = str(work / "model.bundle")
    run_cli([*BUNDLE, checkpoint, "--out", bundle])
    return {"data": data, "checkpoint": checkpoint, "bundle": bundle}


def _prepared_features(data, texts) -> dict:
    """id -> UtteranceFeatures with the text and the features memobert-prepare stored for it."""
    meta = read_tsv(data / "all.meta.tsv")
    stores = {s: FeatureStore(str(data), "all", s) for s in ("acoustic", "visual")}
    return {row["id"]: UtteranceFeatures(text=texts[row["id"]], id=row["id"],
                                             frames={s: store[i].astype(np.float32) for s, store in stores.items()})
            for i, row in enumerate(meta)}


def _probabilities(stdout: str) -> dict:
    header, *rows = [line.split("\t") for line in stdout.splitlines()]
    assert header == ["id", "gold", "predicted", *(f"p_{c}" for c in LABELS), "problems"]
    return {row[0]: np.array(row[3:-1], dtype=np.float64) for row in rows}


def test_bundle_is_self_contained(trained, tmp_path):
    bundle = shutil.copytree(trained["bundle"], tmp_path / "moved.bundle")
    data = str(trained["data"])
    for name in os.listdir(bundle):
        assert data.encode() not in (bundle / name).read_bytes(), f"{name} names the training data dir"
    assert torch.load(bundle / MODEL_FILE, weights_only=True)["cfg"]["task"]["data"] == ""
    shutil.move(data, data + ".gone")  # prediction must not need the training data any more
    try:
        predictor = EmotionPredictor(str(bundle))
        assert predictor.class_names == list(LABELS)
        assert predictor.extractors.media_stages == ["visual", "acoustic"]  # in declaration order
    finally:
        shutil.move(data + ".gone", data)


def test_manifest_prediction_uses_the_training_extractors(trained, media):
    """memobert-predict on the raw media gives the probabilities of the features memobert-prepare stored."""
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--manifest", media["manifest"], "--batch-size", "5"])
    predicted = _probabilities(proc.stdout)
    assert list(predicted) == [row["id"] for row in media["rows"]]
    assert "extract: 100%" in proc.stderr  # the progress bar
    stored = _prepared_features(trained["data"], {row["id"]: row["text"] for row in media["rows"]})
    assert len(stored) == len(media["rows"])
    expected = EmotionPredictor(trained["checkpoint"]).predict_proba(list(stored.values()))
    for uid, probs in zip(stored, expected):
        assert np.allclose(predicted[uid], probs, atol=2e-6), uid
    faces = stored["astronaut-0"].frames["visual"]
    assert len(faces) == 15  # 1.5 s at 10 frames a second, a face in each: the moving face was followed


def _entries(media):
    from memobert_plugin.prepare.manifest import read_manifest

    return list(read_manifest(media["manifest"]))


def test_single_files_give_the_manifest_rows_probabilities(trained, media):
    root = media["root"]
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--audio", root / "astronaut-1.wav", "--video",
                    root / "astronaut-1.mp4", "--text", _ESPEAK_LINES[1], "--end", "1.5", "--id", "a1",
                    "--no-progress"])
    single = _probabilities(proc.stdout)["a1"]
    predictor = EmotionPredictor(trained["bundle"])
    (row,) = predictor.predict_proba(predictor.extract([e for e in _entries(media) if e.id == "astronaut-1"]))
    assert np.allclose(single, row, atol=2e-6) and proc.stderr == ""
    # text alone, and a video without a face: predicted, the missing face named on stderr
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--text", "so happy", "--no-progress"])
    assert list(_probabilities(proc.stdout)) == ["input"]
    dark = str(root / "dark.mp4")
    write_video(dark, [np.zeros((96, 128), np.uint8)] * 5)
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--video", dark, "--no-progress"])
    assert list(_probabilities(proc.stdout)) == ["input"]
    assert "memobert-predict: warning: input: visual: no face detected in 5 frames" in proc.stderr


def test_a_different_extractor_is_refused(trained, media, tiny_wav2vec2, tiny_fer, tmp_path):  # noqa: F811
    other_w2v = tmp_path / "other.pt"
    state = torch.load(tiny_wav2vec2["fairseq"], weights_only=False)
    state["model"] = {k: v + 0.01 for k, v in state["model"].items()}
    torch.save(state, other_w2v)
    other_fer = tmp_path / "other_fer.pt"
    fer = torch.load(tiny_fer, weights_only=True)
    fer["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in fer["model"].items()}
    torch.save(fer, other_fer)
    for option, path, stage in (("--wav2vec2", other_w2v, "acoustic"), ("--fer-model", other_fer, "visual")):
        proc = run_cli([*PREDICT, "--model", trained["bundle"], "--manifest", media["manifest"], option, path],
                       check=False)
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert f"memobert-predict: error: {option} {path}: not the {stage} extractor the model was trained with " \
               "(sha256: " in proc.stderr, proc.stderr
    # the same checkpoint at another path is accepted
    same = tmp_path / "same.pt"
    shutil.copyfile(tiny_wav2vec2["fairseq"], same)
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--text", "hello", "--audio", media["rows"][0]["audio"],
                    "--wav2vec2", same, "--no-progress"])
    assert list(_probabilities(proc.stdout)) == ["input"]
