"""Is memobert's behaviour unchanged between two trees? Bit-for-bit, on a small demo world.

    python benchmarks/behaviour_fingerprint.py --before 53b54e4            # that commit vs the working tree
    python benchmarks/behaviour_fingerprint.py --before 53b54e4 --after HEAD

Each tree (a commit's ``memobert_plugin`` unpacked with ``git archive``, as ``benchmarks/prepare.py`` does,
or the working tree) runs, in its own processes with that code first on ``PYTHONPATH`` and one thread:

1. ``fairseq-train --user-dir <tree>/memobert_plugin --task memobert_pretrain`` (memobert_tiny, a fixed
   seed, ``--pretrain-updates`` updates) on the demo world's pretraining split;
2. ``fairseq-train --task memobert_emotion --memobert-init`` that checkpoint (fold 1, ``--emotion-updates``
   updates, validated each epoch);
3. ``memobert-predict`` with the emotion checkpoint on a few of the
   emotion split's utterances (text and .npy features).

The demo world is written once, by the ``--before`` tree's generator (data an older version wrote must
still be read), and shared by both. The fingerprint of a tree is a SHA-256 of each checkpoint's parameters,
its logged losses and metrics, and the predicted class probabilities; the script prints both and says
``identical``, or lists each difference (the parameter tensors that differ and by how much, the first
differing log record, the predictions that differ). Exit status: 0 identical, 1 different.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHMARKS)

from prepare import REPO, archive_code  # noqa: E402  (benchmarks/prepare.py also puts REPO on sys.path)

BIN = os.path.dirname(sys.executable)
#: the demo world's size: the test suite's small one
WORLD = dict(seed=0, pretrain_utterances=160, labelled_scale=0.045)
PREDICTED = 8  # utterances given to memobert-predict
#: the logged numbers that depend on the computation (not on the clock)
_KEPT = ("loss", "acc", "agree", "uar", "wa", "f1", "num_updates", "epoch", "lr", "gnorm")


# memobert-predict's entry point in either tree: the --before commit may predate the inference package
# (module names spelt in two pieces, so that a layout move's rewrite of module names leaves them alone)
_PREDICT = ("import sys\n"
            "try:\n    from memobert_plugin." "inference.cli import main\n"
            "except ImportError:\n    from memobert_plugin." "predict_cli import main\n"
            "sys.argv[0] = 'memobert-predict'\nmain()")


def _run(command: List[str], code: str, cwd: str, what: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{what} with {code} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def _records(text: str) -> List[dict]:
    """fairseq's --log-format json records (train_inner, train, valid), clock-free fields only."""
    records = []
    for line in text.splitlines():
        for tag in ("train_inner", "train", "valid"):
            marker = f"| {tag} | "
            if marker in line:
                stats = json.loads(line.split(marker, 1)[1])
                records.append({"tag": tag, **{k: v for k, v in stats.items() if k.endswith(_KEPT)}})
    return records


def write_world(code: str, root: str) -> Dict[str, str]:
    """The demo world, written by ``code``'s generator; its pretraining and emotion data dirs."""
    os.makedirs(root, exist_ok=True)
    script = ("import sys, json; sys.modules['torchaudio'] = None\n"
              "from memobert_plugin.prepare.demo_corpus import write_demo_corpus\n"
              f"c = write_demo_corpus({root!r}, **{WORLD!r})\n"
              "print(json.dumps({'pretrain': c.pretrain_data, 'emotion': c.emotion_data}))")
    return json.loads(_run([sys.executable, "-c", script], code, root, "writing the demo world").stdout.splitlines()[-1])


def write_inputs(data: str, work: str) -> str:
    """memobert-predict's input TSV for the emotion split's first utterances: their text (decoded from the
    binarized tokens) and their face and voice features as .npy files."""
    import numpy as np
    from fairseq.data import data_utils

    from memobert_plugin.data.feature_store import FeatureStore
    from memobert_plugin.data.vocabulary import BertVocabulary

    folder = os.path.join(work, "inputs")
    os.makedirs(folder, exist_ok=True)

    vocab = BertVocabulary.load(os.path.join(data, "dict.txt"))
    tokens = data_utils.load_indexed_dataset(os.path.join(data, "all"), vocab)
    with open(os.path.join(data, "all.meta.tsv"), encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle, delimiter="\t")][:PREDICTED]
    rows = ["id\ttext\tvisual\tacoustic"]
    for index, name in enumerate(ids):
        pieces = [vocab[i] for i in tokens[index].tolist() if not vocab[i].startswith("[")]
        text = " ".join(pieces).replace(" ##", "")
        paths = []
        for stream in ("visual", "acoustic"):
            path = os.path.join(folder, f"{name}.{stream}.npy")
            np.save(path, np.asarray(FeatureStore(data, "all", stream)[index], dtype=np.float32))
            paths.append(path)
        rows.append("\t".join([name, text, *paths]))
    path = os.path.join(work, "inputs.tsv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")
    return path


