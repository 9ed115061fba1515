"""Issue 8, training side, through fairseq's own entry points: kill -9 and resume, bad data and
checkpoints, non-finite steps. Every failure must end in a message naming the file or item and the
problem (a traceback above it is fairseq's way), never run on silently."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import BIN, RunsCode, json_logs, run_cli, wait_until
from memobert_plugin.data.feature_store import FeatureStore, FeatureStoreWriter, feature_paths
from memobert_plugin.data.folds import fold_split
from memobert_plugin.data.utterance_meta import read_meta
from memobert_plugin.inference.cli import main as predict_main
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only

UPDATES, SAVE_EVERY = 16, 4  # the demo's 160 pretraining utterances in batches of 16: 10 updates an epoch


def _pretrain(data, plugin_dir, save_dir, *extra):
    return [
        f"{BIN}/fairseq-train", data, "--user-dir", plugin_dir, "--task", "memobert_pretrain", "--arch", "memobert_tiny",
        "--criterion", "memobert_pretrain", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "fixed",
        "--max-update", str(UPDATES), "--save-interval-updates", str(SAVE_EVERY), "--no-epoch-checkpoints",
        "--disable-validation", "--batch-size", "16", "--num-workers", "0", "--seed", "1", "--cpu",
        "--log-format", "json", "--log-interval", "1", "--save-dir", save_dir, *extra,
    ]


def _emotion(data, plugin_dir, save_dir, *extra):
    return [
        f"{BIN}/fairseq-train", data, "--user-dir", plugin_dir, "--task", "memobert_emotion", "--criterion", "memobert_emotion",
        "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "fixed",
        "--max-update", "2", "--batch-size", "16", "--num-workers", "0", "--seed", "1", "--cpu", "--disable-validation",
        "--save-dir", save_dir, *extra,
    ]


def _validate(data, plugin_dir, checkpoint):
    return [f"{BIN}/fairseq-validate", data, "--user-dir", plugin_dir, "--task", "memobert_pretrain", "--path", checkpoint,
            "--batch-size", "16", "--num-workers", "0", "--cpu"]


def _fails_with(command, *fragments, cwd=None) -> str:
    """Run a command that must fail with an exception whose message (the end of stderr) holds every fragment."""
    proc = run_cli(command, check=False, cwd=cwd)
    lines = proc.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"[\w.]+(Error|Exception): ", line)]
    message = "\n".join(lines[starts[-1]:]) if starts else ""
    assert proc.returncode != 0 and all(f in message for f in fragments), f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _finite_checkpoints(save_dir):
    """Every checkpoint in save_dir, with all its weights finite (asserted)."""
    paths = sorted(glob.glob(os.path.join(save_dir, "*.pt")))
    for path in paths:
        weights = load_checkpoint_weights_only(path)["model"]
        assert all(torch.isfinite(w).all() for w in weights.values()), path
    return paths


# --- data written wrong on purpose ------------------------------------------------------------
def _copy_split(src, dst, split):
    """dict.txt and every file of one split of a data dir, copied."""
    os.makedirs(dst)
    for path in [os.path.join(src, "dict.txt"), *glob.glob(os.path.join(src, f"{split}.*"))]:
        shutil.copy(path, dst)
    return str(dst)


def _rewrite_stream(data, split, stream, lengths, dim):
    """Replace a stream by one of ``lengths`` utterances of ``dim``-d frames (written by the store's writer)."""
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(data, split, stream, dim) as writer:
        for i, n in enumerate(lengths):
            writer.append(rng.standard_normal((n, dim)), item=f"{split}:{i}")


def _hand_write_nan(data, split, stream, utterance):
    """Put a NaN into one utterance's first frame by editing the .npy directly, as the writer would refuse."""
    npy, _ = feature_paths(data, split, stream)
    store = FeatureStore(data, split, stream)
    assert store.lengths[utterance] > 0
    frames = np.load(npy)
    frames[store.offsets[utterance], 0] = np.nan
    np.save(npy, frames)


# --- kill -9 during pretraining ---------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(demo_corpus, plugin_dir, tmp_path_factory):
    """Save dir of a pretraining run of UPDATES updates that nothing interrupted."""
    save_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    run_cli(_pretrain(demo_corpus.pretrain_data, plugin_dir, save_dir))
    return save_dir


def test_kill_9_during_pretraining_resumes_to_the_same_parameters(demo_corpus, plugin_dir, uninterrupted, tmp_path):
    save_dir = str(tmp_path / "killed")
    command = _pretrain(demo_corpus.pretrain_data, plugin_dir, save_dir)
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:  # one update past the save at update 12, in the second epoch
            marker = '"num_updates": "13"'
            wait_until(lambda: marker in log_path.read_text(), proc, log_path, timeout=300, what=repr(marker))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = load_checkpoint_weights_only(os.path.join(save_dir, "checkpoint_last.pt"))
    killed_at = left["optimizer_history"][-1]["num_updates"]
    assert 3 * SAVE_EVERY <= killed_at < UPDATES and left["extra_state"]["train_iterator"]["epoch"] == 2

    resumed = run_cli(command)
    assert f"Loaded checkpoint {save_dir}/checkpoint_last.pt (epoch 2 @ {killed_at} updates)" in resumed.stdout
    expected = load_checkpoint_weights_only(os.path.join(uninterrupted, "checkpoint_last.pt"))
    got = load_checkpoint_weights_only(os.path.join(save_dir, "checkpoint_last.pt"))
    assert got["optimizer_history"][-1]["num_updates"] == expected["optimizer_history"][-1]["num_updates"] == UPDATES
    # bit for bit, dropout included: fairseq seeds each update with seed + update number
    assert expected["model"].keys() == got["model"].keys()
    for name, weight in expected["model"].items():
        assert torch.equal(weight, got["model"][name]), name
    for param, state in expected["last_optimizer_state"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(got["last_optimizer_state"]["state"][param][key]))


def _checkpoint_bytes(save_dir) -> dict:
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(save_dir, "*.pt")))}


