"""The launchers' configuration and the fairseq arguments they build (no jobs run here)."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import BIN, REPO_ROOT, run_cli
from memobert_plugin.cluster.config import CONFIG_DIR, ConfigError, CVConfig, config_path, option_flags, PretrainConfig, load_config
from memobert_plugin.cluster.cv import collect_tables, plan
from memobert_plugin.cluster.pretrain import (
    PORT_BASE, PORT_SPAN, check_fairseq_args, distributed_args, job_port, pretrain_argv,
)

PRETRAIN_YAML = os.path.join(CONFIG_DIR, "pretrain.yaml")
CV_YAML = os.path.join(CONFIG_DIR, "cv.yaml")


def test_overrides_win_over_the_yaml_and_cluster_flag_over_both(tmp_path):
    config = load_config(PretrainConfig, PRETRAIN_YAML, [
        "data=d", "save_dir=s", "resources.nodes=2", "fairseq.lr=1e-4", "extra_args=[--fp16]", "cluster=local",
    ], cluster="slurm")
    assert (config.data, config.save_dir, config.cluster) == ("d", "s", "slurm")
    assert config.resources.nodes == 2 and config.resources.world_size == 16  # 8 GPUs per node in the YAML
    assert config.fairseq["lr"] == 1e-4 and config.fairseq["warmup_updates"] == 4000
    assert config.extra_args == ["--fp16"]


@pytest.mark.parametrize("overrides, message", [
    ([], "missing required value(s): data, save_dir"),
    (["data=d", "save_dir=s", "resources.gpus=4"], "gpus"),  # a typo of gpus_per_node
    (["data=d", "save_dir=s", "resources.nodes=two"], "nodes"),
    (["data=d", "save_dir=s", "resources.tasks_per_node=2"], "one task per GPU"),
    (["data=d", "save_dir=s", "cluster=local", "resources.nodes=2"], "resources.nodes must be 1"),
    (["data=d", "save_dir=s", "cluster=lsf"], "cluster must be one of"),
    (["data=d", "save_dir=s", "resources.timeout_min=1", "resources.signal_delay_s=90"], "signal_delay_s=90"),
])
def test_bad_configurations_are_named(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(PretrainConfig, PRETRAIN_YAML, overrides)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(PretrainConfig, str(tmp_path / "nope.yaml"), ["data=d", "save_dir=s"])


@pytest.mark.parametrize("command", [[os.path.join(BIN, "memobert-launch")], [sys.executable, "-m", "slurm.launch"]],
                         ids=["console script", "slurm alias"])
def test_command_line_reports_config_errors_without_a_traceback(command, tmp_path):
    proc = run_cli(command + ["pretrain", "data=x"], cwd=REPO_ROOT if "slurm.launch" in command else str(tmp_path),
                   check=False)
    assert proc.returncode != 0
    assert "error: missing required value(s): save_dir" in proc.stderr and "Traceback" not in proc.stderr


def test_packaged_configurations_by_name():
    assert config_path("cv_demo") == os.path.join(CONFIG_DIR, "cv_demo.yaml")
    assert config_path("mine.yaml") == "mine.yaml"  # a file name is left to load_config to check
    with pytest.raises(ConfigError, match="--config cv_demoo: no such file, nor a packaged configuration .*cv_demo"):
        config_path("cv_demoo")


def test_options_become_flags():
    assert option_flags({"lr": 5e-5, "no_epoch_checkpoints": True, "bert_init": None, "fp16": False,
                         "adam_betas": "(0.9,0.98)"}, "fairseq") == ["--lr", "5e-05", "--no-epoch-checkpoints",
                                                                     "--adam-betas", "(0.9,0.98)"]
    with pytest.raises(ConfigError, match="fairseq.update_freq"):
        option_flags({"update_freq": [1, 2]}, "fairseq")


def test_shipped_pretraining_config_is_accepted_by_fairseq(plugin_dir):
    """Every option in pretrain.yaml exists in fairseq-train with memobert's task, model and criterion."""
    config = load_config(PretrainConfig, PRETRAIN_YAML, ["data=d", "save_dir=s"])
    argv = pretrain_argv(config, plugin_dir)
    check_fairseq_args(argv)
    assert "--cpu" not in argv and argv[argv.index("--batch-size") + 1] == "80"
    with pytest.raises(ConfigError, match="rejects"):
        check_fairseq_args(argv + ["--warmup-update", "1"])


