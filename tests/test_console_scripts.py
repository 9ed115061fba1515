"""Every console script answers --help without importing torch or fairseq (what makes --help take seconds);
benchmarks/cli_help.py times them."""

import subprocess
import sys
from importlib.metadata import distribution

import pytest

#: run in a fresh interpreter: torch and fairseq cannot be imported, then the script's main() gets --help
_BLOCKED_HELP = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "fairseq", "tensorboardX"):
            raise ImportError(f"{name} imported by --help")
sys.meta_path.insert(0, Blocker())
from importlib.metadata import entry_points
script, = [e for e in entry_points(group="console_scripts") if e.name == sys.argv[1]]
sys.argv = [script.name, "--help"]
script.load()()
"""

SCRIPTS = sorted(e.name for e in distribution("memobert").entry_points if e.group == "console_scripts")


def test_every_console_script_is_checked():
    assert {"memobert-cv", "memobert-prepare", "memobert-export-hf", "memobert-predict", "memobert-bundle"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_imports_neither_torch_nor_fairseq(script):
    proc = subprocess.run([sys.executable, "-c", _BLOCKED_HELP, script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage: ") and "Please install tensorboardX" not in proc.stdout + proc.stderr


def test_no_tensorboardx_nag_when_fairseq_loads_without_it():
    code = ("import sys; sys.modules['tensorboardX'] = None; sys.modules['torch.utils.tensorboard'] = None; "
            "sys.modules['torchaudio'] = None; import memobert_plugin.prepare.binarize")  # a module that imports fairseq
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Please install tensorboardX" not in proc.stdout + proc.stderr
