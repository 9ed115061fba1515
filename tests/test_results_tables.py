"""memobert-cv's tables: fold averages, mean and std over seeds, a row per checkpoint, Fig. 3."""

import json
import os

import numpy as np
import pytest

from memobert_plugin.evaluation.cli import write_tables


def _result(out, corpus, row, fraction, seed, fold, wa, uar):
    run = os.path.join(out, corpus, row.replace(" ", "_"), f"frac{fraction:g}", f"seed{seed}", f"fold{fold}")
    os.makedirs(run)
    with open(os.path.join(run, "result.json"), "w") as handle:
        json.dump({"corpus": corpus, "row": row, "train_fraction": fraction, "seed": seed, "fold": fold,
                   "test": {"wa": wa, "uar": uar}}, handle)


def test_tables_and_figure(tmp_path):
    rng = np.random.default_rng(0)
    scores = {}
    for corpus in ("iemocap", "msp"):
        for row in ("direct", "pretrain_prompt (full)", "pretrain_prompt (no_span)"):
            for fraction in (0.1, 1.0):
                for seed in (1, 2, 3):
                    for fold in (1, 2):
                        wa, uar = rng.uniform(0.5, 0.9, 2)
                        scores.setdefault((corpus, row, fraction, seed), []).append((wa, uar))
                        _result(str(tmp_path), corpus, row, fraction, seed, fold, wa, uar)
    text = write_tables(str(tmp_path))
    per_seed = np.array([np.mean(scores[("iemocap", "pretrain_prompt (no_span)", 1.0, s)], axis=0) for s in (1, 2, 3)])
    wa_mean, uar_mean = per_seed.mean(0)
    wa_std, uar_std = per_seed.std(0, ddof=1)
    assert "| pretrain_prompt (no_span) | " + f"{100 * wa_mean:.2f} ± {100 * wa_std:.2f} | {100 * uar_mean:.2f} ± {100 * uar_std:.2f}" in text
    assert text.index("### Training data: 100%") < text.index("### Training data: 10%")
    csv_lines = open(tmp_path / "results.csv").read().splitlines()
    assert len(csv_lines) == 1 + 2 * 3 * 2
    png = tmp_path / "low_resource.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no result.json found"):
        write_tables(str(tmp_path))


def test_cells_with_unequal_folds_are_marked(tmp_path):
    _result(str(tmp_path), "iemocap", "direct", 1.0, 1, 1, 0.5, 0.5)
    _result(str(tmp_path), "iemocap", "direct", 1.0, 1, 2, 0.7, 0.7)
    _result(str(tmp_path), "iemocap", "direct", 1.0, 2, 1, 0.6, 0.6)  # seed 2 has not run fold 2 yet
    text = write_tables(str(tmp_path))
    assert "| direct | 60.00 ± 0.00 * | 60.00 ± 0.00 * |" in text and "different folds" in text


def test_a_fold_directory_is_not_reused_for_other_options(tmp_path):
    from dataclasses import asdict

    from memobert_plugin.evaluation.cross_validation import FoldJob, run_fold_job

    job = FoldJob(corpus="c", data="/data", setting="pretrain_prompt", fold=1, seed=1, out_dir=str(tmp_path),
                  init_path="/ckpt/a.pt")
    with open(tmp_path / "result.json", "w") as handle:
        json.dump({**asdict(job), "row": job.row_label, "test": {"wa": 0.5, "uar": 0.4}}, handle)
    assert run_fold_job(job)["test"]["uar"] == 0.4  # the same job: its result is reused
    moved = FoldJob(**{**asdict(job), "out_dir": str(tmp_path), "keep_checkpoints": True})
    assert run_fold_job(moved)["test"]["uar"] == 0.4  # keeping checkpoints changes no result
    other = FoldJob(**{**asdict(job), "init_path": "/ckpt/b.pt", "lr": 1e-3})
    with pytest.raises(ValueError, match=r"result.json was made with other options \(init_path: '/ckpt/a.pt' there, "
                                         r"'/ckpt/b.pt' now, lr: None there, 0.001 now\)"):
        run_fold_job(other)


