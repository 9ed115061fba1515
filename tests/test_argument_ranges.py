"""Issue 24.4: every numeric and structural argument is checked before any work, in one line naming
the option and its allowed range: the tasks' options in their setup (before the data is read), the
console scripts' in argument parsing (before models, extraction or fold directories)."""

import logging
import os
import re

import pytest

from memobert_plugin.evaluation.cli import main as cv_main
from memobert_plugin.option_ranges import OptionRangeError
from memobert_plugin.prepare.cli import main as prepare_main
from memobert_plugin.prepare.fer.train import main as train_fer_main
from memobert_plugin.tasks.memobert_emotion import MemobertEmotionConfig, MemobertEmotionTask
from memobert_plugin.tasks.memobert_pretrain import MemobertPretrainTask, pretrain_config


@pytest.mark.parametrize("option, value, allowed", [
    ("frame_mask_span", 0, ">= 1"),
    ("acoustic_max_frames", -1, ">= 1"),
    ("visual_max_frames", 0, ">= 1"),
    ("text_max_tokens", 1, ">= 3"),
])
def test_pretraining_options_out_of_range_stop_before_the_data_is_read(tmp_path, option, value, allowed):
    cfg = pretrain_config()(data=str(tmp_path / "no-data-here"), seed=1, **{option: value})
    with pytest.raises(OptionRangeError, match=rf"^--{option.replace('_', '-')} {value} is out of range: "
                                               rf"allowed {re.escape(allowed)}$"):
        MemobertPretrainTask.setup_task(cfg)


@pytest.mark.parametrize("option, value, allowed", [
    ("train_fraction", 2.0, "0..1"),
    ("train_fraction", -0.5, "0..1"),
    ("fold", -1, ">= 0"),
    ("acoustic_max_frames", 0, ">= 1"),
])
def test_emotion_options_out_of_range_stop_before_the_data_is_read(tmp_path, option, value, allowed):
    cfg = MemobertEmotionConfig(data=str(tmp_path / "no-data-here"), seed=1, **{option: value})
    with pytest.raises(OptionRangeError, match=rf"^--{option.replace('_', '-')} {value} is out of range: "
                                               rf"allowed {re.escape(allowed)}$"):
        MemobertEmotionTask.setup_task(cfg)


def test_objective_ratios_not_summing_to_one_are_named_normalised_in_sample_mode(demo_corpus, caplog):
    ratios = [0.4, 0.2, 0.2, 0.02]
    with caplog.at_level(logging.WARNING):
        MemobertPretrainTask.setup_task(pretrain_config()(data=demo_corpus.pretrain_data, seed=1,
                                                          objective_ratios=ratios))
    assert ("--objective-ratios [0.4, 0.2, 0.2, 0.02] sum to 0.82, not 1: objectives are drawn with the "
            "normalised ratios wwmlm 0.488, span_mvfr 0.244, span_mvfc_kl 0.244, span_mafr 0.024") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # sum mode: the ratios are loss weights, summing to anything
        MemobertPretrainTask.setup_task(pretrain_config()(data=demo_corpus.pretrain_data, seed=1,
                                                          objective_ratios=ratios, objective_mode="sum"))
        MemobertPretrainTask.setup_task(pretrain_config()(data=demo_corpus.pretrain_data, seed=1))
    assert "--objective-ratios" not in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["--fractions", "2"], r"--fractions 2\.0 is out of range: allowed 0\.\.1"),
    (["--fractions", "0.5,nan"], r"--fractions nan is not finite: allowed 0\.\.1"),
    (["--batch-size", "0"], r"argument --batch-size: 0 is out of range: allowed >= 1"),
    (["--max-epoch", "-1"], r"argument --max-epoch: -1 is out of range: allowed >= 1"),
    (["--lr", "0"], r"argument --lr: 0\.0 is out of range: allowed > 0"),
    (["--seeds", "1,-2"], r"--seeds -2 is out of range: allowed >= 0"),
])
def test_cv_arguments_out_of_range_stop_before_any_fold(demo_corpus, tmp_path, capsys, extra, message):
    out = str(tmp_path / "cv")
    with pytest.raises(SystemExit) as stop:
        cv_main(["run", "--out", out, "--corpus", f"demo={demo_corpus.emotion_data}", "--settings", "direct", *extra])
    said = stop.value.code if isinstance(stop.value.code, str) else capsys.readouterr().err
    assert re.search(message, said), said
    assert not os.path.exists(out)


