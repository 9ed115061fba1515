"""fairseq merges task, model, criterion and global options into one namespace and silently keeps
one of two same-named fields: ours must not collide with each other or with fairseq's."""

import dataclasses

import pytest
from fairseq.dataclass.configs import FairseqConfig
from fairseq.optim.adam import FairseqAdamConfig
from fairseq.optim.lr_scheduler.polynomial_decay_schedule import PolynomialDecayLRScheduleConfig

from memobert_plugin.criterions import MemobertEmotionCriterionConfig, MemobertPretrainCriterionConfig
from memobert_plugin.models import MemobertConfig
from memobert_plugin.tasks import MemobertEmotionConfig, pretrain_config

# interpolations of fairseq's own values (``II("common.seed")``), not separate options
SHARED_ON_PURPOSE = {"seed", "train_subset"}


def _names(dc) -> set:
    return {f.name for f in dataclasses.fields(dc) if not f.name.startswith("_")}


def _fairseq_names() -> set:
    names = set()
    for group in dataclasses.fields(FairseqConfig):
        if dataclasses.is_dataclass(group.type):
            names |= _names(group.type)
    return names | _names(FairseqAdamConfig) | _names(PolynomialDecayLRScheduleConfig)


@pytest.mark.parametrize("task", [pretrain_config(), MemobertEmotionConfig])
def test_no_collisions(task):
    ours = [task, MemobertConfig, MemobertPretrainCriterionConfig, MemobertEmotionCriterionConfig]
    fairseq_names = _fairseq_names()
    for dc in ours:
        assert not (_names(dc) & fairseq_names) - SHARED_ON_PURPOSE, dc.__name__
    assert not _names(task) & _names(MemobertConfig)


def test_pretrain_options_are_live_after_an_extension_registers_an_objective():
    """user_dir's span_mafc registers after memobert_pretrain: its --mafc-codebook joins the options that
    fairseq parses and builds the task from, and there is no module-level class left to go stale.
    In a fresh interpreter: user_dir also declares a stream, which stays declared for the process."""
    import sys

    from conftest import REPO_ROOT, run_cli

    script = """
import dataclasses, sys
sys.path.insert(0, sys.argv[1])
from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY
import memobert_plugin.tasks, memobert_plugin.tasks.memobert_pretrain
from memobert_plugin.tasks import pretrain_config
import user_dir
assert "mafc_codebook" in {f.name for f in dataclasses.fields(pretrain_config())}
assert pretrain_config() is TASK_DATACLASS_REGISTRY["memobert_pretrain"]
assert getattr(TASK_REGISTRY["memobert_pretrain"], "__dataclass") is pretrain_config()
for module in (memobert_plugin.tasks, memobert_plugin.tasks.memobert_pretrain):
    assert not hasattr(module, "MemobertPretrainConfig"), module.__name__
print("live")
"""
    assert run_cli([sys.executable, "-c", script, REPO_ROOT]).stdout.strip().endswith("live")