"""Issue 8: kill -9 during a ``memobert-cv run`` sweep; the rerun skips the finished fold, resumes the
interrupted one from its checkpoint_last.pt and ends with the uninterrupted sweep's results."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli, wait_until

FOLD = os.path.join("demo", "direct", "frac1", "seed1", "fold{}")


def _sweep(data, out):
    return [sys.executable, "-m", "memobert_plugin.evaluation.cli", "run", "--out", out, "--corpus", f"demo={data}",
            "--settings", "direct", "--folds", "1,2", "--seeds", "1", "--arch", "memobert_tiny", "--lr", "1e-3",
            "--max-epoch", "3", "--batch-size", "16"]


def _state(pid):
    """The process's state letter (Z: exited, not yet reaped), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _read(path):
    with open(path) as handle:
        return handle.read()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_during_a_cv_sweep_resumes_to_the_same_results(demo_corpus, tmp_path):
    reference, killed = str(tmp_path / "uninterrupted"), str(tmp_path / "killed")
    run_cli(_sweep(demo_corpus.emotion_data, reference))

    interrupted_fold = os.path.join(killed, FOLD.format(2))
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_sweep(demo_corpus.emotion_data, killed), stdout=log, stderr=subprocess.STDOUT)
        try:  # fold 1 finished, fold 2 one epoch into training
            last = os.path.join(interrupted_fold, "checkpoints", "checkpoint_last.pt")
            wait_until(lambda: os.path.exists(last), proc, tmp_path / "killed.log", timeout=600, what=last)
            trainers = [int(pid) for pid in _read(f"/proc/{proc.pid}/task/{proc.pid}/children").split()]
        finally:
            proc.send_signal(signal.SIGKILL)  # the sweep process only, as `kill -9 PID` does
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and len(trainers) == 1
    # its fairseq-train dies with it, rather than training on beside the rerun in the same directory
    time.sleep(2)
    assert _state(trainers[0]) in (None, "Z")
    finished = os.path.join(killed, FOLD.format(1))
    assert os.path.exists(os.path.join(finished, "result.json"))
    assert not os.path.exists(os.path.join(interrupted_fold, "result.json"))
    finished_log = _read(os.path.join(finished, "train.log"))

    run_cli(_sweep(demo_corpus.emotion_data, killed))
    assert _read(os.path.join(finished, "train.log")) == finished_log  # skipped: its result.json was there
    rerun_training = _read(os.path.join(interrupted_fold, "train.log")).split("$ ")[-2]
    assert re.search(r"Loaded checkpoint \S+/checkpoint_last\.pt \(epoch 2 @ \d+ updates\)", rerun_training)
    for fold in (1, 2):
        expected = json.loads(_read(os.path.join(reference, FOLD.format(fold), "result.json")))
        got = json.loads(_read(os.path.join(killed, FOLD.format(fold), "result.json")))
        assert got["test"] == expected["test"]
    assert _read(os.path.join(killed, "results.csv")) == _read(os.path.join(reference, "results.csv"))
