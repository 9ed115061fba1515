"""memobert_plugin imported before fairseq still registers everything with fairseq once fairseq is imported,
whoever imports it (a program, or a module of the package at its top), so no caller has to call register()."""

import subprocess
import sys

import pytest

_CHECK = """
import sys
sys.modules["torchaudio"] = None
{imports}
import fairseq_cli.train
from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY
assert {{"memobert_pretrain", "memobert_emotion"}} <= set(TASK_REGISTRY), sorted(TASK_REGISTRY)
assert "memobert_tiny" in ARCH_MODEL_REGISTRY
assert checkpoint_utils.load_checkpoint_to_cpu.__module__ == "memobert_plugin.checkpoint_policy", "checkpoint check"
assert checkpoint_utils.verify_checkpoint_directory.__module__ == "memobert_plugin.run_guards", "run guards"
assert fairseq_cli.train.train.__module__ == "memobert_plugin.run_guards", "run guards"
"""


@pytest.mark.parametrize("imports", [
    "import memobert_plugin.cluster.pretrain; from fairseq import options",  # memobert-launch checks arguments
    "import memobert_plugin.cluster.pretrain; from fairseq_cli.train import cli_main",  # its job runs fairseq-train
    "import memobert_plugin.inference",  # a module of the package that imports fairseq at its top
    "import memobert_plugin.atomic_checkpoints",  # ... one that register() itself needs
])
def test_importing_fairseq_after_the_package_registers_it(imports):
    proc = subprocess.run([sys.executable, "-c", _CHECK.format(imports=imports)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