def test_cpu_runs_add_cpu(plugin_dir):
    config = load_config(PretrainConfig, os.path.join(CONFIG_DIR, "pretrain_demo.yaml"), ["data=d", "save_dir=s"])
    assert "--cpu" in pretrain_argv(config, plugin_dir)


def test_single_process_needs_no_distributed_arguments():
    assert distributed_args(1, 0, 0, "node1", 12345, cpu=True) == []


def _flags(args):
    """{flag: value, or True for a switch}."""
    return {a: (args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else True)
            for i, a in enumerate(args) if a.startswith("--")}


def test_cpu_ranks_get_the_measured_gloo_flags():
    flags = _flags(distributed_args(2, 1, 1, "127.0.0.1", 23456, cpu=True))
    assert flags["--distributed-world-size"] == "2" and flags["--distributed-rank"] == "1"
    assert flags["--distributed-init-method"] == "tcp://127.0.0.1:23456"
    assert flags["--distributed-backend"] == "gloo" and flags["--ddp-backend"] == "legacy_ddp"
    assert flags["--distributed-no-spawn"] is True


def test_gpu_ranks_use_their_local_gpu_and_fairseqs_default_backend():
    flags = _flags(distributed_args(16, 13, 5, "gpu-node-07", 12345, cpu=False))
    assert (flags["--distributed-rank"], flags["--device-id"]) == ("13", "5")
    assert flags["--distributed-init-method"] == "tcp://gpu-node-07:12345"
    assert "--distributed-backend" not in flags and "--ddp-backend" not in flags  # nccl, pytorch_ddp


def test_job_ports_are_stable_per_job_and_spread_across_jobs():
    ports = {job_port(str(job_id)) for job_id in range(1000, 1100)}
    assert all(PORT_BASE <= p < PORT_BASE + PORT_SPAN for p in ports)
    assert len(ports) > 95  # distinct jobs on one node rarely collide
    assert job_port("4242") == job_port("4242") != job_port("4242", restarts=1)


def test_cv_plan_follows_the_sweep_layout(demo_corpus, tmp_path):
    config = load_config(CVConfig, os.path.join(CONFIG_DIR, "cv_demo.yaml"), [
        f"out={tmp_path}", f"corpora.demo={demo_corpus.emotion_data}", "seeds=[1,2]", "folds=1-3",
    ])
    jobs = plan(config)
    assert [(j.seed, j.fold) for j in jobs] == [(s, f) for s in (1, 2) for f in (1, 2, 3)]
    assert jobs[0].out_dir == str(tmp_path / "demo" / "direct" / "frac1" / "seed1" / "fold1")
    assert jobs[0].arch == "memobert_tiny" and jobs[0].max_epoch == 1


@pytest.mark.parametrize("overrides, message", [
    (["corpora.demo=/nonexistent"], "corpora.demo: /nonexistent is not a directory"),
    (["settings=[pretrain_prompt]"], "needs --pretrained"),
    (["settings=[best]"], "unknown settings"),
])
def test_cv_plan_errors_are_named(demo_corpus, tmp_path, overrides, message):
    base = [f"out={tmp_path}", f"corpora.demo={demo_corpus.emotion_data}"]
    with pytest.raises(ConfigError, match=message):
        plan(load_config(CVConfig, CV_YAML, base + overrides))


def test_local_cluster_script_is_valid_bash():
    script = os.path.join(REPO_ROOT, "slurm", "local_cluster.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    usage = subprocess.run(["bash", script, "bogus"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_collect_notes_the_fold_jobs_without_a_result(tmp_path):
    with pytest.raises(RuntimeError, match="no result.json"):
        collect_tables(str(tmp_path), [])
    done = tmp_path / "demo" / "direct" / "frac1" / "seed1" / "fold1" / "result.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"corpus": "demo", "row": "direct", "train_fraction": 1.0, "seed": 1, "fold": 1,
                                "test": {"wa": 0.5, "uar": 0.25}}))
    missing = str(tmp_path / "demo" / "direct" / "frac1" / "seed1" / "fold2" / "result.json")
    table = collect_tables(str(tmp_path), [str(done), missing])
    assert "| direct | 50.00 | 25.00 |" in table
    assert f"1 of 2 fold jobs have no result yet, e.g. {os.path.dirname(missing)}" in table
