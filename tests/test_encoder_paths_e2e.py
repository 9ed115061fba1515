"""Each new extractor path end to end on real media (pocketsphinx-testdata speech, scikit-image's
astronaut as a video): memobert-prepare with a small random encoder of the family, a few updates of
fairseq-train --user-dir, a bundle, and prediction from the raw media through the bundle's
extractors giving the probabilities of the features memobert-prepare stored. Data prepared with a
vision encoder and no FER model also pretrains, span_mvfc_kl left out with one message."""

import json

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the extractors need the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the extractors need the 'extract' extra (av)")
pytest.importorskip("skimage", reason="the astronaut photo comes from scikit-image (test extra)")

from conftest import BIN, PLUGIN_DIR, run_cli  # noqa: E402
from memobert_plugin.inference.bundle import save_bundle  # noqa: E402
from memobert_plugin.data.feature_store import FeatureStore  # noqa: E402
from memobert_plugin.prepare.feature_stats import stats_of  # noqa: E402
from memobert_plugin.inference.predictor import EmotionPredictor, UtteranceFeatures  # noqa: E402
from memobert_plugin.prepare.manifest import read_manifest  # noqa: E402
from prepare_material import FPS, astronaut_gray, pocketsphinx, prepare_here, read_tsv, speech_utterances  # noqa: E402,F401
from prepare_material import tiny_fer, tiny_speech_encoder, tiny_vision_encoder, write_manifest, write_video  # noqa: E402,F401

pytestmark = pytest.mark.slow  # prepares, trains and predicts once per path: 40 s to 3 min each on 2 heavily loaded cores

LABELS = ("anger", "happy", "neutral", "sad")
#: (speech encoder family, vision encoder family, extra memobert-prepare options): every new family once
PATHS = [
    ("hubert", "vit", ["--layer", "1-2", "--pool", "utterance"]),
    ("wavlm", "clip_vision_model", []),
    ("data2vec-audio", "clip", ["--layer", "2"]),
    ("whisper", "vit", []),
    ("fairseq-hubert", None, ["--layer", "1,3"]),
    ("fairseq-data2vec_audio", None, []),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory, pocketsphinx):  # noqa: F811
    root = tmp_path_factory.mktemp("media")
    speech = speech_utterances(pocketsphinx)
    rows = [{"id": u["id"], "speaker": u["speaker"], "text": u["text"], "audio": u["wav"], "end": 3}
            for u in speech[:8]]
    photo = astronaut_gray()
    for i in range(2):
        write_video(str(root / f"astronaut-{i}.mp4"), [photo[20:260, 110 - 3 * f: 350 - 3 * f] for f in range(12)],
                    fps=FPS)
        rows.append({"id": f"astronaut-{i}", "speaker": "astronaut", "text": speech[i]["text"],
                     "audio": speech[i]["wav"], "video": str(root / f"astronaut-{i}.mp4"), "start": 0, "end": 1.2})
    for i, row in enumerate(rows):
        row["label"] = LABELS[i % len(LABELS)]
    columns = ["id", "speaker", "label", "text", "audio", "video", "start", "end"]
    return {"rows": rows, "manifest": write_manifest(str(root / "manifest.tsv"), rows, columns)}


def _stored(data, rows) -> list:
    meta = read_tsv(data / "all.meta.tsv")
    texts = {row["id"]: row["text"] for row in rows}
    stores = {s: FeatureStore(str(data), "all", s) for s in ("acoustic", "visual")}
    return [UtteranceFeatures(text=texts[row["id"]], id=row["id"],
                      frames={s: store[i].astype(np.float32) for s, store in stores.items() if len(store[i])})
            for i, row in enumerate(meta)]


