"""Collect fold results into the paper's tables: Table 2/3 (mean and std of WA, UAR, macro and weighted F1) and Fig. 3.

Per (corpus, row, fraction, seed) the fold results are averaged (the usual
cross-validation figure); the mean and standard deviation are then taken over seeds.
A corpus evaluated on its own fixed split (MELD) has one "fold" per seed; the tables say
per corpus whether speaker folds or the fixed split were used.
Per-class recall, precision and F1 of a cell come from its confusion matrix summed over
every fold and seed (pooled counts), drawn as one figure per cell.
"""

import csv
import glob
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from memobert_plugin.class_metrics import classification_report
from memobert_plugin.files import atomic_open
from memobert_plugin.evaluation.cross_validation import SETTINGS

__all__ = ["collect_results", "summarise", "write_markdown", "write_csv", "plot_low_resource", "plot_confusions",
           "SummaryRow"]

_SCORES = ("wa", "uar", "macro_f1", "weighted_f1")

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
    macro_f1_mean: float = float("nan")
    macro_f1_std: float = float("nan")
    weighted_f1_mean: float = float("nan")
    weighted_f1_std: float = float("nan")
    same_folds: bool = True  # every seed of the cell has the same folds (False: a sweep still running)
    cv_scheme: str = ""  # how the folds were made (data/folds.py: session, speaker, fixed); "" for older results
    classes: Sequence[str] = ()
    confusion: Sequence[Sequence[int]] = ()  # summed over the cell's folds and seeds; empty for older results

    def report(self) -> dict:
        """Per-class and pooled figures of the summed confusion matrix."""
        return classification_report(self.confusion, self.classes)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


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
        fold_results = [f["test"] for folds in seeds.values() for f in folds]
        scores = [m for m in _SCORES if all(m in f for f in fold_results)]  # results before F1 have WA/UAR only
        per_seed = {m: [np.mean([f["test"][m] for f in folds]) for folds in seeds.values()] for m in scores}
        fold_sets = {frozenset(f["fold"] for f in folds) for folds in seeds.values()}
        ddof = 1 if len(seeds) > 1 else 0  # the sample standard deviation over runs
        summary = {}
        for m in scores:
            summary[f"{m}_mean"], summary[f"{m}_std"] = float(np.mean(per_seed[m])), float(np.std(per_seed[m], ddof=ddof))
        schemes = {f.get("cv_scheme", "") for folds in seeds.values() for f in folds}
        classes = {tuple(f.get("classes", ())) for f in fold_results}
        pooled = len(classes) == 1 and all("confusion" in f for f in fold_results)
        rows.append(SummaryRow(
            corpus=corpus, row=row, fraction=fraction, seeds=len(seeds), folds=min(len(f) for f in fold_sets),
            same_folds=len(fold_sets) == 1, **summary, cv_scheme="/".join(sorted(schemes)),
            classes=next(iter(classes)) if pooled else (),
            confusion=np.sum([f["confusion"] for f in fold_results], axis=0).tolist() if pooled else (),
        ))
    return sorted(rows, key=lambda r: (r.corpus, -r.fraction, _row_key(r.row)))


def _pct(mean: float, std: float, row: SummaryRow) -> str:
    if np.isnan(mean):
        return "–"  # results from before this figure was recorded
    text = f"{100 * mean:.2f} ± {100 * std:.2f}" if row.seeds > 1 else f"{100 * mean:.2f}"
    return text if row.same_folds else text + " *"


