"""What MEmoBERT should show, measured on the demo world: Table 2 and Fig. 3 (no labels, 5% and all of
the labels), the negative control, honest baselines and Table 3's pretraining ablations, per
(seed, fold) pair.

    python benchmarks/demo_world.py --out demo-bench                    # seeds 1,2 x folds 1-8, 2 processes
    python benchmarks/demo_world.py --out demo-bench --seeds 1,2,3 --ablations   # + Table 3 on seeds 1,2,3

Every run is ``examples/quickstart/run.sh`` (the quickstart's exact commands) with other knobs:
per seed, the world of that seed, one pretraining and the Direct / Pretrain+Finetune /
Pretrain+Prompt folds (no labels and 5% on ``--folds``; all labels, the costly fine-tunings, on
``--all-label-folds``, a second call reusing the world and the pretraining); the negative control
(``--shuffle-links``: emotion words shuffled away from their face and voice) pretrains on its own
world and prompts with no labels; each ablation pretrains on the seed's world with one change and
prompts with no labels on ``--ablation-folds``. Folds are cross-validation jobs on one
pretraining, so more folds are cheap; runs go ``--jobs`` at a time, one thread each. Beside
them, per seed and fold (numpy, no training of MEmoBERT): the distant-supervision baseline (a
linear classifier trained only on the pretraining split, labelled by its texts' emotion words,
on pooled face + voice) and linear probes per modality and fused, trained on the fold's labels. Per pretraining, each objective's own validation figure
against its trivial baseline (regression: explained variance against predicting each dimension's
mean; FER: KL against predicting the FER prior; MLM: accuracy).

A rerun reuses every finished fold. Prints the tables (means over (seed, fold) pairs with 95%
t intervals, per-seed means) and each run's wall and CPU time (user + sys of its processes: the
machine may be shared), and writes ``summary.json``, whose per-pair UARs
``tests/test_demo_world.py`` (slow) judges.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from statistics import mean
from typing import Dict, List, Sequence

import numpy as np

from memobert_plugin.evaluation.cli import parse_folds
from memobert_plugin.evaluation.linear_baselines import distant_supervision_uar, linear_probe_uars
from memobert_plugin.evaluation.paired_claims import student_t_quantile
from memobert_plugin.evaluation.results import collect_results
from memobert_plugin.option_lists import split_list
from memobert_plugin.prepare.demo_corpus import EMOTIONS, EMOTION_WORDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "examples", "quickstart", "run.sh")
SETTINGS = ("direct", "pretrain_finetune", "pretrain_prompt")
SMALL, FULL = 0.05, 1.0  # the quickstart's fractions (besides none)

#: Table 3's rows: pretraining options added to the quickstart's
ABLATIONS: Dict[str, str] = {
    "token-level MLM": "--mlm-masking-unit token",
    "no spans": "--frame-mask-span 1",
    "text only [1,0,0,0]": "--objective-ratios [1,0,0,0]",
    "no visual [0.5,0,0,0.5]": "--objective-ratios [0.5,0,0,0.5]",
    "no acoustic [0.5,0.25,0.25,0]": "--objective-ratios [0.5,0.25,0.25,0]",
}
_REGRESSION = {"span_mvfr": "visual", "span_mafr": "acoustic"}


def run_quickstart(out: str, seed: int, log_name: str = "run.log", **knobs: str) -> Dict:
    """Run the quickstart into ``out`` with environment ``knobs`` (one thread), its output in ``log_name``;
    its wall and CPU seconds."""
    env = dict(os.environ, OUT=out, SEED=str(seed), OMP_NUM_THREADS="1", **knobs)
    os.makedirs(out, exist_ok=True)
    start = time.monotonic()
    # appended: a rerun whose pretraining is already done keeps the log that holds its validation figures
    with open(os.path.join(out, log_name), "a", encoding="utf-8") as log:
        # the CPU time of the quickstart and all its children, from wait4's rusage
        proc = subprocess.Popen(["bash", QUICKSTART], env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{QUICKSTART} failed (exit {os.waitstatus_to_exitcode(status)}); see {out}/{log_name}")
    return {"wall_s": time.monotonic() - start, "cpu_s": usage.ru_utime + usage.ru_stime}


def fold_uars(out: str) -> Dict[str, Dict[int, float]]:
    """Per ``setting@fraction``: each fold's test UAR."""
    uars: Dict[str, Dict[int, float]] = {}
    for r in collect_results(os.path.join(out, "cv")):
        uars.setdefault(f"{r['row']}@{float(r['train_fraction']):g}", {})[int(r["fold"])] = r["test"]["uar"]
    return uars