@pytest.mark.parametrize("run", ["pretraining", "emotion fold"])
def test_rerunning_a_finished_run_trains_nothing_and_changes_no_checkpoint(run, demo_corpus, plugin_dir, uninterrupted,
                                                                           emotion_checkpoint):
    if run == "pretraining":
        save_dir, command = uninterrupted, _pretrain(demo_corpus.pretrain_data, plugin_dir, uninterrupted)
    else:
        save_dir = os.path.dirname(emotion_checkpoint)
        command = _emotion(demo_corpus.emotion_data, plugin_dir, save_dir, "--log-format", "json", "--log-interval", "1")
    before = _checkpoint_bytes(save_dir)
    rerun = run_cli(command)
    assert json_logs(rerun.stdout, "train_inner") == []  # not one update
    assert _checkpoint_bytes(save_dir) == before
    assert "the run is already finished" in rerun.stdout + rerun.stderr


CHILD_COPYING = """
import sys
import os
import memobert_plugin
from memobert_plugin.fairseq_patches import mark_memobert_save_dir
from fairseq.file_io import PathManager
memobert_plugin.register()  # what --user-dir does: copies into a memobert run's save dir are atomic
*sources, destination = sys.argv[1:]
mark_memobert_save_dir(os.path.dirname(destination))
print("copying", flush=True)
while True:
    for source in sources:
        PathManager.copy(source, destination, overwrite=True)
"""


