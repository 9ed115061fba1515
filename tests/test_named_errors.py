"""Issue 24.6: the unclear stops outside prediction become named errors: a fold with no training
speaker, and the hydra example configs run without common.user_dir."""

import os
import re
import sys

import pytest

from conftest import BIN, REPO_ROOT, run_cli
from memobert_plugin.data.folds import fold_split
from memobert_plugin.data.utterance_meta import UtteranceMeta


def _meta(*speakers_sessions):
    return [UtteranceMeta(id=f"u{i}", speaker=speaker, session=session, label="happy")
            for i, (speaker, session) in enumerate(speakers_sessions)]


def test_a_fold_without_a_training_speaker_is_named():
    meta = _meta(("A", "S1"), ("A", "S1"), ("B", "S1"))  # one session of two: the test and its partner
    with pytest.raises(ValueError, match=r"fold 1 \(session scheme\): no training speaker left: A is tested, B "
                                         r"validates, and the corpus has no other speaker; .*--cv-scheme speaker"):
        fold_split(meta, 1)
    with pytest.raises(ValueError, match=r"fold 2 \(session scheme\): no training speaker left"):
        fold_split(meta, 2, "session")
    three = _meta(("A", "S1"), ("B", "S1"), ("C", "S2"))
    assert fold_split(three, 1).train.tolist() == [2]  # a speaker left to train on: no error


def test_hydra_configs_without_common_user_dir(demo_corpus, tmp_path, monkeypatch, capsys):
    """Run from another directory, fairseq names the plugin folder it looked for, not 'Could not infer task type'.

    fairseq-hydra-train in-process (the console script's own entry point): a new process would spend
    most of this test importing fairseq. Here the plugin is already loaded, so without the config's
    default the run would train instead of stopping."""
    from fairseq_cli.hydra_train import cli_main
    from hydra.core.global_hydra import GlobalHydra

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", [
        "fairseq-hydra-train", "--config-dir", os.path.join(REPO_ROOT, "examples/quickstart/config"),
        "--config-name", "pretrain", f"task.data={demo_corpus.pretrain_data}", f"checkpoint.save_dir={tmp_path / 'save'}",
        "optimization.max_update=1", "common.cpu=true", "dataset.disable_validation=true"])  # short, if it trains
    GlobalHydra.instance().clear()
    with pytest.raises((SystemExit, FileNotFoundError)) as stop:
        cli_main()
    said = str(stop.value) + "".join(capsys.readouterr())
    assert "Could not infer task type" not in said
    assert re.search(rf"FileNotFoundError: {re.escape(str(cwd))}/memobert_plugin|^{re.escape(str(cwd))}/memobert_plugin$",
                     said, flags=re.MULTILINE), said


@pytest.mark.slow
def test_hydra_configs_run_from_the_repository_root_find_the_plugin_themselves(demo_corpus, tmp_path):
    save_dir = tmp_path / "save"
    run_cli([f"{BIN}/fairseq-hydra-train", "--config-dir", "examples/quickstart/config", "--config-name", "pretrain",
             f"task.data={demo_corpus.pretrain_data}", f"checkpoint.save_dir={save_dir}", "optimization.max_update=1",
             "common.cpu=true", "dataset.disable_validation=true"], cwd=REPO_ROOT)
    assert os.path.isfile(save_dir / "checkpoint_last.pt")