def objective_figures(out: str, world: str) -> Dict[str, float]:
    """Each pretraining objective's last validation figure beside its trivial baseline (``*_baseline``)."""
    lines = [line for line in open(os.path.join(out, "run.log"), encoding="utf-8") if "valid on 'valid' subset" in line]
    if not lines:
        return {}
    logged = dict((k, float(v)) for k, v in re.findall(r"\| (\w+) (-?[0-9.]+)", lines[-1]))
    figures = {}
    pretrain = os.path.join(world, "pretrain")
    for objective, stream in _REGRESSION.items():
        if f"{objective}_loss" in logged:
            frames = np.load(os.path.join(pretrain, f"valid.{stream}.npy")).astype(np.float64)
            baseline = float(frames.var(0).mean())  # predicting each dimension's mean
            figures[f"{objective}_loss"], figures[f"{objective}_baseline"] = logged[f"{objective}_loss"], baseline
            figures[f"{objective}_explained"] = 1 - logged[f"{objective}_loss"] / baseline
    if "span_mvfc_kl_loss" in logged:
        fer = np.load(os.path.join(pretrain, "valid.visual_fer.npy")).astype(np.float64)
        fer /= fer.sum(1, keepdims=True)
        prior = fer.mean(0)
        figures["span_mvfc_kl_loss"] = logged["span_mvfc_kl_loss"]
        # predicting the prior (0 log 0 = 0: float16 targets round small probabilities to 0)
        kl = np.where(fer > 0, fer * np.log(np.where(fer > 0, fer, 1) / prior), 0.0)
        figures["span_mvfc_kl_baseline"] = float(kl.sum(1).mean())
        figures["span_mvfc_kl_ratio"] = figures["span_mvfc_kl_loss"] / figures["span_mvfc_kl_baseline"]
    if "wwmlm_acc" in logged:
        figures["wwmlm_acc"] = logged["wwmlm_acc"]
    return figures


def linear_baselines(world: str, folds: Sequence[int], cache: str) -> Dict[str, Dict[int, float]]:
    """Distant supervision and the linear probes per fold (cached in ``cache`` for these folds)."""
    if os.path.exists(cache):
        cached = json.load(open(cache))
        if cached.get("folds") == list(folds):
            return {name: {int(f): u for f, u in by_fold.items()} for name, by_fold in cached["uars"].items()}
    emotion = os.path.join(world, "emotion")
    out = {"distant supervision": distant_supervision_uar(os.path.join(world, "pretrain"), emotion, EMOTION_WORDS, folds),
           **{f"linear probe {name}": uars for name, uars in linear_probe_uars(emotion, EMOTIONS, folds).items()}}
    with open(cache, "w", encoding="utf-8") as handle:
        json.dump({"folds": list(folds), "uars": out}, handle)
    return out


