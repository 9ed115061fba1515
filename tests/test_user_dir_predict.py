"""Issue 23 items 4 and 5 end to end: the user_dir extension's valence task, trained with its prosody stream,
bundled and served from features and from audio (through the stream's own extractor), whatever order the
extension, the tasks and the predictor are imported in. Nothing in memobert_plugin/ names the extension."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BIN, REPO_ROOT, run_cli
from prepare_material import with_text_extractor

pytest.importorskip("soundfile", reason="reading audio needs the 'extract' extra (soundfile)")
pytestmark = pytest.mark.slow  # trains, bundles and predicts in several processes: ~1 min on 2 loaded cores

USER_DIR = os.path.join(REPO_ROOT, "user_dir")
PREDICT = [sys.executable, "-m", "memobert_plugin.inference.cli", "--user-dir", USER_DIR, "--no-progress"]
VALENCE = ["negative", "neutral", "positive"]
SERVED = 6  # utterances predicted from media and from features

# Run in a child process (the test process keeps its stream registry as the other tests expect): writes a voice
# per utterance of the data dir's 'all' split, its prosody stream through the extension's extractor, the
# extractor's record in dataset.json, and a manifest (media) and an input TSV (the stored features) for SERVED.
_PROSODY_DATA = r"""
import os, sys, wave
import numpy as np
from memobert_plugin.data.feature_store import FeatureStore, FeatureStoreWriter
from memobert_plugin.files import read_json, write_json
from memobert_plugin.inference.predictor import media_entry
from user_dir.prosody_extractor import ProsodyStage

data, media, served = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(media, exist_ok=True)
rng = np.random.default_rng(0)
stage = ProsodyStage()
writer = FeatureStoreWriter(data, "all", "prosody", 25)
for i in range(len(FeatureStore(data, "all", "acoustic"))):
    t = np.arange(int(16000 * rng.uniform(0.3, 1.4))) / 16000
    f0 = rng.uniform(90, 280) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 5)) * rng.uniform(0.05, 0.4) + rng.normal(0, 0.01, len(t))
    path = os.path.join(media, f"u{i}.wav")
    with wave.open(path, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((np.clip(voice, -1, 1) * 32767).astype("<i2").tobytes())
    writer.append(stage.extract(media_entry(f"u{i}", audio=path))["prosody"], item=f"u{i}")
writer.close()
dataset = read_json(os.path.join(data, "dataset.json"))
dataset["splits"]["all"]["extractors"]["prosody"] = stage.config()
write_json(os.path.join(data, "dataset.json"), dataset)
stored = FeatureStore(data, "all", "prosody")
with open(os.path.join(media, "manifest.tsv"), "w") as manifest, open(os.path.join(media, "input.tsv"), "w") as given:
    manifest.write("id\ttext\taudio\n")
    given.write("id\ttext\tprosody\n")
    for i in range(served):
        np.save(os.path.join(media, f"u{i}.prosody.npy"), np.asarray(stored[i], np.float32))
        manifest.write(f"u{i}\ti am so glad\tu{i}.wav\n")
        given.write(f"u{i}\ti am so glad\tu{i}.prosody.npy\n")
"""


@pytest.fixture(scope="module")
def served(demo_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("user_dir_served")
    data = with_text_extractor(demo_corpus.emotion_data, root / "data")
    media = str(root / "media")
    run_cli([sys.executable, "-c", _PROSODY_DATA, data, media, str(SERVED)], cwd=REPO_ROOT)
    run_cli([f"{BIN}/fairseq-train", data, "--user-dir", USER_DIR, "--task", "memobert_valence",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam",
             "--lr", "1e-3", "--max-update", "2", "--batch-size", "16", "--num-workers", "0", "--seed", "1", "--cpu",
             "--disable-validation", "--prosody-max-frames", "20", "--save-dir", str(root / "ckpt")])
    bundle = str(root / "valence.bundle")
    run_cli([sys.executable, "-m", "memobert_plugin.inference.bundle", str(root / "ckpt" / "checkpoint_last.pt"), "--out", bundle,
             "--user-dir", USER_DIR])
    from_features = run_cli([*PREDICT, "--model", bundle, "--input", f"{media}/input.tsv"]).stdout
    return {"media": media, "bundle": bundle, "from_features": _table(from_features)}


def _table(stdout: str) -> dict:
    header, *rows = [line.split("\t") for line in stdout.splitlines()]
    assert header == ["id", "gold", "predicted", *(f"p_{c}" for c in VALENCE), "problems"]
    assert all(row[-1] == "" for row in rows), rows
    return {row[0]: np.array(row[3:-1], dtype=np.float64) for row in rows}


def test_served_from_audio_through_the_streams_own_extractor(served):
    media = served["media"]
    from_audio = _table(run_cli([*PREDICT, "--model", served["bundle"], "--manifest", f"{media}/manifest.tsv"]).stdout)
    from_features = served["from_features"]
    assert list(from_audio) == [f"u{i}" for i in range(SERVED)] == list(from_features)
    for uid, probs in from_features.items():
        assert np.allclose(from_audio[uid], probs, atol=2e-6), uid
    # the prosody frames are read: without them the same texts score alike
    assert len({tuple(p.round(6)) for p in from_features.values()}) > 1
    single = _table(run_cli([*PREDICT, "--model", served["bundle"], "--text", "i am so glad", "--audio",
                             f"{media}/u1.wav", "--id", "u1"]).stdout)
    assert np.allclose(single["u1"], from_features["u1"], atol=2e-6)


_ORDERS = {
    "extension, then the predictor": "import user_dir\nfrom memobert_plugin.inference.predictor import EmotionPredictor",
    "predictor, then the extension": "from memobert_plugin.inference.predictor import EmotionPredictor\nimport user_dir",
    "a config class kept from before the extension":
        "from memobert_plugin.tasks import MemobertEmotionConfig\nimport user_dir\n"
        "from memobert_plugin.inference.predictor import EmotionPredictor",
}
_SCORE = r"""
import json, sys
import numpy as np
from memobert_plugin.inference.predictor import UtteranceFeatures
bundle, media = sys.argv[1], sys.argv[2]
predictor = EmotionPredictor(bundle)
utterances = [UtteranceFeatures(text="i am so glad", id=f"u{i}", frames={"prosody": np.load(f"{media}/u{i}.prosody.npy")})
              for i in range(int(sys.argv[3]))]
print(json.dumps({"classes": predictor.class_names, "probs": predictor.predict_proba(utterances).tolist(),
                  "prosody_max_frames": predictor.task.cfg.prosody_max_frames}))
"""


@pytest.mark.parametrize("order", list(_ORDERS))
def test_any_import_order_serves_the_current_options(served, order):
    media = served["media"]
    proc = subprocess.run([sys.executable, "-c", _ORDERS[order] + _SCORE, served["bundle"], media, str(SERVED)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert scored["classes"] == VALENCE and scored["prosody_max_frames"] == 20  # the trained option, not a default
    assert np.allclose(scored["probs"], list(served["from_features"].values()), atol=2e-6)
