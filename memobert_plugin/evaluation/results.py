"""Collect fold results into the paper's tables: Table 2/3 (mean and std of WA and UAR) and Fig. 3.

Per (corpus, row, fraction, seed) the fold results are averaged (the usual
cross-validation figure); the mean and standard deviation are then taken over seeds.
"""

import csv
import glob
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from ..prepare.files import atomic_open
from .cross_validation import SETTINGS

__all__ = ["collect_results", "summarise", "write_markdown", "write_csv", "plot_low_resource", "SummaryRow"]

_SETTING_ORDER = tuple(SETTINGS)  # table rows in the paper's order of the settings


@dataclass
class SummaryRow:
    corpus: str
    row: str
    fraction: float
    seeds: int
    folds: int
    wa_mean: float
    wa_std: float
    uar_mean: float
    uar_std: float
    same_folds: bool = True  # every seed of the cell has the same folds (False: a sweep still running)


def collect_results(out_dir: str) -> List[dict]:
    """Every ``result.json`` under ``out_dir``."""
    results = []
    for path in sorted(glob.glob(os.path.join(out_dir, "**", "result.json"), recursive=True)):
        with open(path, encoding="utf-8") as handle:
            results.append(json.load(handle))
    return results


def _row_key(row: str) -> tuple:
    setting = row.split(" ")[0]
    return (_SETTING_ORDER.index(setting) if setting in _SETTING_ORDER else len(_SETTING_ORDER), row)


def summarise(results: Sequence[dict]) -> List[SummaryRow]:
    by_run: Dict[tuple, Dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_run[(r["corpus"], r["row"], float(r["train_fraction"]))][r["seed"]].append(r)
    rows = []
    for (corpus, row, fraction), seeds in by_run.items():
        per_seed = {m: [np.mean([f["test"][m] for f in folds]) for folds in seeds.values()] for m in ("wa", "uar")}
        fold_sets = {frozenset(f["fold"] for f in folds) for folds in seeds.values()}
        ddof = 1 if len(seeds) > 1 else 0  # the sample standard deviation over runs
        rows.append(SummaryRow(
            corpus=corpus, row=row, fraction=fraction, seeds=len(seeds), folds=min(len(f) for f in fold_sets),
            wa_mean=float(np.mean(per_seed["wa"])), wa_std=float(np.std(per_seed["wa"], ddof=ddof)),
            uar_mean=float(np.mean(per_seed["uar"])), uar_std=float(np.std(per_seed["uar"], ddof=ddof)),
            same_folds=len(fold_sets) == 1,
        ))
    return sorted(rows, key=lambda r: (r.corpus, -r.fraction, _row_key(r.row)))


def _pct(mean: float, std: float, row: SummaryRow) -> str:
    text = f"{100 * mean:.2f} ± {100 * std:.2f}" if row.seeds > 1 else f"{100 * mean:.2f}"
    return text if row.same_folds else text + " *"


def write_markdown(rows: Sequence[SummaryRow], path: str) -> str:
    """One table per training fraction: a row per setting (or checkpoint), WA and UAR per corpus, in percent."""
    corpora = sorted({r.corpus for r in rows})
    lines = []
    for fraction in sorted({r.fraction for r in rows}, reverse=True):
        subset = [r for r in rows if r.fraction == fraction]
        lines.append(f"### Training data: {100 * fraction:g}%\n")
        lines.append("| setting | " + " | ".join(f"{c} WA | {c} UAR" for c in corpora) + " |")
        lines.append("|---|" + "---|---|" * len(corpora))
        for label in sorted({r.row for r in subset}, key=_row_key):
            cells = []
            for corpus in corpora:
                match = [r for r in subset if r.row == label and r.corpus == corpus]
                cells += ([_pct(match[0].wa_mean, match[0].wa_std, match[0]),
                           _pct(match[0].uar_mean, match[0].uar_std, match[0])] if match else ["", ""])
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        counts = {(r.seeds, r.folds) for r in subset}
        lines.append("\n" + "; ".join(f"{s} seed(s) x {f} fold(s)" for s, f in sorted(counts))
                     + " per cell; WA/UAR in %, mean ± sample std over seeds of the fold average.\n")
        if not all(r.same_folds for r in subset):
            lines.append("\\* the seeds of this cell have different folds (an unfinished sweep): not comparable yet.\n")
    text = "\n".join(lines)
    with atomic_open(path) as handle:
        handle.write(text)
    return text


def write_csv(rows: Sequence[SummaryRow], path: str) -> None:
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["corpus", "setting", "train_fraction", "seeds", "folds", "wa_mean", "wa_std", "uar_mean", "uar_std"])
        for r in rows:
            writer.writerow([r.corpus, r.row, r.fraction, r.seeds, r.folds,
                             f"{r.wa_mean:.6f}", f"{r.wa_std:.6f}", f"{r.uar_mean:.6f}", f"{r.uar_std:.6f}"])


def plot_low_resource(rows: Sequence[SummaryRow], path: str) -> bool:
    """Fig. 3: UAR against the training fraction, a line per setting, a panel per corpus.

    Returns False (and draws nothing) when the sweep has a single fraction.
    """
    if len({r.fraction for r in rows}) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = sorted({r.corpus for r in rows})
    fig, axes = plt.subplots(1, len(corpora), figsize=(5 * len(corpora), 4), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for label in sorted({r.row for r in rows if r.corpus == corpus}, key=_row_key):
            points = sorted((r.fraction, r.uar_mean, r.uar_std) for r in rows if r.corpus == corpus and r.row == label)
            x, y, err = (np.array(v) for v in zip(*points))
            ax.errorbar(100 * x, 100 * y, yerr=100 * err, marker="o", capsize=3, label=label)
        ax.set_title(corpus)
        ax.set_xlabel("training data (%)")
        ax.set_ylabel("UAR (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return True