_TABLE_SCORES = (("wa", "WA"), ("uar", "UAR"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted-F1"))
_SCHEME_WORDS = {"session": "speaker folds, validated on the test speaker's session partner",
                 "speaker": "speaker folds, leave one speaker out", "fixed": "the corpus's own train/valid/test split",
                 "": "not recorded (results from before the scheme was recorded)"}


def _evaluation_line(corpus: str, rows: Sequence[SummaryRow]) -> str:
    schemes = sorted({r.cv_scheme for r in rows if r.corpus == corpus})
    return f"{corpus}: " + "; ".join(_SCHEME_WORDS.get(s, s) for s in schemes)


def write_markdown(rows: Sequence[SummaryRow], path: str) -> str:
    """One table per training fraction: a row per setting (or checkpoint), WA, UAR, macro and weighted F1 per
    corpus, in percent; then how each corpus was split."""
    corpora = sorted({r.corpus for r in rows})
    lines = []
    for fraction in sorted({r.fraction for r in rows}, reverse=True):
        subset = [r for r in rows if r.fraction == fraction]
        lines.append(f"### Training data: {_percent(fraction)}\n")
        lines.append("| setting | " + " | ".join(f"{c} {name}" for c in corpora for _, name in _TABLE_SCORES) + " |")
        lines.append("|---|" + "---|" * len(_TABLE_SCORES) * len(corpora))
        for label in sorted({r.row for r in subset}, key=_row_key):
            cells = []
            for corpus in corpora:
                match = [r for r in subset if r.row == label and r.corpus == corpus]
                cells += ([_pct(getattr(match[0], f"{m}_mean"), getattr(match[0], f"{m}_std"), match[0])
                           for m, _ in _TABLE_SCORES] if match else [""] * len(_TABLE_SCORES))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        counts = {(r.seeds, r.folds) for r in subset}
        lines.append("\n" + "; ".join(f"{s} seed(s) x {f} fold(s)" for s, f in sorted(counts))
                     + " per cell; WA/UAR/macro-F1/weighted-F1 in %, mean ± sample std over seeds of the fold average.\n")
        lines.append("Evaluated on: " + "; ".join(_evaluation_line(c, subset) for c in corpora
                                                  if any(r.corpus == c for r in subset)) + ".\n")
        if not all(r.same_folds for r in subset):
            lines.append("\\* the seeds of this cell have different folds (an unfinished sweep): not comparable yet.\n")
        lines += [_per_class_table(r) for r in subset if r.confusion]
    text = "\n".join(lines)
    with atomic_open(path) as handle:
        handle.write(text)
    return text


def _per_class_table(row: SummaryRow) -> str:
    """Recall, precision, F1 and the confusion counts of a cell, pooled over its folds and seeds."""
    report = row.report()
    lines = [f"#### {row.corpus} / {row.row}: per class (counts pooled over {row.seeds} seed(s) x {row.folds} fold(s))\n",
             "| class | recall | precision | F1 | support | " + " | ".join(f"→ {c}" for c in row.classes) + " |",
             "|---|---|---|---|---|" + "---|" * len(row.classes)]
    for name, counts in zip(row.classes, row.confusion):
        scores = report["per_class"][name]
        lines.append(f"| {name} | {100 * scores['recall']:.2f} | {100 * scores['precision']:.2f} | {100 * scores['f1']:.2f} | "
                     f"{scores['support']} | " + " | ".join(str(c) for c in counts) + " |")
    lines.append(f"\npooled: macro-F1 {100 * report['macro_f1']:.2f}, weighted F1 {100 * report['weighted_f1']:.2f} "
                 "(rows: gold class, → columns: predicted).\n")
    return "\n".join(lines)


def write_csv(rows: Sequence[SummaryRow], path: str) -> None:
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        classes = sorted({c for r in rows for c in r.classes})
        writer.writerow(["corpus", "setting", "train_fraction", "seeds", "folds",
                         *(f"{m}_{stat}" for m in _SCORES for stat in ("mean", "std")), "cv_scheme",
                         *(f"{c}_{m}" for c in classes for m in ("recall", "precision", "f1"))])
        for r in rows:
            per_class = r.report()["per_class"] if r.confusion else {}
            writer.writerow([r.corpus, r.row, r.fraction, r.seeds, r.folds,
                             *(f"{getattr(r, f'{m}_{stat}'):.6f}" for m in _SCORES for stat in ("mean", "std")),
                             r.cv_scheme,
                             *(f"{per_class[c][m]:.6f}" if c in per_class else ""
                               for c in classes for m in ("recall", "precision", "f1"))])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    _pyplot().close(fig)


def plot_confusions(rows: Sequence[SummaryRow], out_dir: str) -> List[str]:
    """A confusion-matrix figure per cell with a pooled matrix: row-normalised colours (recall), counts written in."""
    cells = [r for r in rows if r.confusion]
    if not cells:
        return []
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for r in cells:
        counts = np.asarray(r.confusion, dtype=float)
        recall = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(1.2 * len(r.classes) + 2, 1.2 * len(r.classes) + 1.5))
        ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
        for g in range(len(r.classes)):
            for p in range(len(r.classes)):
                ax.text(p, g, f"{int(counts[g, p])}\n{100 * recall[g, p]:.0f}%", ha="center", va="center",
                        color="white" if recall[g, p] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(r.classes)), r.classes, rotation=45)
        ax.set_yticks(range(len(r.classes)), r.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{r.corpus} / {r.row} / {_percent(r.fraction)} data\n{r.seeds} seed(s) x {r.folds} fold(s)", fontsize=9)
        fig.tight_layout()
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{r.corpus}_{r.row}_frac{r.fraction:g}")
        path = os.path.join(out_dir, f"{name}.png")
        _save(fig, path)
        paths.append(path)
    return paths


def plot_low_resource(rows: Sequence[SummaryRow], path: str) -> bool:
    """Fig. 3: UAR against the training fraction, a line per setting, a panel per corpus.

    The fractions are evenly spaced categories (0%, 5%, 100% would crowd 0 and 5 on a linear axis, and 0 has no
    place on a log one); the settings' points are spread a little around each category, so error bars do not
    cover each other. Returns False (and draws nothing) when the sweep has a single fraction.
    """
    if len({r.fraction for r in rows}) < 2:
        return False
    plt = _pyplot()
    corpora = sorted({r.corpus for r in rows})
    fig, axes = plt.subplots(1, len(corpora), figsize=(5 * len(corpora), 4), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        fractions = sorted({r.fraction for r in rows if r.corpus == corpus})
        labels = sorted({r.row for r in rows if r.corpus == corpus}, key=_row_key)
        for i, label in enumerate(labels):
            points = sorted((r.fraction, r.uar_mean, r.uar_std) for r in rows if r.corpus == corpus and r.row == label)
            x, y, err = (np.array(v) for v in zip(*points))
            spread = 0.12 * (i - (len(labels) - 1) / 2) / max(len(labels) - 1, 1)
            ax.errorbar([fractions.index(f) + spread for f in x], 100 * y, yerr=100 * err, marker="o", capsize=3,
                        label=label)
        ax.set_xticks(range(len(fractions)), [_percent(f) for f in fractions])
        ax.set_xlim(-0.5, len(fractions) - 0.5)
        ax.set_title(corpus)
        ax.set_xlabel("labelled training data used")
        ax.set_ylabel("UAR (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return True
