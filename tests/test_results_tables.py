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
    wa_std, uar_std = per_seed.std(0)
    assert "| pretrain_prompt (no_span) | " + f"{100 * wa_mean:.2f} ± {100 * wa_std:.2f} | {100 * uar_mean:.2f} ± {100 * uar_std:.2f}" in text
    assert text.index("### Training data: 100%") < text.index("### Training data: 10%")
    csv_lines = open(tmp_path / "results.csv").read().splitlines()
    assert len(csv_lines) == 1 + 2 * 3 * 2
    png = tmp_path / "low_resource.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no result.json found"):
        write_tables(str(tmp_path))
