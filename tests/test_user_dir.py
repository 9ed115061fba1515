"""The worked extension in user_dir/: a new objective and a new label set, through fairseq's --user-dir."""

import os
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, run_cli

BIN = os.path.dirname(sys.executable)
USER_DIR = os.path.join(REPO_ROOT, "user_dir")


def test_extension_objective_and_task(demo_corpus, tmp_path):
    codebook = str(tmp_path / "km8.npy")
    run_cli([sys.executable, "-m", "user_dir.fit_codebook", demo_corpus.pretrain_data, "--clusters", "8",
             "--max-frames", "2000", "--out", codebook], cwd=REPO_ROOT)
    assert np.load(codebook).shape == (8, 768)
    pretrain = str(tmp_path / "pretrain")
    out = run_cli([f"{BIN}/fairseq-train", demo_corpus.pretrain_data, "--user-dir", USER_DIR, "--task", "memobert_pretrain",
                   "--arch", "memobert_tiny", "--criterion", "memobert_pretrain", "--objectives", "wwmlm,span_mafc",
                   "--objective-ratios", "[0.5,0.5]", "--mafc-codebook", codebook, "--optimizer", "adam", "--lr", "1e-3",
                   "--max-update", "20", "--batch-size", "16", "--cpu", "--num-workers", "0", "--save-dir", pretrain])
    assert "span_mafc_acc" in out.stdout + out.stderr

    finetuned = str(tmp_path / "valence")
    run_cli([f"{BIN}/fairseq-train", demo_corpus.emotion_data, "--user-dir", USER_DIR, "--task", "memobert_valence",
             "--arch", "memobert_tiny", "--criterion", "memobert_emotion", "--emotion-head", "prompt",
             "--prompt-label-words", "mad,fine,glad", "--memobert-init", os.path.join(pretrain, "checkpoint_best.pt"),
             "--optimizer", "adam", "--lr", "1e-3", "--max-epoch", "1", "--batch-size", "16", "--cpu",
             "--num-workers", "0", "--save-dir", finetuned, "--best-checkpoint-metric", "uar",
             "--maximize-best-checkpoint-metric"])
    validated = run_cli([f"{BIN}/fairseq-validate", demo_corpus.emotion_data, "--user-dir", USER_DIR, "--task",
                         "memobert_valence", "--path", os.path.join(finetuned, "checkpoint_best.pt"),
                         "--valid-subset", "test", "--batch-size", "16", "--cpu"])
    assert "| wa " in validated.stdout + validated.stderr


def test_valence_classes(demo_corpus):
    sys.path.insert(0, REPO_ROOT)
    from user_dir import MemobertValenceTask, ValenceConfig

    task = MemobertValenceTask.setup_task(ValenceConfig(data=demo_corpus.emotion_data, seed=1))
    assert task.class_names == ["negative", "neutral", "positive"]
    expected = {"anger": 0, "sad": 0, "neutral": 1, "happy": 2}
    assert all(task.labels[i] == expected[row.label] for i, row in enumerate(task.meta))


def test_objective_option_clash_is_refused():
    from dataclasses import dataclass

    from fairseq.dataclass import FairseqDataclass

    from memobert_plugin.objectives import SpanMaskedFrames, register_objective

    @dataclass
    class Clashing(FairseqDataclass):
        mlm_mask_prob: float = 0.3

    with pytest.raises(ValueError, match=r"config fields \['mlm_mask_prob'\] are already defined by \['WwmlmConfig'\]"):
        register_objective("clashing", Clashing)(type("Clash", (SpanMaskedFrames,), {}))
