"""memobert-launch prepare: the extractor stages as job arrays (submitit's local executor and a real
Slurm cluster), then the write step; the data dir must be the single-machine run's, byte for byte."""

import os

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the extractors need the 'extract' extra (opencv-python-headless)")
pytest.importorskip("submitit", reason="the launchers need the 'slurm' extra")

from memobert_plugin.cluster.config import ConfigError, PrepareConfig, config_path, load_config  # noqa: E402
from memobert_plugin.cluster.prepare import prepare_commands, submit_prepare  # noqa: E402
from prepare_material import prepare_here, tiny_fer, tiny_wav2vec2, write_manifest  # noqa: E402,F401
from test_slurm_jobs import _accounted_state, slurm_cluster  # noqa: E402,F401

UTTERANCES = 5
SHARD_SIZE = 2  # 3 shards: the two tasks of each array take shards {0, 2} and {1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Five utterances with speech-like noise and, for three, a folder of face crops."""
    import cv2
    import soundfile

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(UTTERANCES):
        soundfile.write(str(root / f"{i}.wav"), 0.1 * rng.standard_normal(16000 + 4000 * i), 16000)
        row = {"id": f"u{i}", "text": f"hello number {i} here", "audio": f"{i}.wav", "video": ""}
        if i % 2 == 0:
            (root / f"faces{i}").mkdir()
            for j in range(3):
                cv2.imwrite(str(root / f"faces{i}" / f"{j}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
            row["video"] = f"faces{i}"
        rows.append(row)
    return write_manifest(str(root / "manifest.tsv"), rows)


@pytest.fixture(scope="module")
def options(tiny_wav2vec2, tiny_fer, minilm_dir):  # noqa: F811
    return {"vocab": f"{minilm_dir}/vocab.txt", "wav2vec2": tiny_wav2vec2["fairseq"], "fer_model": tiny_fer,
            "shard_size": SHARD_SIZE, "device": "cpu"}


@pytest.fixture(scope="module")
def single_machine(corpus, options, tmp_path_factory):
    """``memobert-prepare all`` in one process: the reference data dir."""
    out = tmp_path_factory.mktemp("single")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    assert prepare_here("all", "--manifest", corpus, "--out", out, *flags) == ""
    return out


def _config(corpus, out, options, cluster):
    overrides = [f"manifest={corpus}", f"out={out}", "wait=true", *(f"prepare.{k}={v}" for k, v in options.items())]
    return load_config(PrepareConfig, config_path("prepare_demo"), overrides, cluster=cluster)


def _files(root):
    """Every file of a data dir (work files included) but the job logs, the plan (it records its own
    location), the output locks (they hold their last writer's pid) and the media digest cache (it keeps
    only files older than 2 s, so whether it exists depends on timing), with its bytes."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "submitit"]
        for name in names:
            path = os.path.join(folder, name)
            if name in ("plan.json", "media.sha256.json") or name.endswith(".lock"):
                continue
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


def _assert_same_data_dir(out, reference):
    ours, theirs = _files(out), _files(reference)
    assert sorted(ours) == sorted(theirs)
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert "train.acoustic.npy" in ours and "train.visual.npy" in ours


def test_each_task_gets_every_nth_shard_and_its_stages_options(corpus, options, tmp_path):
    commands = prepare_commands(_config(corpus, tmp_path, options, "local"))
    assert [argv[argv.index("--shards") + 1] for argv in commands["acoustic"]] == ["0/2", "1/2"]
    assert "--wav2vec2" in commands["acoustic"][0] and "--fer-model" not in commands["acoustic"][0]
    assert "--fer-model" in commands["visual"][1] and "--vocab" not in commands["visual"][1]
    assert {"--vocab", "--wav2vec2", "--fer-model"} <= set(commands["all"][0])
    with pytest.raises(ConfigError, match=r"stages: \['text'\] cannot run as arrays"):
        prepare_commands(PrepareConfig(manifest=corpus, out="o", stages=["text"]))
    with pytest.raises(ConfigError, match="memobert-prepare rejects the options: .*unrecognized arguments: --fer-modle"):
        submit_prepare(_config(corpus, tmp_path, {"fer_modle": "x"}, "local"))


def test_arrays_on_the_local_executor_write_the_single_machine_data_dir(corpus, options, single_machine, tmp_path):
    jobs = submit_prepare(_config(corpus, tmp_path, options, "local"))
    assert len(jobs) == 2 * 2 + 1  # two tasks per stage, then the write
    _assert_same_data_dir(tmp_path, single_machine)


@pytest.mark.slurm
def test_arrays_on_slurm_write_the_single_machine_data_dir(slurm_cluster, corpus, options, single_machine, tmp_path):  # noqa: F811
    *tasks, final = submit_prepare(_config(corpus, tmp_path, options, "slurm"))
    assert len(tasks) == 4 and all("_" in job.job_id for job in tasks)  # array tasks
    assert len({job.job_id.split("_")[0] for job in tasks}) == 1  # one array for both stages
    assert [_accounted_state(job) for job in (*tasks, final)] == ["COMPLETED"] * 5
    _assert_same_data_dir(tmp_path, single_machine)
