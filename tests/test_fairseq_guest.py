"""Issue 23: memobert is a guest in fairseq. With memobert registered and passed as --user-dir, fairseq trains,
stops, resumes (checkpoint_last.pt, --restore-file), validates and loads a non-memobert model (language_modeling,
masked_lm) exactly as a process without memobert does: the same logged losses, the same parameters, the same
files (no lock file of memobert's in the save dir)."""

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import PLUGIN_DIR
from fairseq_guest import TASKS, session
from memobert_plugin.output_lock import LOCK_NAME

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    """A tiny binarized text corpus (fairseq-preprocess --only-source)."""
    from fairseq import options
    from fairseq_cli import preprocess

    root = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    for split, lines in (("train", 120), ("valid", 60)):
        (root / f"{split}.txt").write_text("".join(
            " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "\n" for _ in range(lines)))
    data = root / "bin"
    args = options.get_preprocessing_parser().parse_args([
        "--only-source", "--trainpref", str(root / "train.txt"), "--validpref", str(root / "valid.txt"),
        "--destdir", str(data), "--workers", "1"])
    preprocess.main(args)
    return str(data)


@pytest.fixture(scope="module")
def without_memobert(text_data, tmp_path_factory):
    """Each task's session in a process that never imports memobert, started at once (they run beside the tests)."""
    runs = {}
    for task in TASKS:
        root = tmp_path_factory.mktemp(f"plain-{task}")
        runs[task] = subprocess.Popen([sys.executable, os.path.join(HERE, "fairseq_guest.py"), task, text_data, str(root)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=dict(os.environ, OMP_NUM_THREADS="1"))
    yield runs
    for proc in runs.values():
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("task", list(TASKS))
def test_fairseq_work_is_unchanged_beside_memobert(task, text_data, without_memobert, tmp_path):
    with_memobert = session(task, text_data, str(tmp_path), extra=["--user-dir", PLUGIN_DIR])
    stdout, stderr = without_memobert[task].communicate(timeout=600)
    assert without_memobert[task].returncode == 0, stderr[-3000:]
    plain = json.loads(stdout.strip().splitlines()[-1])
    assert with_memobert["memobert_imported"] and not plain["memobert_imported"]
    assert sum("valid_loss" in r for r in plain["records"]) >= 1 and plain["records"][-1]["valid_loss"]  # validated
    assert sum("num_updates" in r for r in plain["records"]) >= 10  # 4 + 2 + 4 updates logged
    assert with_memobert["records"] == plain["records"]
    assert with_memobert["checkpoints"] == plain["checkpoints"]
    assert with_memobert["loaded"] == plain["loaded"] == plain["checkpoints"][os.path.join("first", "checkpoint_last.pt")]
    assert with_memobert["files"] == plain["files"]
    assert not any(LOCK_NAME in f for f in with_memobert["files"])
