"""Packaging: every third-party module the package imports is declared (install_requires or an extra), and
fairseq's --tensorboard-logdir works with the documented extra (memobert[tensorboard])."""

import ast
import os
import re
import sys
from importlib.metadata import packages_distributions, requires

import pytest

from conftest import BIN, PLUGIN_DIR, run_cli


def _imported_top_level_modules():
    modules = set()
    for root, _, files in os.walk(PLUGIN_DIR):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules.update(alias.name.split(".")[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"memobert_plugin"}


def _declared():
    """Distribution name -> extra ('' for install_requires), from the installed memobert's metadata."""
    declared = {}
    for requirement in requires("memobert"):
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")
        extra = re.search(r"extra == \"(\w+)\"", requirement)
        declared.setdefault(name, extra.group(1) if extra else "")
    return declared


def test_every_imported_distribution_is_declared():
    owners = packages_distributions()
    declared = _declared()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        distributions = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not distributions & set(declared):
            undeclared[module] = sorted(distributions)
    assert undeclared == {}, f"imported but not in setup.py: {undeclared}"
    assert declared["tqdm"] == "" and declared["tensorboardx"] == "tensorboard"


def test_tensorboard_logdir_with_the_extra(demo_corpus, tmp_path):
    pytest.importorskip("tensorboardX")  # what memobert[tensorboard] installs
    logdir = tmp_path / "tb"
    run_cli([f"{BIN}/fairseq-train", demo_corpus.emotion_data, "--user-dir", PLUGIN_DIR, "--task", "memobert_emotion",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--optimizer", "adam", "--lr", "1e-3",
             "--max-update", "2", "--batch-size", "16", "--num-workers", "0", "--cpu", "--log-interval", "1",
             "--save-dir", str(tmp_path / "ckpt"), "--tensorboard-logdir", str(logdir)])
    events = [name for _, _, files in os.walk(logdir) for name in files if name.startswith("events.out.tfevents")]
    assert events, f"no tensorboard event files under {logdir}"
