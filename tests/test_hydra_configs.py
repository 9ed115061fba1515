"""The fairseq-hydra-train configs under examples/*/config resolve to the same configuration as the
command lines of the corresponding recipe scripts."""

import os
import re
import shlex

import pytest
from fairseq import options
from fairseq.dataclass.initialize import add_defaults, hydra_init
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import PLUGIN_DIR, REPO_ROOT
from memobert_plugin.evaluation.cli import build_parser, plan_sweep
from memobert_plugin.evaluation.cross_validation import FoldJob


def _command(script: str, program: str, variables: dict) -> list:
    """The arguments of ``program``'s invocation in a bash script (continuations joined, $VARS filled,
    "${ARRAY[@]}" expanded from a list)."""
    text = open(os.path.join(REPO_ROOT, script)).read().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.strip().startswith(program))
    line = re.sub(r'"\$\{(\w+)\[@\]\}"', lambda m: shlex.join(variables[m.group(1)]), line)
    line = re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], line)
    return shlex.split(line)[1:]


def _defaults(script: str) -> dict:
    """The knobs' defaults of a recipe script: its ``NAME=${NAME:-default}`` lines."""
    text = open(os.path.join(REPO_ROOT, script)).read()
    return dict(re.findall(r"^\s*(\w+)=\$\{\1:-([^$}]*)\}\s*$", text, flags=re.MULTILINE))


def _resolved(cfg):
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _from_command_line(args):
    return _resolved(convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), args)))


def _from_hydra(config_dir, name, overrides):
    GlobalHydra.instance().clear()
    hydra_init(name)
    with initialize_config_dir(config_dir=config_dir, version_base="1.1"):  # fairseq 0.12 uses hydra 1.1 APIs
        cfg = compose(config_name=name, overrides=overrides)
    add_defaults(cfg)
    return _resolved(cfg)


def _quickstart_pretrain():
    return _command("examples/quickstart/run.sh", "fairseq-train",
                    {**_defaults("examples/quickstart/run.sh"), "OUT": "/data/out", "WORLD": "/data/out/demo",
                     "PLUGIN": PLUGIN_DIR})


def _quickstart_cv_job():
    """The fairseq-train command memobert-cv runs for the quickstart's Pretrain+Prompt fold 1."""
    job = FoldJob(corpus="demo", data="/data/out/demo/emotion", setting="pretrain_prompt", fold=1, seed=1,
                  out_dir="/data/out/prompt_fold1", init_path="/data/out/pretrain/checkpoint_best.pt",
                  arch="memobert_tiny", lr=5e-4, max_epoch=10, lr_schedule="warmup_linear")
    job.train_updates = lambda: 200  # the quickstart world's fold 1: 620 training utterances, 20 batches x 10 epochs
    command = job.train_command()[1:]
    command[command.index("--save-dir") + 1] = "/data/out/prompt_fold1"
    return command


def _videos_pretrain():
    """examples/pretrain_videos/run.sh's fairseq-train command with the recipe's defaults."""
    variables = {**_defaults("examples/pretrain_videos/run.sh"), "OUT": "/data/out", "PLUGIN": PLUGIN_DIR,
                 "BERT": "/data/bert"}
    return _command("examples/pretrain_videos/run.sh", "fairseq-train", variables)


def _recipe_cv_job(corpus: str):
    """The fairseq-train command of the Pretrain+Prompt fold 1 job that a corpus recipe's memobert-cv
    command (examples/common.sh, the recipe's defaults) plans."""
    variables = {**_defaults("examples/common.sh"), "OUT": "/data/out", "BERT": "/data/bert", "corpus": corpus,
                 "SETTINGS": "pretrain_prompt", "FOLDS": "1", "SEEDS": "1",
                 "pretrained_args": ["--pretrained", "/data/out/pretrain/checkpoint_best.pt"],
                 "train_args": []}  # IEMOCAP's and MSP-IMPROV's classes are the task's default
    args = build_parser().parse_args(_command("examples/common.sh", "memobert-cv", variables))
    (job,) = plan_sweep(args)
    command = job.train_command()[1:]
    command[command.index("--save-dir") + 1] = "/data/out/prompt_fold1"
    return command


