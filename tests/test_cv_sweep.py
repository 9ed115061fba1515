"""memobert-cv as a researcher watches it: live train.log, a line per validation, an h:mm ETA,
--keep-going past a failed fold, per-utterance predictions, per-class results, --train-final."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import wait_until

ROW = os.path.join("demo", "direct")


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


@pytest.mark.slow
def test_sweep_streams_keeps_going_and_trains_a_final_model(demo_corpus, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    out = str(tmp_path / "cv")
    command = [sys.executable, "-m", "memobert_plugin.evaluation.cli", "run", "--out", out,
               "--corpus", f"demo={demo_corpus.emotion_data}", "--settings", "pretrain_prompt,direct",
               "--pretrained", str(broken), "--folds", "2", "--seeds", "1", "--arch", "memobert_tiny", "--lr", "1e-3",
               "--max-epoch", "2", "--batch-size", "16", "--keep-going", "--train-final"]
    fold = os.path.join(out, ROW, "frac1", "seed1", "fold2")
    sweep_log = tmp_path / "sweep.log"
    with open(sweep_log, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            # the fold's first validation reaches its train.log while the fold is still training
            train_log = os.path.join(fold, "train.log")
            wait_until(lambda: os.path.exists(train_log) and "| valid | " in _read(train_log),
                       proc, sweep_log, timeout=900, what="a validation in the fold's train.log")
            assert "done training" not in _read(train_log)  # fairseq-train is still at it: the log streams
            proc.wait(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = _read(sweep_log)
    assert proc.returncode == 1, text
    # the broken pretrain_prompt jobs failed, the direct ones ran anyway and the failures are listed
    assert re.search(r"2 fold job\(s\) failed:\n  demo pretrain_prompt frac 1 seed 1 fold 2: .*fairseq-train failed", text)
    assert "demo pretrain_prompt frac 1 seed 1 final model: " in text
    for epoch in (1, 2):
        assert re.search(rf"demo direct frac 1 seed 1 fold 2 epoch {epoch}: valid UAR \d\.\d{{4}}", text)
    assert re.search(r"\[3/4\] demo direct frac 1 seed 1 fold 2: test WA \S+ UAR \S+ macro-F1 \S+ \| ETA 0:\d\d", text)

    result = json.loads(_read(os.path.join(fold, "result.json")))["test"]
    with open(os.path.join(fold, "test_predictions.tsv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    classes = result["classes"]
    assert list(rows[0]) == ["id", "gold", "predicted", *(f"p_{c}" for c in classes), "problems"]
    assert all(row["id"].startswith("Ses01M_") for row in rows)  # fold 2 tests the second speaker by name
    counts = [[sum(r["gold"] == g and r["predicted"] == p for r in rows) for p in classes] for g in classes]
    assert result["confusion"] == counts and sum(map(sum, counts)) == len(rows)
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4) and classes[probs.index(max(probs))] == row["predicted"]
    assert set(result["per_class"]) == set(classes) and {"macro_f1", "weighted_f1"} <= set(result)

    final = os.path.join(out, ROW, "final", "seed1")
    record = json.loads(_read(os.path.join(final, "final.json")))
    assert record["fold"] == 0 and "valid" in record and "test" not in record
    assert os.path.exists(os.path.join(final, "checkpoints", "checkpoint_best.pt"))  # kept for deployment
    assert "validation Ses05M" in _read(os.path.join(final, "train.log"))  # the last speaker by name validates
    assert not os.path.exists(os.path.join(fold, "checkpoints", "checkpoint_best.pt"))
    figures = os.listdir(os.path.join(out, "confusion"))
    assert figures == ["demo_direct_frac1.png"]
    assert "#### demo / direct: per class" in _read(os.path.join(out, "results.md"))