@pytest.mark.parametrize("speech,vision,options", PATHS, ids=[p[0] for p in PATHS])
def test_prepared_store_trains_and_predicts(speech, vision, options, media, minilm_dir, tiny_fer, tmp_path):  # noqa: F811
    models = tmp_path / "models"
    models.mkdir()
    speech_path = tiny_speech_encoder(speech, str(models))[0]
    visual = ["--vision-encoder", tiny_vision_encoder(vision, str(models))] if vision else ["--fer-model", tiny_fer]
    data = tmp_path / "data"
    error = prepare_here("all", "--manifest", media["manifest"], "--out", data, "--split", "all", "--vocab",
                         f"{minilm_dir}/vocab.txt", "--speech-encoder", speech_path, *visual, *options,
                         "--fps", FPS, "--vad", "energy", "--require", "text,acoustic")
    assert not error, error
    dataset = json.loads((data / "dataset.json").read_text())
    extractors = dataset["splits"]["all"]["extractors"]
    assert extractors["acoustic"]["extractor"] == speech.split("fairseq-")[-1].replace("-", "_")
    assert dataset["dims"]["acoustic"] == 32 and dataset["dims"]["visual"] == (32 if vision else 27)
    assert ("visual_fer" in dataset["dims"]) == (vision is None)

    run_cli([f"{BIN}/fairseq-train", str(data), "--user-dir", PLUGIN_DIR, "--task", "memobert_emotion",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam",
             "--lr", "1e-3", "--max-update", "2", "--batch-size", "4", "--num-workers", "0", "--seed", "1",
             "--cpu", "--disable-validation", "--save-dir", str(tmp_path / "ckpt")])
    bundle = save_bundle(str(tmp_path / "ckpt" / "checkpoint_last.pt"), str(tmp_path / "model.bundle"))
    predictor = EmotionPredictor(bundle)
    extracted = predictor.extract(list(read_manifest(media["manifest"])))
    stored = _stored(data, media["rows"])
    assert [u.id for u in extracted] == [u.id for u in stored]
    for mine, theirs in zip(extracted, stored):
        assert set(mine.frames) == set(theirs.frames), mine.id
        for stream in mine.frames:
            # on the extractor's scale: batching moves a raw value by up to 1e-3, plus the float16 rounding
            # (up to 2 ulps: stored, then standardised) of the standardised value, times the dimension's std
            std = np.asarray(stats_of(predictor.extractors.extractors[stream], stream).std, np.float32)
            ours, kept = mine.frames[stream].astype(np.float32), np.asarray(theirs.frames[stream], np.float32)
            assert (np.abs(ours - kept) * std <= 1e-3 + 2.0 ** -9 * np.abs(kept) * std).all(), (mine.id, stream)
    probs = predictor.predict_proba(extracted)
    assert probs.shape == (len(stored), len(LABELS)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(probs, predictor.predict_proba(stored), atol=2e-6)
    if "--pool" in options:  # one frame per utterance
        assert all(len(u.frames["acoustic"]) == 1 for u in stored)


def test_pretraining_without_a_fer_model_leaves_out_span_mvfc_kl(media, minilm_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    speech_path = tiny_speech_encoder("wavlm", str(models))[0]
    data = tmp_path / "data"
    error = prepare_here("all", "--manifest", media["manifest"], "--out", data, "--vocab", f"{minilm_dir}/vocab.txt",
                         "--speech-encoder", speech_path, "--vision-encoder", tiny_vision_encoder("vit", str(models)),
                         "--fps", FPS, "--vad", "energy", "--labels", "none")
    assert not error, error
    proc = run_cli([f"{BIN}/fairseq-train", str(data), "--user-dir", PLUGIN_DIR, "--task", "memobert_pretrain",
                    "--criterion", "memobert_pretrain", "--arch", "memobert_tiny", "--optimizer", "adam",
                    "--lr", "1e-3", "--max-update", "2", "--batch-size", "4", "--num-workers", "0", "--seed", "1",
                    "--cpu", "--disable-validation", "--save-dir", str(tmp_path / "ckpt")])
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "span_mvfc_kl" in line and "left out" in line]
    assert len(said) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").is_file()