_EMOTION_OVERRIDES = ["task.data=/data/out/data", f"common.user_dir={PLUGIN_DIR}", "checkpoint.save_dir=/data/out/prompt_fold1",
                      "model.memobert_init=/data/out/pretrain/checkpoint_best.pt"]


@pytest.mark.parametrize("config_dir,config_name,command,overrides", [
    ("examples/quickstart/config", "pretrain", _quickstart_pretrain,
     ["task.data=/data/out/demo/pretrain", f"common.user_dir={PLUGIN_DIR}", "checkpoint.save_dir=/data/out/pretrain"]),
    ("examples/quickstart/config", "emotion_prompt", _quickstart_cv_job,
     ["task.data=/data/out/demo/emotion", f"common.user_dir={PLUGIN_DIR}", "checkpoint.save_dir=/data/out/prompt_fold1",
      "model.memobert_init=/data/out/pretrain/checkpoint_best.pt"]),
    ("examples/pretrain_videos/config", "pretrain", _videos_pretrain,
     ["task.data=/data/out/data", f"common.user_dir={PLUGIN_DIR}", "checkpoint.save_dir=/data/out/pretrain",
      "model.bert_init=/data/bert"]),
    ("examples/iemocap/config", "emotion_prompt", lambda: _recipe_cv_job("iemocap"), _EMOTION_OVERRIDES),
    ("examples/msp_improv/config", "emotion_prompt", lambda: _recipe_cv_job("msp_improv"), _EMOTION_OVERRIDES),
], ids=["quickstart-pretrain", "quickstart-emotion_prompt", "pretrain_videos-pretrain", "iemocap-emotion_prompt",
        "msp_improv-emotion_prompt"])
def test_hydra_config_equals_command_line(config_dir, config_name, command, overrides):
    cli = _from_command_line(command())
    hydra = _from_hydra(os.path.join(REPO_ROOT, config_dir), config_name, overrides)
    assert hydra["model"].pop("_name") == "memobert" and cli["model"].pop("_name") in ("memobert_tiny", "memobert_base")
    for section in ("task", "model", "criterion", "optimizer", "lr_scheduler", "common", "dataset", "optimization",
                    "checkpoint", "distributed_training"):
        assert hydra[section] == cli[section], section


def test_hydra_run_writes_under_the_save_dir_and_takes_a_quoted_list(demo_corpus, tmp_path):
    """.hydra/ and hydra_train.log land next to the checkpoints, not in the working directory; a comma
    list given as README shows it (quoted: hydra reads a bare a,b as a sweep) reaches the task."""
    from conftest import BIN, run_cli

    cwd, save_dir = tmp_path / "cwd", tmp_path / "save"
    cwd.mkdir()
    proc = run_cli([f"{BIN}/fairseq-hydra-train", "--config-dir", os.path.join(REPO_ROOT, "examples/quickstart/config"),
                    "--config-name", "pretrain", f"task.data={demo_corpus.pretrain_data}", f"common.user_dir={PLUGIN_DIR}",
                    f"checkpoint.save_dir={save_dir}", 'task.objectives="wwmlm,span_mvfr"', "task.objective_ratios=[0.5,0.5]",
                    "optimization.max_update=1", "common.cpu=true", "dataset.disable_validation=true"], cwd=str(cwd))
    assert os.path.isfile(save_dir / ".hydra" / "config.yaml") and os.path.isfile(save_dir / "hydra_train.log")
    assert os.path.isfile(save_dir / "checkpoint_last.pt") and os.listdir(cwd) == []
    assert "'objectives': 'wwmlm,span_mvfr'" in open(save_dir / "hydra_train.log").read() + proc.stdout + proc.stderr