def test_kill_9_during_a_checkpoint_copy_leaves_a_whole_file(tmp_path):
    """fairseq copies the saved checkpoint to checkpoint_last.pt; a kill mid-copy must not truncate it."""
    sources = [tmp_path / "checkpoint_1_4.pt", tmp_path / "checkpoint_1_8.pt"]
    for fill, path in enumerate(sources):
        path.write_bytes(bytes([fill + 1]) * (16 << 20))
    destination = tmp_path / "checkpoint_last.pt"
    proc = subprocess.Popen([sys.executable, "-c", CHILD_COPYING, *map(str, sources), str(destination)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "copying\n"
        time.sleep(0.5)  # many copies: the kill lands inside one
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert destination.read_bytes() in {path.read_bytes() for path in sources}


# --- checkpoints and data that do not fit together -------------------------------------------
def test_validate_on_features_of_another_dim_names_the_mismatch(demo_corpus, plugin_dir, uninterrupted, tmp_path):
    data = _copy_split(demo_corpus.pretrain_data, tmp_path / "data", "valid")
    _rewrite_stream(data, "valid", "acoustic", FeatureStore(data, "valid", "acoustic").lengths, 40)
    _fails_with(_validate(data, plugin_dir, os.path.join(uninterrupted, "checkpoint_last.pt")),
                f"ValueError: {data}: acoustic features are 40-d but the checkpoint expects 768-d")


def test_memobert_init_on_features_of_another_dim_names_the_mismatch(demo_corpus, plugin_dir, uninterrupted, tmp_path):
    data = _copy_split(demo_corpus.emotion_data, tmp_path / "data", "all")
    _rewrite_stream(data, "all", "visual", FeatureStore(data, "all", "visual").lengths, 128)
    init = os.path.join(uninterrupted, "checkpoint_last.pt")
    _fails_with(_emotion(data, plugin_dir, str(tmp_path / "ckpt"), "--memobert-init", init),
                f"ValueError: {data}: visual features are 128-d but the checkpoint expects 342-d")


def test_modalities_of_different_lengths_stop_training_with_the_files_named(demo_corpus, plugin_dir, tmp_path):
    data = _copy_split(demo_corpus.pretrain_data, tmp_path / "data", "train")
    lengths = FeatureStore(data, "train", "acoustic").lengths
    _rewrite_stream(data, "train", "acoustic", lengths[:-1], 768)  # one utterance short
    _fails_with(_pretrain(data, plugin_dir, str(tmp_path / "ckpt")),
                f"{data}/train.acoustic.len lists {len(lengths) - 1} utterances but the text has {len(lengths)}",
                "the modalities of this split disagree")


def test_hand_written_nan_feature_is_named_when_read(demo_corpus, plugin_dir, uninterrupted, tmp_path):
    data = _copy_split(demo_corpus.pretrain_data, tmp_path / "data", "valid")
    # an utterance with face frames (the demo world gives some none), not the first one: chosen from the data
    with_frames = np.flatnonzero(FeatureStore(data, "valid", "visual").lengths > 0)
    assert len(with_frames) >= 2, "the demo's valid split needs utterances with face frames"
    utterance = int(with_frames[1])
    _hand_write_nan(data, "valid", "visual", utterance=utterance)
    _fails_with(_validate(data, plugin_dir, os.path.join(uninterrupted, "checkpoint_last.pt")),
                f"ValueError: {data}/valid.visual.npy: utterance {utterance} (0-based, in data order) "
                "has non-finite (NaN/Inf) visual")


# --- crafted checkpoints ----------------------------------------------------------------------
@pytest.mark.parametrize("entry_point", ["fairseq-validate --path", "fairseq-train --memobert-init"])
def test_crafted_checkpoint_is_refused_by_the_entry_points(entry_point, demo_corpus, plugin_dir, tmp_path):
    evil = str(tmp_path / "evil.pt")
    torch.save({"model": {}, "cfg": {"model": {}}, "payload": RunsCode()}, evil)
    if entry_point == "fairseq-validate --path":
        command = _validate(demo_corpus.pretrain_data, plugin_dir, evil)
    else:
        command = _emotion(demo_corpus.emotion_data, plugin_dir, str(tmp_path / "ckpt"), "--memobert-init", evil)
    out = _fails_with(command, f"{evil}: refused: it asks to load posix.system", cwd=tmp_path)
    assert "weights_only=False" not in out and "set to `False`" not in out  # torch's advice to switch it off
    assert not (tmp_path / "PWNED").exists()


# --- a diverging run --------------------------------------------------------------------------
def test_non_finite_loss_names_the_batch_and_stops_before_nan_weights(demo_corpus, plugin_dir, tmp_path):
    save_dir = str(tmp_path / "ckpt")
    # one Adam step of 1e30 makes every weight ~1e30; the next forward overflows to NaN
    out = _fails_with(_emotion(demo_corpus.emotion_data, plugin_dir, save_dir, "--lr", "1e30", "--save-interval-updates", "1"),
                      "FloatingPointError: gradients are Nan/Inf")
    reports = re.findall(r"non-finite loss nan on the batch of utterances \[(.*?)\] \(ids in all\.meta\.tsv\)", out)
    assert reports, out[-4000:]
    ids = re.findall(r"'(\w+)'", reports[0])
    # a whole batch of fold 1's training utterances, by their ids in all.meta.tsv (from the data, not the demo's layout)
    meta = read_meta(os.path.join(demo_corpus.emotion_data, "all.meta.tsv"))
    training = {meta[i].id for i in fold_split(meta, 1).train}
    assert len(ids) == min(16, len(training)) and len(set(ids)) == len(ids) and set(ids) <= training, (ids, sorted(training))
    assert "NaN detected in output of" in out  # fairseq's NanDetector re-ran the step on the model
    # fairseq (fp32) stops: the update that made the weights huge is the last one, and nothing NaN is saved
    assert [os.path.basename(p) for p in _finite_checkpoints(save_dir)] == ["checkpoint_1_1.pt", "checkpoint_last.pt", "crash.pt"]
    assert load_checkpoint_weights_only(os.path.join(save_dir, "checkpoint_last.pt"))["optimizer_history"][-1]["num_updates"] == 1


# --- memobert-predict -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emotion_checkpoint(demo_corpus, plugin_dir, tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp("emotion"))
    run_cli(_emotion(demo_corpus.emotion_data, plugin_dir, save_dir))
    return os.path.join(save_dir, "checkpoint_last.pt")


def _predict(capsys, checkpoint, rows, tmp_path):
    """memobert-predict on a TSV of ``rows``: (exit status, stdout, stderr)."""
    (tmp_path / "input.tsv").write_text("\n".join(["id\ttext\tvisual\tacoustic", *rows]) + "\n")
    try:
        predict_main(["--checkpoint", checkpoint, "--input", str(tmp_path / "input.tsv")])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out = capsys.readouterr()
    return status, out.out, out.err


def test_predict_reports_the_bad_input_by_name(emotion_checkpoint, capsys, tmp_path):
    np.save(tmp_path / "voice.npy", np.ones((5, 768), np.float32))
    np.save(tmp_path / "narrow.npy", np.ones((5, 40), np.float32))
    np.save(tmp_path / "nan.npy", np.full((5, 342), np.nan, np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "voice.npy").read_bytes()[:100])
    good = ["u0\ti am glad\t\tvoice.npy", "u1\t\t\tvoice.npy", "u2\t\t\t"]  # empty text; nothing at all
    status, out, _ = _predict(capsys, emotion_checkpoint, good, tmp_path)
    assert status == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["id", "u0", "u1", "u2"]
    for row, message in {
        "u3\tok\t\tnarrow.npy": "utterance u3: acoustic frames have shape (5, 40), the model expects [frames, 768]",
        "u4\tok\tnan.npy\t": "utterance u4: non-finite visual features",
        "u5\tok\t\tcut.npy": f"{tmp_path / 'input.tsv'}:5: cannot read acoustic features {tmp_path / 'cut.npy'}",
    }.items():
        status, out, err = _predict(capsys, emotion_checkpoint, [*good, row], tmp_path)
        assert status == 1 and out == "" and err.startswith("memobert-predict: error: ") and message in err, err


def test_predict_refuses_crafted_and_truncated_checkpoints(emotion_checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {}, "payload": RunsCode()}, tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes(open(emotion_checkpoint, "rb").read()[:4096])
    for name, message in {"evil.pt": "refused: it asks to load posix.system", "cut.pt": "not a readable"}.items():
        status, _, err = _predict(capsys, str(tmp_path / name), ["u0\thello\t\t"], tmp_path)
        assert status == 1 and f"memobert-predict: error: {tmp_path / name}: {message}" in err, err
    assert not (tmp_path / "PWNED").exists()


def test_predict_names_a_data_only_or_mismatched_checkpoint(emotion_checkpoint, uninterrupted, capsys, tmp_path):
    state = load_checkpoint_weights_only(emotion_checkpoint)
    tensor = "encoder.layers.0.ffn_in.weight"
    torch.save({**state, "model": {**state["model"], tensor: torch.zeros(3, 3)}}, tmp_path / "mismatched.pt")
    torch.save({"model": state["model"]}, tmp_path / "weights_alone.pt")
    cases = {
        str(tmp_path / "mismatched.pt"): f"{tensor} has shape (3, 3) there but (",
        str(tmp_path / "weights_alone.pt"): "no model configuration ('cfg' or 'args'); not a fairseq checkpoint",
        os.path.join(uninterrupted, "checkpoint_last.pt"): "a memobert_pretrain checkpoint; this needs a memobert_emotion one",
    }
    for checkpoint, message in cases.items():
        status, _, err = _predict(capsys, checkpoint, ["u0\thello\t\t"], tmp_path)
        assert status == 1 and err == f"memobert-predict: error: {checkpoint}: {message}" + err.split(message, 1)[-1], err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