def test_per_class_tables_csv_and_confusion_figures(tmp_path):
    """Per-class figures come from the confusion matrix summed over folds and seeds; one figure per cell."""
    from sklearn.metrics import precision_recall_fscore_support

    from memobert_plugin.class_metrics import classification_report

    classes = ["anger", "happy", "neutral", "sad"]
    rng = np.random.default_rng(3)
    gold, predicted = [], []
    for seed in (1, 2):
        for fold in (1, 2, 3):
            y_true, y_pred = rng.integers(0, 4, 40), rng.integers(0, 4, 40)
            gold.append(y_true), predicted.append(y_pred)
            confusion = np.zeros((4, 4), dtype=int)
            np.add.at(confusion, (y_true, y_pred), 1)
            report = classification_report(confusion.tolist(), classes)
            run = os.path.join(tmp_path, "iemocap", "direct", "frac1", f"seed{seed}", f"fold{fold}")
            os.makedirs(run)
            with open(os.path.join(run, "result.json"), "w") as handle:
                json.dump({"corpus": "iemocap", "row": "direct", "train_fraction": 1.0, "seed": seed, "fold": fold,
                           "test": report}, handle)
    text = write_tables(str(tmp_path))
    y_true, y_pred = np.concatenate(gold), np.concatenate(predicted)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    assert "#### iemocap / direct: per class (counts pooled over 2 seed(s) x 3 fold(s))" in text
    assert (f"| sad | {100 * recall[3]:.2f} | {100 * precision[3]:.2f} | {100 * f1[3]:.2f} | {support[3]} | "
            + " | ".join(str(int(((y_true == 3) & (y_pred == p)).sum())) for p in range(4)) + " |") in text
    with open(tmp_path / "results.csv") as handle:
        header, row = [line.split(",") for line in handle.read().splitlines()]
    assert header[5:13] == ["wa_mean", "wa_std", "uar_mean", "uar_std", "macro_f1_mean", "macro_f1_std",
                            "weighted_f1_mean", "weighted_f1_std"]
    assert float(row[header.index("happy_recall")]) == pytest.approx(recall[1], abs=1e-6)
    png = tmp_path / "confusion" / "iemocap_direct_frac1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_says_how_each_corpus_was_split_and_has_weighted_f1(tmp_path):
    for corpus, scheme, fold, weighted in (("iemocap", "session", 1, 0.61), ("iemocap", "session", 2, 0.63),
                                           ("meld", "fixed", 1, 0.57)):
        _result(str(tmp_path), corpus, "direct", 1.0, 1, fold, 0.5, 0.5)
        path = os.path.join(tmp_path, corpus, "direct", "frac1", "seed1", f"fold{fold}", "result.json")
        with open(path) as handle:
            record = json.load(handle)
        record["cv_scheme"] = scheme
        record["test"].update(macro_f1=0.4, weighted_f1=weighted)
        with open(path, "w") as handle:
            json.dump(record, handle)
    text = write_tables(str(tmp_path))
    assert "| setting | iemocap WA | iemocap UAR | iemocap macro-F1 | iemocap weighted-F1 | meld WA |" in text
    assert "| direct | 50.00 | 50.00 | 40.00 | 62.00 | 50.00 | 50.00 | 40.00 | 57.00 |" in text
    assert ("Evaluated on: iemocap: speaker folds, validated on the test speaker's session partner; "
            "meld: the corpus's own train/valid/test split.") in text
    with open(tmp_path / "results.csv") as handle:
        rows = [line.split(",") for line in handle.read().splitlines()]
    assert [row[rows[0].index("cv_scheme")] for row in rows[1:]] == ["session", "fixed"]


def test_low_resource_figure_spaces_every_fraction(tmp_path, monkeypatch):
    """0% and 5% get their own places on the x axis (a linear axis put them on top of each other)."""
    from memobert_plugin.evaluation import results

    figures = []
    monkeypatch.setattr(results, "_save", lambda fig, path: figures.append(fig))
    rows = [results.SummaryRow("demo", row, fraction, 1, 2, 0.5, 0.01, 0.5, 0.01)
            for row, fractions in (("direct", (0.05, 0.2, 1.0)), ("pretrain_prompt", (0.0, 0.05, 0.2, 1.0)))
            for fraction in fractions]
    assert results.plot_low_resource(rows, str(tmp_path / "fig.png"))
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "5%", "20%", "100%"]
    ticks = ax.get_xticks()
    width = ax.get_xlim()[1] - ax.get_xlim()[0]
    assert min(np.diff(ticks)) / width > 0.2  # every fraction a category of its own
    for line in ax.get_lines():  # each setting's points sit at its fractions' ticks
        x = line.get_xdata()
        if len(x) > 1:
            assert np.abs(np.asarray(x) - ticks[-len(x):]).max() < 0.1
