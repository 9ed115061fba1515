"""The launchers' jobs, run: on submitit's local executor, and on a real single-node Slurm cluster.

Pretraining is interrupted the way Slurm preempts a job (SIGUSR2 to every task), by the
local executor's walltime signal, and on Slurm with ``scancel --signal=USR2``; each time it
must requeue itself, resume from checkpoint_last.pt and end with exactly the model of an
uninterrupted run. The Slurm tests bring a cluster up with slurm/local_cluster.sh and skip,
with its reason, only where that script cannot install the packages.

The preemption tests hold every rank right after the checkpoint at HOLD_AT updates until the
signal has been handled, so the signal provably lands mid-training however fast training is.
"""

import os
import re
import signal
import subprocess
import sys
import time

import cloudpickle
import pytest
import submitit
import torch

from conftest import PLUGIN_DIR, REPO_ROOT
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from memobert_plugin.cluster.config import CONFIG_DIR, CVConfig, PretrainConfig, load_config
from memobert_plugin.cluster.cv import submit_cv
from memobert_plugin.cluster import pretrain
from memobert_plugin.cluster.pretrain import PretrainJob, submit_pretrain

LOCAL_CLUSTER = os.path.join(REPO_ROOT, "slurm", "local_cluster.sh")
MAX_UPDATE = 30
HOLD_AT = 8  # a checkpoint (every 4 updates) well before MAX_UPDATE


def _pretrain_config(data: str, save_dir: str, *overrides: str, cluster: str = "local") -> PretrainConfig:
    """The demo pretraining (2 CPU ranks, a checkpoint every 4 updates), not waited for."""
    return load_config(PretrainConfig, os.path.join(CONFIG_DIR, "pretrain_demo.yaml"), [
        f"data={data}", f"save_dir={save_dir}", "wait=false", f"fairseq.max_update={MAX_UPDATE}",
        f"fairseq.total_num_update={MAX_UPDATE}", "fairseq.save_interval_updates=4", *overrides,
    ], cluster=cluster)


def _final_state(save_dir: str):
    state = load_checkpoint_weights_only(os.path.join(save_dir, "checkpoint_last.pt"))
    return state["optimizer_history"][-1]["num_updates"], state["model"]


