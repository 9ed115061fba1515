"""Issue 12: one writer per output. Two commands on the same output at once: the second stops at once,
naming the directory and the process holding it; checkpoint writes use per-process temporary names
and leave nothing behind when they fail (a full disk)."""

import errno
import os
import signal
import subprocess
import sys

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from conftest import BIN, run_cli, wait_until
from memobert_plugin.fairseq_patches import mark_memobert_save_dir
from memobert_plugin.output_lock import LOCK_NAME, OutputBusyError, lock_output_dir, output_lock
from prepare_material import prepare_here

HOLD_LOCK = """
import sys, time
from memobert_plugin.output_lock import lock_output_dir
lock_output_dir(sys.argv[1], "a test's output")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def held(tmp_path):
    """A directory whose lock another process holds; yields (directory, that process)."""
    directory = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "locked\n"
        yield directory, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_held_directory_is_refused_with_the_holder_named(held):
    directory, proc = held
    with pytest.raises(OutputBusyError, match=rf"{directory}: this output is being written by another process "
                                              rf"\(pid {proc.pid}\); wait for it to finish"):
        lock_output_dir(str(directory), "this output")


def test_the_lock_goes_with_its_holder_even_on_kill_9(held):
    directory, proc = held
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with output_lock(str(directory), "this output") as path:  # a rerun after a crash is not blocked
        assert open(path).read() == f"{os.getpid()}\n"
        with output_lock(str(directory), "this output"):  # the same process again: not a conflict
            pass
        assert lock_output_dir(str(directory), "this output") == path  # still held after the inner block


def test_memobert_prepare_refuses_a_busy_out_dir(held, tmp_path):
    directory, proc = held
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("id\ttext\nu1\thello\n")
    message = prepare_here("manifest", "--manifest", manifest, "--out", directory)
    assert message.startswith(f"memobert-prepare: error: {directory}: this memobert-prepare output is being written "
                              f"by another process (pid {proc.pid})"), message
    assert not (directory / "work").exists()  # nothing written beside the other run


HOLD_SHARD = """
import sys, time
from memobert_plugin.output_lock import lock_output_dir
lock_output_dir(sys.argv[1], "x", shared=True)
lock_output_dir(sys.argv[1], "x", name=".memobert-shards-0-of-2.lock")
print("locked", flush=True)
time.sleep(600)
"""


def test_array_tasks_share_an_output_but_not_a_shard(tmp_path):
    """memobert-prepare --shards K/N: the array's tasks write together; the same task twice, or a whole-output
    command beside them, is refused."""
    directory = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SHARD, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "locked\n"
        with output_lock(str(directory), "x", shared=True), \
                output_lock(str(directory), "x", name=".memobert-shards-1-of-2.lock"):
            pass
        with pytest.raises(OutputBusyError), output_lock(str(directory), "x", name=".memobert-shards-0-of-2.lock"):
            pass
        with pytest.raises(OutputBusyError), output_lock(str(directory), "x"):
            pass
    finally:
        proc.kill()
        proc.wait()


def _emotion_train(data, plugin_dir, save_dir, updates):
    return [f"{BIN}/fairseq-train", data, "--user-dir", plugin_dir, "--task", "memobert_emotion", "--criterion",
            "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam", "--lr", "1e-3",
            "--max-update", str(updates), "--batch-size", "16", "--num-workers", "0", "--cpu", "--disable-validation",
            "--log-format", "json", "--log-interval", "1", "--save-dir", save_dir]


def test_two_trainings_in_one_save_dir_the_second_is_refused(demo_corpus, plugin_dir, tmp_path):
    save_dir = str(tmp_path / "ckpt")
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        # the first must still be training when the second starts, however fast this machine: an --max-update it
        # cannot reach while the test runs (it is killed below); with 40, a small corpus let it finish first
        first = subprocess.Popen(_emotion_train(demo_corpus.emotion_data, plugin_dir, save_dir, 1_000_000),
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: '"num_updates": "1"' in log_path.read_text(), first, log_path, 300, "the first update")
            second = run_cli(_emotion_train(demo_corpus.emotion_data, plugin_dir, save_dir, 40), check=False)
            assert first.poll() is None, f"the first training ended ({first.returncode}) before the second was refused"
            assert second.returncode != 0
            assert (f"OutputBusyError: {save_dir}: this training save dir is being written by another process "
                    f"(pid {first.pid})") in second.stderr, second.stderr[-3000:]
            assert '"num_updates"' not in second.stdout  # it stopped before training
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()


def _cv_run(data, out):
    return [sys.executable, "-m", "memobert_plugin.evaluation.cli", "run", "--out", out, "--corpus", f"demo={data}",
            "--settings", "direct", "--folds", "1", "--seeds", "1", "--arch", "memobert_tiny", "--lr", "1e-3",
            "--max-epoch", "50", "--batch-size", "16"]


def test_two_cv_sweeps_on_one_fold_the_second_is_refused(demo_corpus, tmp_path):
    out = str(tmp_path / "cv")
    fold = os.path.join(out, "demo", "direct", "frac1", "seed1", "fold1")
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        first = subprocess.Popen(_cv_run(demo_corpus.emotion_data, out), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            wait_until(lambda: os.path.exists(os.path.join(fold, "train.log")), first, log_path, 120, "the fold's train.log")
            log_before = open(os.path.join(fold, "train.log")).read()
            second = run_cli(_cv_run(demo_corpus.emotion_data, out), check=False)
            assert second.returncode == 1
            assert second.stderr.strip().endswith(
                f"{fold}: this cross-validation fold is being written by another process (pid {first.pid}); "
                "wait for it to finish, stop it, or choose another directory"), second.stderr[-3000:]
            assert open(os.path.join(fold, "train.log")).read().startswith(log_before)  # not a line of the second
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()


# --- checkpoint writes ------------------------------------------------------------------------
def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_checkpoint_save_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    mark_memobert_save_dir(str(tmp_path))  # as a memobert run does with its save dir
    path = tmp_path / "checkpoint_last.pt"
    checkpoint_utils.torch_persistent_save({"model": {"w": torch.ones(3)}}, str(path))
    before = path.read_bytes()

    def write_some_then_fail(obj, handle):
        handle.write(b"partial checkpoint bytes")
        _disk_full()

    monkeypatch.setattr(checkpoint_utils.torch, "save", write_some_then_fail)
    monkeypatch.setattr(checkpoint_utils.time, "sleep", lambda s: None)  # fairseq retries twice, 2.5 s apart
    with pytest.raises(OSError, match="No space left on device"):
        checkpoint_utils.torch_persistent_save({"model": {"w": torch.zeros(3)}}, str(path))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pt"] and path.read_bytes() == before


@pytest.mark.parametrize("memobert_run", [True, False])
def test_a_checkpoint_copy_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch, memobert_run):
    """In a memobert run's save dir; in any other, fairseq copies its own way (the plugin changes nothing there)."""
    if memobert_run:
        mark_memobert_save_dir(str(tmp_path))
    source, destination = tmp_path / "checkpoint_1_4.pt", tmp_path / "checkpoint_last.pt"
    source.write_bytes(b"new" * 1000)
    destination.write_bytes(b"old")
    seen = []

    def copy_then_fail(src, dst, length=0):
        seen.append(os.path.basename(dst.name))
        dst.write(src.read(10))
        _disk_full()

    monkeypatch.setattr("memobert_plugin.fairseq_patches.shutil.copyfileobj", copy_then_fail)
    if not memobert_run:
        PathManager.copy(str(source), str(destination), overwrite=True)
        assert seen == [] and destination.read_bytes() == source.read_bytes()
        return
    with pytest.raises(OSError, match="No space left on device"):
        PathManager.copy(str(source), str(destination), overwrite=True)
    assert seen == [f"checkpoint_last.pt.{os.getpid()}.tmp"]  # a per-process name: two writers never share one
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_1_4.pt", "checkpoint_last.pt"]
    assert destination.read_bytes() == b"old"
    assert LOCK_NAME not in os.listdir(tmp_path)