def interval(values: Sequence[float]) -> str:
    """``mean ± half-width`` of the two-sided 95% t interval, in UAR points."""
    if len(values) < 5:
        return f"{100 * mean(values):.1f}" if values else "-"
    half = student_t_quantile(0.975, len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return f"{100 * mean(values):.1f} ± {100 * half:.1f}"


def pairs(by_seed: Dict[int, Dict[str, Dict[int, float]]], key: str) -> Dict[str, float]:
    """``"seed:fold" -> UAR`` of ``key`` over every seed."""
    return {f"{seed}:{fold}": u for seed, cells in by_seed.items() for fold, u in sorted(cells.get(key, {}).items())}


def _row(name: str, by_seed: Dict[int, Dict], keys: Sequence[str]) -> str:
    cells = []
    for key in keys:
        values = list(pairs(by_seed, key).values())
        per_seed = " / ".join(f"{100 * mean(c[key].values()):.1f}" for c in by_seed.values() if c.get(key))
        cells.append(f"{interval(values)} ({per_seed})" if values else "")
    return f"| {name} | " + " | ".join(cells) + " |"


def _mean_figure(figures: Sequence[Dict[str, float]], key: str) -> str:
    values = [f[key] for f in figures if key in f]
    return f"{mean(values):.3f}" if values else "-"


def report(summary: Dict) -> str:
    cells, control = summary["cells"], summary["control"]
    keys = ("{s}@0", f"{{s}}@{SMALL:g}", f"{{s}}@{FULL:g}")  # only the prompt has a no-label cell
    lines = [f"Demo world, UAR % over (seed, fold) pairs (seeds {summary['seeds']}, folds {summary['folds']}; all labels: "
             f"folds {summary['all_label_folds']}): mean ± half-width of the 95% t interval (per-seed means)", "",
             f"| setting | no labels | {100 * SMALL:g}% | 100% |", "|---|---|---|---|"]
    lines += [_row(setting, cells, [k.format(s=setting) for k in keys]) for setting in SETTINGS]
    lines.append(_row("pretrain_prompt, negative control", control, ["pretrain_prompt@0"]))
    lines.append(_row("distant supervision (pretraining texts' emotion words, face + voice)", cells,
                      ["distant supervision"]))
    lines += ["", "Linear probes on the labelled training speakers (all labels), UAR %:", "",
              "| probe | 100% |", "|---|---|"]
    lines += [_row(name, cells, [name]) for name in sorted({k for c in cells.values() for k in c if k.startswith("linear")})]
    lines += ["", "Pretraining objectives on the pretraining valid split (last validation):", "",
              "| run | seed | span_mvfr loss / baseline | span_mafr loss / baseline | span_mvfc_kl / prior | "
              "wwmlm acc |", "|---|---|---|---|---|---|"]
    for run, by_seed in summary["objectives"].items():
        for seed, f in by_seed.items():
            def ratio(name):
                return f"{f[name + '_loss']:.3f} / {f[name + '_baseline']:.3f}" if name + "_loss" in f else "-"
            lines.append(f"| {run} | {seed} | {ratio('span_mvfr')} | {ratio('span_mafr')} | {ratio('span_mvfc_kl')} | "
                         f"{f.get('wwmlm_acc', float('nan')):.3f} |")
    if summary["ablations"]:
        lines += ["", f"Table 3 on the demo world (seeds {summary['ablation_seeds']}, folds {summary['ablation_folds']}): "
                  "Pretrain+Prompt with no labels, UAR %, beside each objective's validation figure (mean over seeds: "
                  "explained variance of the regressions, KL / KL of the FER prior, MLM accuracy)", "",
                  "| pretraining | no labels | span_mvfr explained | span_mafr explained | span_mvfc_kl / prior | "
                  "wwmlm acc |", "|---|---|---|---|---|---|"]
        ablation_seeds = [int(seed) for seed in summary["ablation_seeds"]]
        ablation_folds = {fold for by_seed in summary["ablations"].values() for c in by_seed.values()
                          for fold in c.get("pretrain_prompt@0", {})}
        full = {seed: {k: {f: u for f, u in v.items() if f in ablation_folds} for k, v in cells[seed].items()}
                for seed in ablation_seeds}
        rows = [("full model", full, summary["objectives"]["main"])]
        rows += [(name, by_seed, summary["objectives"][f"ablation {name}"]) for name, by_seed in summary["ablations"].items()]
        for name, by_seed, figures in rows:
            seeds_figures = [figures[seed] for seed in figures if int(seed) in ablation_seeds]
            lines.append(_row(name, by_seed, ["pretrain_prompt@0"])[:-1] + "| " + " | ".join(
                _mean_figure(seeds_figures, key) for key in
                ("span_mvfr_explained", "span_mafr_explained", "span_mvfc_kl_ratio", "wwmlm_acc")) + " |")
    lines += ["", "| run | seed | wall s | CPU s (user+sys) |", "|---|---|---|---|"]
    lines += [f"| {run} | {seed} | {c['wall_s']:.0f} | {c['cpu_s']:.0f} |" for (run, seed), c in
              ((tuple(k.split("|")), v) for k, v in summary["costs"].items())]
    lines.append(f"| all | | {summary['wall_s']:.0f} | {sum(c['cpu_s'] for c in summary['costs'].values()):.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="working directory (a rerun reuses its finished folds)")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--folds", default="1-8", help="cross-validation folds of every run (the world has 10)")
    parser.add_argument("--jobs", type=int, default=2, help="quickstart runs at a time (one thread each)")
    parser.add_argument("--ablations", action="store_true", help="also Table 3's ablations")
    parser.add_argument("--all-label-folds", default="1-4", help="folds of the all-label cells")
    parser.add_argument("--ablation-seeds", help="seeds of the ablations, among --seeds (default: --seeds)")
    parser.add_argument("--ablation-folds", default="1-4", help="folds of the ablations (no labels)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in split_list(args.seeds)]
    folds = args.folds
    ablation_seeds = [int(s) for s in split_list(args.ablation_seeds or args.seeds)] if args.ablations else []
    if not set(ablation_seeds) <= set(seeds):
        # an ablation reuses its seed's world and is compared with its seed's main run
        parser.error(f"--ablation-seeds {args.ablation_seeds} must be among --seeds {args.seeds}")
    # (kind, seed, out, [(log, knobs)]): one quickstart call per (log, knobs), into the same ``out``

    def main_run(seed: int) -> tuple:
        out = os.path.join(args.out, f"seed{seed}", "main")
        # no labels and 5% on every fold; all labels (a fine-tuning of every training speaker's
        # utterances: the costly cells) on --all-label-folds, reusing the world and the pretraining
        return ("main", seed, out, [("run.log", {"FOLDS": folds, "FRACTIONS": f"0,{SMALL:g}"}),
                                    ("run-all-labels.log", {"WORLD": os.path.join(out, "demo"),
                                                            "FOLDS": args.all_label_folds, "FRACTIONS": f"{FULL:g}"})])

    runs: List[tuple] = []
    for seed in seeds:
        runs.append(main_run(seed))
        runs.append(("control", seed, os.path.join(args.out, f"seed{seed}", "control"), [("run.log", {
            "FOLDS": folds, "WORLD_ARGS": "--shuffle-links", "SETTINGS": "pretrain_prompt", "FRACTIONS": "0"})]))
    for seed in ablation_seeds:
        world = os.path.join(args.out, f"seed{seed}", "main", "demo")
        for name, options in ABLATIONS.items():
            out = os.path.join(args.out, f"seed{seed}", "ablation-" + name.split(" [")[0].replace(" ", "_"))
            runs.append((f"ablation {name}", seed, out, [("run.log", {
                "WORLD": world, "PRETRAIN_ARGS": options, "FOLDS": args.ablation_folds,
                "SETTINGS": "pretrain_prompt", "FRACTIONS": "0"})]))

    start = time.monotonic()
    costs: Dict[str, Dict] = {}

    def execute(run) -> None:
        kind, seed, out, calls = run
        marker = os.path.join(out, "cost.json")
        recorded_calls = [list(c) for c in calls]  # as JSON reads them back
        if os.path.exists(marker):
            finished = json.load(open(marker))
            if finished.get("calls") == recorded_calls:  # finished before, with these knobs
                costs[f"{kind}|{seed}"] = finished
                return
        # otherwise the quickstart runs again: memobert-cv reuses every fold it finished with the same options
        spent = [run_quickstart(out, seed, log_name, **knobs) for log_name, knobs in calls]
        cost = {"wall_s": sum(c["wall_s"] for c in spent), "cpu_s": sum(c["cpu_s"] for c in spent),
                "calls": recorded_calls}
        with open(marker, "w", encoding="utf-8") as handle:
            json.dump(cost, handle)
        costs[f"{kind}|{seed}"] = cost
        print(f"{kind} seed {seed}: {cost['wall_s']:.0f} s wall, {cost['cpu_s']:.0f} s CPU", flush=True)

    mains = [r for r in runs if r[0] == "main"]
    with ThreadPoolExecutor(args.jobs) as pool:  # ablations need their seed's world: mains first
        list(pool.map(execute, mains))
        list(pool.map(execute, [r for r in runs if r[0] != "main"]))

    cells: Dict[int, Dict[str, Dict[int, float]]] = {}
    control: Dict[int, Dict[str, Dict[int, float]]] = {}
    ablations: Dict[str, Dict[int, Dict[str, Dict[int, float]]]] = {}
    objectives: Dict[str, Dict[int, Dict[str, float]]] = {}
    baseline_start = time.monotonic()
    for kind, seed, out, _ in runs:
        world = os.path.join(args.out, f"seed{seed}", "main", "demo") if kind.startswith("ablation") else os.path.join(out, "demo")
        objectives.setdefault(kind, {})[seed] = objective_figures(out, world)
        if kind == "main":
            fold_list = parse_folds(folds, os.path.join(world, "emotion"))
            cells[seed] = {**fold_uars(out), **linear_baselines(world, fold_list, os.path.join(out, "baselines.json"))}
        elif kind == "control":
            control[seed] = fold_uars(out)
        else:
            ablations.setdefault(kind[len("ablation "):], {})[seed] = fold_uars(out)
    costs["linear baselines (this process)|all"] = {"wall_s": time.monotonic() - baseline_start,
                                                    "cpu_s": sum(os.times()[:2])}
    summary = {"seeds": seeds, "folds": folds, "all_label_folds": args.all_label_folds,
               "ablation_seeds": ablation_seeds, "ablation_folds": args.ablation_folds,
               "cells": cells, "control": control, "ablations": ablations,
               "objectives": objectives, "costs": costs, "wall_s": time.monotonic() - start,
               "pairs": {"control@0": pairs(control, "pretrain_prompt@0"),
                         **{key: pairs(cells, key) for key in sorted({k for c in cells.values() for k in c})}}}
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    print(report(summary))
    print(f"\nsummary: {os.path.join(args.out, 'summary.json')}")


if __name__ == "__main__":
    sys.exit(main())