def _assert_same_model(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


def _wait_for(job, found, what: str, timeout: float = 300):
    """Poll ``found()`` until it returns something true, and return that; fail if the job ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        assert not job.done(), f"job ended before {what}:\n{job.stdout()[-3000:]}{job.stderr()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s; job log: {job.paths.stdout}")


def _wait_for_log(job, pattern: str, timeout: float = 300) -> re.Match:
    """The first match of ``pattern`` in rank 0's log, once it appears."""
    def search():
        if os.path.exists(job.paths.stdout):
            with open(job.paths.stdout, encoding="utf-8", errors="replace") as handle:
                return re.search(pattern, handle.read())
        return None

    return _wait_for(job, search, f"{pattern!r} in rank 0's log", timeout)


class HeldAtCheckpointJob(PretrainJob):
    """The pretraining job, except that an attempt starting from scratch holds every rank right
    after fairseq saved the checkpoint at HOLD_AT updates, until ``<save_dir>.release`` exists.
    Each held rank first writes ``<save_dir>.held-rank<N>``. The requeued attempt resumes from a
    checkpoint and is not held: it is fairseq-train unchanged."""

    def __call__(self) -> str:
        if not os.path.exists(os.path.join(self.save_dir, "checkpoint_last.pt")):
            from fairseq import checkpoint_utils

            save = checkpoint_utils.save_checkpoint

            def save_then_hold(cfg, trainer, epoch_itr, val_loss):
                saved = save(cfg, trainer, epoch_itr, val_loss)
                if trainer.get_num_updates() == HOLD_AT:
                    open(f"{self.save_dir}.held-rank{trainer.data_parallel_rank}", "w").close()
                    deadline = time.monotonic() + 600  # a test that never signals fails rather than hangs
                    while not os.path.exists(f"{self.save_dir}.release"):  # the signal handler raises in here
                        assert time.monotonic() < deadline, "held for 10 minutes without a signal"
                        time.sleep(0.05)
                return saved

            checkpoint_utils.save_checkpoint = save_then_hold
        return super().__call__()


def _submit_held(config: PretrainConfig, monkeypatch) -> submitit.Job:
    """submit_pretrain with HeldAtCheckpointJob, pickled by value (the job cannot import this file);
    returns once every rank is held, i.e. the job is at HOLD_AT updates and cannot go on by itself."""
    monkeypatch.setattr(pretrain, "PretrainJob", HeldAtCheckpointJob)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        job = submit_pretrain(config, PLUGIN_DIR)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    held = [f"{config.save_dir}.held-rank{rank}" for rank in range(config.resources.world_size)]
    _wait_for(job, lambda: all(os.path.exists(path) for path in held), f"all ranks held at {HOLD_AT} updates")
    return job


def _release_after_requeue(job, save_dir: str) -> None:
    """Once rank 0 has handled the signal (requeued the job, leaving), let the other ranks go on:
    they then find rank 0 gone and end, as after a real preemption."""
    _wait_for_log(job, r"Requeued job")
    open(f"{save_dir}.release", "w").close()


def _task_pids(controller_pid: int) -> list:
    """The local executor's task processes: the children of its controller."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            if ppid == controller_pid:
                pids.append(int(entry))
    return pids


def _log(job) -> str:
    return job.stdout() or ""


def _assert_resumed(log: str) -> int:
    """The job requeued itself and fairseq resumed from a checkpoint; returns the update it resumed at."""
    assert "Requeued job" in log, log[-3000:]
    resumed = re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)", log)
    assert resumed, log[-3000:]
    assert 0 < int(resumed.group(1)) < MAX_UPDATE
    return int(resumed.group(1))


@pytest.fixture(scope="module")
def reference_run(demo_corpus, tmp_path_factory):
    """The demo pretraining run once without interruption: its save dir and final model."""
    save_dir = str(tmp_path_factory.mktemp("reference"))
    job = submit_pretrain(_pretrain_config(demo_corpus.pretrain_data, save_dir), PLUGIN_DIR)
    job.results()
    updates, model = _final_state(save_dir)
    assert updates == MAX_UPDATE
    return save_dir, model


@pytest.fixture(scope="module")
def reference_model(reference_run):
    return reference_run[1]


def test_a_finished_job_run_again_changes_no_checkpoint(demo_corpus, reference_run):
    """What a requeue of a job that had already finished does: the same job, on its finished save dir."""
    save_dir = reference_run[0]
    checkpoints = sorted(f for f in os.listdir(save_dir) if f.endswith(".pt"))
    before = {f: open(os.path.join(save_dir, f), "rb").read() for f in checkpoints}
    job = submit_pretrain(_pretrain_config(demo_corpus.pretrain_data, save_dir), PLUGIN_DIR)
    job.results()
    assert {f: open(os.path.join(save_dir, f), "rb").read() for f in checkpoints} == before
    assert sorted(f for f in os.listdir(save_dir) if f.endswith(".pt")) == checkpoints
    assert "the run is already finished" in _log(job), _log(job)[-3000:]


def test_preempted_pretraining_requeues_and_ends_with_the_uninterrupted_model(
    demo_corpus, tmp_path, reference_model, monkeypatch,
):
    save_dir = str(tmp_path / "ckpt")
    job = _submit_held(_pretrain_config(demo_corpus.pretrain_data, save_dir), monkeypatch)
    tasks = _task_pids(int(job.job_id))
    assert len(tasks) == 2
    for pid in tasks:  # what Slurm does to every task of a preempted job
        os.kill(pid, signal.SIGUSR2)
    _release_after_requeue(job, save_dir)
    job.results()

    log = _log(job)
    assert "this job is preempted" in log
    assert _assert_resumed(log) == HOLD_AT
    updates, model = _final_state(save_dir)
    assert updates == MAX_UPDATE
    _assert_same_model(model, reference_model)


@pytest.mark.parametrize("cluster", [
    pytest.param("local", marks=pytest.mark.slow),
    pytest.param("slurm", marks=pytest.mark.slurm),
])
def test_walltime_signal_requeues_and_resumes_pretraining(cluster, request, demo_corpus, tmp_path):
    """Each attempt gets a minute; USR2 comes 30 s before its end (from Slurm, or from the local
    executor's controller). Training far longer than that, the first attempt must time out and
    requeue itself, and the second resume from its checkpoint."""
    if cluster == "slurm":
        request.getfixturevalue("slurm_cluster")
    save_dir = str(tmp_path / "ckpt")
    config = _pretrain_config(demo_corpus.pretrain_data, save_dir, "resources.timeout_min=1",
                              "resources.signal_delay_s=30", "fairseq.max_update=100000",
                              "fairseq.total_num_update=100000", cluster=cluster)
    job = submit_pretrain(config, PLUGIN_DIR)
    try:
        resumed = _wait_for_log(job, r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)", timeout=240)
        log = _log(job)
    finally:
        job.cancel()
    assert "this job is timed-out" in log and "Requeued job" in log
    assert int(resumed.group(1)) > 0


@pytest.mark.slow
def test_cv_sweep_runs_on_the_local_executor_and_resubmits_only_missing_folds(demo_corpus, tmp_path, capsys):
    overrides = [f"out={tmp_path}", f"corpora.demo={demo_corpus.emotion_data}"]
    config = load_config(CVConfig, os.path.join(CONFIG_DIR, "cv_demo.yaml"), overrides)
    submit_cv(config)
    assert "| direct |" in capsys.readouterr().out
    table = (tmp_path / "results.md").read_text()
    assert "1 seed(s) x 2 fold(s)" in table
    # a rerun finds every fold done: it only collects
    first = (tmp_path / "demo" / "direct" / "frac1" / "seed1" / "fold1" / "result.json").stat().st_mtime
    jobs = submit_cv(config)
    assert len(jobs) == 1  # the collect job
    assert (tmp_path / "demo" / "direct" / "frac1" / "seed1" / "fold1" / "result.json").stat().st_mtime == first


# --- a real Slurm cluster on this machine ---------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster():
    """slurm/local_cluster.sh up (if it is not up already), and down afterwards if this brought it up."""
    was_up = "slurmctld: running" in subprocess.run(["bash", LOCAL_CLUSTER, "status"], capture_output=True, text=True).stdout
    up = subprocess.run(["bash", LOCAL_CLUSTER, "up"], capture_output=True, text=True, timeout=1200)
    if up.returncode == 3:
        pytest.skip(f"no local Slurm cluster: {up.stderr.strip().splitlines()[-1]}")
    assert up.returncode == 0, f"slurm/local_cluster.sh up failed:\n{up.stdout}\n{up.stderr}"
    conf = subprocess.run(["bash", LOCAL_CLUSTER, "env"], capture_output=True, text=True, check=True).stdout
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf.strip().split("=", 1)[1]
    yield
    if previous is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = previous
    if not was_up:
        subprocess.run(["bash", LOCAL_CLUSTER, "down"], capture_output=True, text=True, timeout=120)


def _accounted_state(job, timeout: float = 60) -> str:
    """The job's final state in Slurm's accounting (sacct lags a job's end by a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        job.watcher.update()
        state = job.state
        if state not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "UNKNOWN") or time.monotonic() > deadline:
            return state
        time.sleep(1)


@pytest.mark.slurm
def test_cv_array_on_slurm(slurm_cluster, demo_corpus, tmp_path, capsys):
    config = load_config(CVConfig, os.path.join(CONFIG_DIR, "cv_demo.yaml"), [
        f"out={tmp_path}", f"corpora.demo={demo_corpus.emotion_data}", "wait=true",
    ], cluster="slurm")
    *folds, collect = submit_cv(config)
    assert len(folds) == 2 and all("_" in job.job_id for job in folds)  # one array, two tasks
    assert [_accounted_state(job) for job in (*folds, collect)] == ["COMPLETED"] * 3
    assert "| direct |" in capsys.readouterr().out
    assert "1 seed(s) x 2 fold(s)" in (tmp_path / "results.md").read_text()


@pytest.mark.slurm
def test_pretraining_on_slurm_requeues_and_ends_with_the_uninterrupted_model(
    slurm_cluster, demo_corpus, tmp_path, reference_model, monkeypatch,
):
    """On Slurm, fairseq takes ranks from the Slurm environment: the model must still be the local run's."""
    save_dir = str(tmp_path / "ckpt")
    job = _submit_held(_pretrain_config(demo_corpus.pretrain_data, save_dir, cluster="slurm"), monkeypatch)
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    _release_after_requeue(job, save_dir)
    job.results()

    assert _accounted_state(job) == "COMPLETED"
    log = _log(job)
    assert "fairseq-train" in log and "--distributed-init-method tcp://vm:" in log  # rank 0 on Slurm's first node
    assert _assert_resumed(log) == HOLD_AT
    restarts = subprocess.run(["scontrol", "show", "job", job.job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts, restarts
    updates, model = _final_state(save_dir)
    assert updates == MAX_UPDATE
    _assert_same_model(model, reference_model)