def test_cv_corpus_without_a_name_is_refused(demo_corpus, tmp_path):
    out = str(tmp_path / "cv")
    with pytest.raises(SystemExit, match=r"--corpus \S+: expected NAME=DATA_DIR \(e\.g\. iemocap=data-bin/iemocap\)"):
        cv_main(["run", "--out", out, "--corpus", demo_corpus.emotion_data, "--settings", "direct"])
    assert not os.path.exists(out)


PREPARE_RANGES = [
    (["acoustic", "--pool", "0"], "--pool: 0 is out of range: allowed >= 1"),
    (["acoustic", "--acoustic-features", "egemaps", "--pool", "2"],
     "--pool applies to --acoustic-features wav2vec2; eGeMAPS descriptors are always pooled to 60 ms"),
    (["acoustic", "--layer", "0"], "--layer: 0 is out of range: allowed >= 1"),
    (["acoustic", "--workers", "0"], "--workers: 0 is out of range: allowed >= 1"),
    (["acoustic", "--threads", "-1"], "--threads: -1 is out of range: allowed >= 1"),
    (["acoustic", "--max-seconds", "0"], "--max-seconds: 0.0 is out of range: allowed > 0"),
    (["acoustic", "--max-seconds", "inf"], "--max-seconds: inf is not finite: allowed > 0"),
    (["visual", "--fer-model", "x.pt", "--fps", "0"], "--fps: 0.0 is out of range: allowed > 0"),
    (["visual", "--fer-model", "x.pt", "--detect-every", "0"], "--detect-every: 0 is out of range: allowed >= 1"),
    (["manifest", "--shard-size", "0"], "--shard-size: 0 is out of range: allowed >= 1"),
    (["sentencepiece", "--spm-vocab-size", "3"], "--spm-vocab-size: 3 is out of range: allowed >= 8"),
]


@pytest.mark.parametrize("args, message", PREPARE_RANGES)
def test_prepare_arguments_out_of_range_stop_in_argument_parsing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        prepare_main([*args, "--manifest", str(tmp_path / "m.tsv"), "--out", str(out)])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # no lock, no work dir


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: 0 is out of range: allowed >= 1"),
    (["--epochs", "0"], "--epochs: 0 is out of range: allowed >= 1"),
    (["--lr", "-1"], "--lr: -1.0 is out of range: allowed > 0"),
    (["--depth", "12"], "--depth 12: DenseNet-BC depth must be 6n+4"),
    (["--growth-rate", "0"], "--growth-rate: 0 is out of range: allowed 1..64"),
])
def test_train_fer_arguments_out_of_range_stop_before_reading_the_data(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        train_fer_main(["--fer2013", str(tmp_path / "none.csv"), "--ferplus", str(tmp_path / "none.csv"),
                        "--out", str(tmp_path / "fer.pt"), *args])
    said = stop.value.code if isinstance(stop.value.code, str) else capsys.readouterr().err
    assert message in said


@pytest.mark.parametrize("options, message", [
    ({"max_sentences": 0}, "--batch-size 0 is out of range: allowed >= 1"),
    ({"max_sentences": -1}, "--batch-size -1 is out of range: allowed >= 1"),
    ({"max_tokens": 0, "max_sentences": None}, "--max-tokens 0 is out of range: allowed >= 1"),
])
def test_a_batch_size_below_one_is_refused_not_taken_for_no_limit(demo_corpus, options, message):
    """fairseq batches a whole split at once for --batch-size 0 or -1."""
    task = MemobertEmotionTask.setup_task(MemobertEmotionConfig(data=demo_corpus.emotion_data, seed=1))
    task.load_dataset("valid")
    with pytest.raises(OptionRangeError, match=f"^{re.escape(message)}$"):
        task.get_batch_iterator(task.dataset("valid"), **options)
    assert len(task.get_batch_iterator(task.dataset("valid"), max_sentences=8).next_epoch_itr()) > 1