def run_tree(code: str, world: Dict[str, str], inputs: str, out: str, args) -> Dict:
    """Pretrain, fine-tune and predict with ``code``'s memobert_plugin; what they left."""
    os.makedirs(out, exist_ok=True)
    found = _run([sys.executable, "-c", "import memobert_plugin; print(memobert_plugin.__file__)"], code, out,
                 "importing memobert_plugin").stdout.strip().splitlines()[-1]
    if not os.path.realpath(found).startswith(os.path.realpath(code) + os.sep):  # e.g. an install shadowing it
        sys.exit(f"memobert_plugin came from {found}, not {code}")
    plugin = os.path.join(code, "memobert_plugin")
    common = ["--user-dir", plugin, "--arch", "memobert_tiny", "--optimizer", "adam", "--lr", "1e-3",
              "--lr-scheduler", "fixed", "--batch-size", "16", "--num-workers", "0", "--seed", "1", "--cpu",
              "--log-format", "json", "--log-interval", "1"]
    pretrain, emotion = os.path.join(out, "pretrain"), os.path.join(out, "emotion")
    pretrained = _run([f"{BIN}/fairseq-train", world["pretrain"], "--task", "memobert_pretrain", "--criterion",
                       "memobert_pretrain", *common, "--max-update", str(args.pretrain_updates), "--save-dir", pretrain],
                      code, out, "pretraining")
    tuned = _run([f"{BIN}/fairseq-train", world["emotion"], "--task", "memobert_emotion", "--criterion",
                  "memobert_emotion", "--fold", "1", *common, "--max-update", str(args.emotion_updates),
                  "--memobert-init", os.path.join(pretrain, "checkpoint_last.pt"), "--save-dir", emotion],
                 code, out, "fine-tuning")
    predictions = os.path.join(out, "predictions.tsv")
    _run([sys.executable, "-c", _PREDICT, "--checkpoint", os.path.join(emotion, "checkpoint_last.pt"),
          "--input", inputs, "--output", predictions, "--no-progress"], code, out, "predicting")
    with open(predictions, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {"checkpoints": {"pretrain": os.path.join(pretrain, "checkpoint_last.pt"),
                            "emotion": os.path.join(emotion, "checkpoint_last.pt")},
            "logs": {"pretrain": _records(pretrained.stdout + pretrained.stderr),
                     "emotion": _records(tuned.stdout + tuned.stderr)},
            # the probabilities, by id and class (whatever else the predictions format holds)
            "predictions": {row["id"]: {k: v for k, v in row.items() if k.startswith("p_")} for row in rows}}


def _weights(path: str) -> Dict:
    from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only

    return load_checkpoint_weights_only(path)["model"]


def _digest(value) -> str:
    digest = hashlib.sha256()
    if isinstance(value, dict) and value and all(hasattr(v, "numpy") for v in value.values()):  # parameters
        for name, tensor in sorted(value.items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    else:
        digest.update(json.dumps(value, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def fingerprint(run: Dict) -> Dict[str, str]:
    return {**{f"{stage} parameters": _digest(_weights(path)) for stage, path in run["checkpoints"].items()},
            **{f"{stage} logged losses": _digest(records) for stage, records in run["logs"].items()},
            "predictions": _digest(run["predictions"])}


def differences(before: Dict, after: Dict) -> List[str]:
    """What differs, item by item."""
    found = []
    for stage in before["checkpoints"]:
        old, new = _weights(before["checkpoints"][stage]), _weights(after["checkpoints"][stage])
        for name in sorted(set(old) | set(new)):
            if name not in old or name not in new:
                found.append(f"{stage} parameters: {name} only {'after' if name in new else 'before'}")
            elif old[name].shape != new[name].shape:
                found.append(f"{stage} parameters: {name} shape {tuple(old[name].shape)} -> {tuple(new[name].shape)}")
            elif not bool((old[name] == new[name]).all()):
                change = (old[name].float() - new[name].float()).abs().max().item()
                found.append(f"{stage} parameters: {name} differs (max |diff| {change:.3g})")
    for stage in before["logs"]:
        old, new = before["logs"][stage], after["logs"][stage]
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), None)
        if first is not None:
            found.append(f"{stage} log record {first}: {old[first]} -> {new[first]}")
        elif len(old) != len(new):
            found.append(f"{stage} log: {len(old)} records -> {len(new)}")
    for name in sorted(set(before["predictions"]) | set(after["predictions"])):
        old, new = before["predictions"].get(name), after["predictions"].get(name)
        if old != new:
            found.append(f"predictions of {name}: {old} -> {new}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a git commit (e.g. 53b54e4)")
    parser.add_argument("--after", default=None, help="a git commit (default: the working tree)")
    parser.add_argument("--pretrain-updates", type=int, default=8)
    parser.add_argument("--emotion-updates", type=int, default=6)
    parser.add_argument("--work", default=None, help="folder for the trees, the world and the runs (default: a "
                        "temporary one, removed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memobert-fingerprint-") as scratch:
        work = os.path.abspath(args.work or scratch)
        trees = {"before": archive_code(args.before, os.path.join(work, "before-code")),
                 "after": archive_code(args.after, os.path.join(work, "after-code")) if args.after else REPO}
        world = write_world(trees["before"], os.path.join(work, "world"))
        inputs = write_inputs(world["emotion"], work)
        runs = {name: run_tree(code, world, inputs, os.path.join(work, name), args) for name, code in trees.items()}
        prints = {name: fingerprint(run) for name, run in runs.items()}
        labels = {"before": args.before, "after": args.after or "working tree"}
        for item in prints["before"]:
            print(f"{item:26s} {labels['before']}: {prints['before'][item]}   {labels['after']}: {prints['after'][item]}")
        found = differences(runs["before"], runs["after"])
    print("identical" if not found else "different:\n  " + "\n  ".join(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
