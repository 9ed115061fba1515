"""The worked extension in user_dir/: a new objective and a new label set, through fairseq's --user-dir."""

import math
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, json_logs, run_cli

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
                   "--max-update", "20", "--batch-size", "16", "--cpu", "--num-workers", "0", "--save-dir", pretrain,
                   "--log-format", "json"])
    (epoch,) = json_logs(out.stdout + out.stderr, "train")[-1:]
    assert int(epoch["train_span_mafc_nbatches"]) > 0 and math.isfinite(float(epoch["train_span_mafc_acc"]))

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


def _with_prosody(source: str, target, dim: int = 25) -> str:
    """The pretraining corpus plus a prosody stream: 0-60 frames per utterance, descriptors of unlike scales."""
    from memobert_plugin.data.feature_store import FeatureStore, FeatureStoreWriter

    shutil.copytree(source, target)
    rng = np.random.default_rng(0)
    scales = np.geomspace(0.01, 300.0, dim)  # jitter ... pitch in Hz
    for split in ("train", "valid"):
        writer = FeatureStoreWriter(str(target), split, "prosody", dim)
        for i in range(len(FeatureStore(source, split, "acoustic"))):
            frames = rng.standard_normal((rng.integers(0, 61), dim)).cumsum(0) * 0.1 + 1.0
            writer.append((frames * scales).astype(np.float32), item=f"{split}:{i}")
        writer.close()
    return str(target)


def test_extension_frame_stream(demo_corpus, tmp_path):
    """user_dir/prosody.py declares a stream, its embedder and span_mpfr: fairseq-train and fairseq-validate
    read the stream, bound it by --prosody-max-frames and train the objective on it."""
    import torch

    data = _with_prosody(demo_corpus.pretrain_data, tmp_path / "data")
    save_dir = str(tmp_path / "prosody")
    out = run_cli([f"{BIN}/fairseq-train", data, "--user-dir", USER_DIR, "--task", "memobert_pretrain",
                   "--arch", "memobert_tiny", "--criterion", "memobert_pretrain", "--objectives", "wwmlm,span_mpfr",
                   "--objective-ratios", "[0.5,0.5]", "--prosody-max-frames", "40", "--optimizer", "adam", "--lr", "1e-3",
                   "--max-update", "12", "--batch-size", "16", "--cpu", "--num-workers", "0", "--save-dir", save_dir,
                   "--log-format", "json"])
    # every epoch's summary (the last one may hold only the 2 updates past the first epoch's 10)
    epochs = json_logs(out.stdout + out.stderr, "train")
    assert sum(int(epoch["train_span_mpfr_nbatches"]) for epoch in epochs) > 0
    assert all(math.isfinite(float(epoch["train_span_mpfr_loss"])) for epoch in epochs
               if int(epoch["train_span_mpfr_nbatches"]))
    checkpoint = os.path.join(save_dir, "checkpoint_last.pt")
    state = torch.load(checkpoint, weights_only=False)
    assert state["cfg"]["task"]["prosody_max_frames"] == 40 and state["cfg"]["model"]["prosody_feature_dim"] == 25
    assert state["model"]["frames.prosody.projection.weight"].shape == (64, 25)
    validated = run_cli([f"{BIN}/fairseq-validate", data, "--user-dir", USER_DIR, "--task", "memobert_pretrain",
                         "--path", checkpoint, "--valid-subset", "valid", "--batch-size", "16", "--cpu",
                         "--log-format", "json"])
    (valid,) = json_logs(validated.stdout + validated.stderr, "valid")
    assert int(valid["valid_span_mpfr_nbatches"]) > 0 and math.isfinite(float(valid["valid_span_mpfr_loss"]))


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
