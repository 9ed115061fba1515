"""memobert_pretrain through fairseq's own entry points: train, resume, validate with weights-only loading."""

import os

import torch

from conftest import BIN, json_logs, run_cli
from memobert_plugin.checkpoints.safe_loading import ALLOWED_GLOBALS


def _train_args(data, plugin_dir, save_dir, updates, *extra):
    return [
        f"{BIN}/fairseq-train", data, "--user-dir", plugin_dir, "--task", "memobert_pretrain", "--arch", "memobert_tiny",
        "--criterion", "memobert_pretrain", "--objective-mode", "sum", "--optimizer", "adam", "--lr", "1e-3",
        "--lr-scheduler", "fixed", "--max-update", str(updates), "--batch-size", "16", "--num-workers", "0",
        "--save-dir", save_dir, "--log-format", "json", "--log-interval", "5", "--seed", "1", "--cpu", *extra,
    ]


def test_pretrain_train_resume_validate(demo_corpus, plugin_dir, tmp_path):
    save_dir = str(tmp_path / "ckpt")
    first = run_cli(_train_args(demo_corpus.pretrain_data, plugin_dir, save_dir, 50))
    inner = json_logs(first.stdout + first.stderr, "train_inner")
    losses = [float(r["loss"]) for r in inner]
    assert len(losses) >= 8 and losses[-1] < 0.85 * losses[0], losses
    for key in ("wwmlm_loss", "wwmlm_acc", "span_mafr_loss", "span_mvfr_loss", "span_mvfc_kl_loss", "span_mvfc_kl_agree"):
        assert key in inner[-1]
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        path = os.path.join(save_dir, name)
        assert os.path.exists(path)
        # whatever the checkpoint needs beyond tensors and containers is on the explicit allowlist
        assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) <= {
            f"{g.__module__}.{g.__qualname__}" for g in ALLOWED_GLOBALS}

    resumed = run_cli(_train_args(demo_corpus.pretrain_data, plugin_dir, save_dir, 60))
    out = resumed.stdout + resumed.stderr
    assert "Loaded checkpoint" in out and "@ 50 updates" in out
    assert int(json_logs(out, "train")[-1]["train_num_updates"]) == 60

    validated = run_cli([
        f"{BIN}/fairseq-validate", demo_corpus.pretrain_data, "--user-dir", plugin_dir, "--task", "memobert_pretrain",
        "--path", os.path.join(save_dir, "checkpoint_last.pt"), "--batch-size", "16", "--cpu", "--log-format", "json",
    ])
    valid = json_logs(validated.stdout + validated.stderr, "valid")[-1]
    last_train_valid = json_logs(out, "valid")[-1]
    # the same checkpoint on the same data and masks: the numbers fairseq-train printed
    assert valid["valid_loss"] == last_train_valid["valid_loss"]
    assert valid["valid_wwmlm_acc"] == last_train_valid["valid_wwmlm_acc"]


def test_ablation_flags_parse(plugin_dir, demo_corpus):
    from fairseq import options

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        demo_corpus.pretrain_data, "--user-dir", plugin_dir, "--task", "memobert_pretrain", "--arch", "memobert_base",
        "--criterion", "memobert_pretrain", "--mlm-masking-unit", "token", "--frame-mask-span", "1",
        "--objectives", "wwmlm,span_mvfr,span_mvfc_kl,span_mafr", "--objective-ratios", "[0.5,0.5,0,0]",
    ])
    assert args.mlm_masking_unit == "token" and args.frame_mask_span == 1
    assert list(args.objective_ratios) == [0.5, 0.5, 0.0, 0.0]
    assert (args.encoder_layers, args.encoder_embed_dim, args.encoder_attention_heads, args.encoder_ffn_embed_dim) == (12, 768, 12, 3072)
    args = options.parse_args_and_arch(options.get_training_parser(), [
        demo_corpus.pretrain_data, "--user-dir", plugin_dir, "--task", "memobert_pretrain", "--arch", "memobert_tiny",
        "--encoder-layers", "3"])
    assert (args.encoder_layers, args.encoder_embed_dim) == (3, 64)  # explicit flags beat the arch's defaults
