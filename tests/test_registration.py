"""Registration: importing a module of the package (a helper, a console script's module) registers and patches
nothing, even once fairseq is imported after it; ``--user-dir`` (the package imported after fairseq) and
``register()`` register everything and install :mod:`memobert_plugin.fairseq_patches`. Each in a fresh interpreter."""

import subprocess
import sys

import pytest

#: every fairseq function fairseq_patches replaces, as "module:attribute"
PATCHED = ["fairseq.checkpoint_utils:load_checkpoint_to_cpu", "fairseq.checkpoint_utils:load_checkpoint",
           "fairseq.checkpoint_utils:torch_persistent_save", "fairseq.file_io:PathManager.copy",
           "fairseq_cli.train:train", "fairseq.trainer:Trainer.load_checkpoint"]

_CHECK = """
import sys, importlib
sys.modules["torchaudio"] = None
{imports}
def owner(spec):
    module, attribute = spec.split(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value.__module__
owners = {{spec: owner(spec) for spec in {patched!r}}}
from fairseq.tasks import TASK_REGISTRY
print({{"owners": owners, "memobert_tasks": sorted(t for t in TASK_REGISTRY if t.startswith("memobert"))}})
"""

#: the console scripts' modules (setup.py) and helpers, some importing fairseq at their top
HELPERS = ["memobert_plugin.class_metrics", "memobert_plugin.prepare.demo_corpus", "memobert_plugin.prepare.cli",
           "memobert_plugin.prepare.fer.train", "memobert_plugin.evaluation.cli", "memobert_plugin.inference.cli",
           "memobert_plugin.inference.export_hf", "memobert_plugin.inference.bundle", "memobert_plugin.cluster.launch",
           "memobert_plugin.cluster.pretrain", "memobert_plugin.inference.predictor", "memobert_plugin.prepare.binarize"]


def _state(imports: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHECK.format(imports=imports, patched=PATCHED)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307  (our own child's printed dict)


def test_importing_modules_of_the_package_patches_nothing():
    state = _state("\n".join(f"import {module}" for module in HELPERS) + "\nimport fairseq, fairseq_cli.train")
    assert all(not owner.startswith("memobert_plugin") for owner in state["owners"].values()), state["owners"]


@pytest.mark.parametrize("imports", [
    "import fairseq\nimport memobert_plugin",  # what --user-dir does
    "import memobert_plugin.class_metrics\nimport memobert_plugin\nmemobert_plugin.register()",  # a program's own call
])
def test_user_dir_or_register_installs_every_patch(imports):
    state = _state(imports)
    assert set(state["owners"].values()) == {"memobert_plugin.fairseq_patches"}, state["owners"]
    assert {"memobert_pretrain", "memobert_emotion"} <= set(state["memobert_tasks"])


def test_the_pretraining_job_registers_before_parsing():
    """memobert-launch's job imports memobert_plugin before fairseq (fairseq's --user-dir then skips it)."""
    state = _state("from memobert_plugin.cluster.pretrain import check_fairseq_args\n"
                   "check_fairseq_args(['/nonexistent', '--task', 'memobert_pretrain', '--arch', 'memobert_tiny'])")
    assert set(state["owners"].values()) == {"memobert_plugin.fairseq_patches"}
