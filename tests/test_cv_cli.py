"""memobert-cv's command line: arguments checked before anything starts, the ETA's format, progress parsing."""

import os
import re

import pytest

from memobert_plugin.evaluation.cli import format_duration, main
from memobert_plugin.evaluation.cross_validation import parse_valid_line


def _run(out, data, *extra):
    main(["run", "--out", out, "--corpus", f"demo={data}", "--arch", "memobert_tiny", *extra])


@pytest.mark.parametrize("extra, message", [
    (["--settings", "direct", "--folds", "99"], r"--folds: .* has 10 speakers, so folds are 1\.\.10, not 99"),
    (["--settings", "direct", "--folds", "0-2"], r"--folds 0-2: folds count from 1 \(a model on all speakers is --train-final\)"),
    (["--settings", "direct", "--folds", "x"], r"--folds 'x': expected 'all', '1,2' or '1-4'"),
    (["--settings", "direct", "--seeds", "1,a"], r"--seeds '1,a': expected comma-separated ints"),
    ([], r"setting bert_direct needs --bert-init DIR"),  # the default settings without the options they need
    (["--settings", "bert_direct"], r"setting bert_direct needs --bert-init DIR"),
    (["--settings", "pretrain_prompt"], r"setting pretrain_prompt needs --pretrained CHECKPOINT"),
    (["--settings", "pretrain_prompt", "--pretrained", "/no/such.pt"], r"--pretrained /no/such.pt: no such checkpoint"),
    (["--settings", "bert_direct", "--bert-init", "/no/such"], r"--bert-init /no/such: not a Hugging Face BERT directory"),
    (["--settings", "direkt"], r"unknown settings \['direkt'\]"),
])
def test_arguments_are_checked_before_anything_starts(demo_corpus, tmp_path, extra, message):
    out = str(tmp_path / "cv")
    with pytest.raises(SystemExit) as error:
        _run(out, demo_corpus.emotion_data, *extra)
    assert isinstance(error.value.code, str)  # a message, not a traceback
    assert re.search(message, error.value.code), error.value.code
    assert not os.path.exists(out)  # nothing left behind


def test_a_corpus_without_labels_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"--corpus .*/empty: no all.meta.tsv there"):
        _run(str(tmp_path / "cv"), str(tmp_path / "empty"), "--settings", "direct")


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (1, "0:01"), (59 * 60, "0:59"), (3600 + 61, "1:02"),
                                           (30 * 3600, "30:00")])
def test_eta_is_hours_and_minutes(seconds, text):
    assert format_duration(seconds) == text


def test_validation_lines_are_recognised():
    line = ('2026-12-01 00:40:02 | INFO | valid | {"epoch": 3, "valid_loss": "1.2", "valid_uar": "0.4375", '
            '"valid_confusion": [[1, 0], [2, 3]], "valid_num_updates": "30"}')
    assert parse_valid_line(line) == {"epoch": 3, "loss": 1.2, "uar": 0.4375, "confusion": [[1, 0], [2, 3]],
                                      "num_updates": 30.0}
    assert parse_valid_line('2026-12-01 | INFO | train | {"epoch": 3, "train_loss": "1"}') is None


def test_eta_counts_only_folds_run_here_and_folds_left_to_run(tmp_path, monkeypatch, caplog):
    """Finished folds (resumed sweep) neither speed up the rate nor count as work left."""
    from memobert_plugin.evaluation import cli
    from memobert_plugin.evaluation.cross_validation import FoldJob

    jobs = [FoldJob(corpus="c", data="/d", setting="direct", fold=f, seed=1, out_dir=str(tmp_path / f"fold{f}"))
            for f in range(1, 6)]
    for finished in (jobs[0], jobs[1], jobs[4]):
        os.makedirs(finished.out_dir)
        open(finished.result_path, "w").close()
    clock = [0.0]

    def fake_run(job, on_validation=None):
        if on_validation is not None:  # a fold that trains: 10 minutes
            clock[0] += 600
            on_validation({"epoch": 1, "uar": 0.5})
        return {"test": {"wa": 0.5, "uar": 0.5, "macro_f1": 0.5}}

    monkeypatch.setattr(cli, "run_fold_job", fake_run)
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    with caplog.at_level("INFO", logger="memobert.cv"):
        assert cli.run_sweep(jobs) == []
    lines = [r.getMessage() for r in caplog.records]
    assert "[1/5] c direct frac 1 seed 1 fold 1: done before" in lines
    assert "  c direct frac 1 seed 1 fold 3 epoch 1: valid UAR 0.5000" in lines
    assert lines[3].endswith("| ETA 0:10")  # one fold left to run (fold 5 is done), at 10 minutes a fold
    assert lines[5].endswith("| ETA 0:00")


def test_a_corpus_with_a_fixed_split_has_one_fold(tmp_path):
    from memobert_plugin.evaluation.cli import build_parser, check_inputs, plan_sweep

    data = tmp_path / "meld"
    data.mkdir()
    sizes = {"train": 5, "valid": 3, "test": 3}
    rows = [(f"{s}_dia0_utt{k}", ("Ross", "Rachel", "Joey")[k % 3], s) for s, n in sizes.items() for k in range(n)]
    (data / "all.meta.tsv").write_text("id\tspeaker\tsession\tlabel\tsubset\n"
                                       + "".join(f"{i}\t{sp}\t\tjoy\t{s}\n" for i, sp, s in rows))

    def jobs(*extra):
        args = build_parser().parse_args(["run", "--out", str(tmp_path / "cv"), "--corpus", f"meld={data}",
                                          "--settings", "direct", "--seeds", "1,2", "--batch-size", "1", *extra])
        planned = plan_sweep(args)
        check_inputs(planned)
        return planned

    fixed = jobs()
    assert [(j.fold, j.seed) for j in fixed] == [(1, 1), (1, 2)] and fixed[0].cv_scheme() == "fixed"
    assert fixed[0].train_updates() == 5 * 15  # the 5 train utterances, 15 epochs
    by_speaker = jobs("--", "--cv-scheme", "speaker")  # speaker folds stay available on such a corpus
    assert sorted({j.fold for j in by_speaker}) == [1, 2, 3] and by_speaker[0].cv_scheme() == "speaker"
    with pytest.raises(SystemExit, match=r"is evaluated on its fixed split .* its one fold: 1, not 2"):
        _run(str(tmp_path / "cv"), str(data), "--settings", "direct", "--folds", "2")
