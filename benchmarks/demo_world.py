"""What MEmoBERT should show, measured on the demo world: Table 2 and Fig. 3 (no labels, 5% and all of
them), the negative control, and Table 3's pretraining ablations; means over seeds.

    python benchmarks/demo_world.py --out demo-bench                 # 3 seeds, ~40 min of 2 cores
    python benchmarks/demo_world.py --out demo-bench --ablations     # + Table 3 on the first seed

Every run is ``examples/quickstart/run.sh`` (the quickstart's exact commands) with other knobs:
per seed, the world of that seed, one pretraining and the Direct / Pretrain+Finetune /
Pretrain+Prompt folds; the negative control (``--shuffle-links``: emotion words shuffled away
from their face and voice) pretrains on its own world and prompts with no labels; each ablation
pretrains on the seed's world with one change and prompts with no labels and with all of them.
A rerun reuses every finished fold. Prints the tables and each run's wall and CPU time (user +
sys of its processes: the machine may be shared), and writes ``summary.json``, whose margins
``tests/test_demo_world.py`` (slow) asserts.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from statistics import mean
from typing import Dict, List

from memobert_plugin.option_lists import split_list

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "examples", "quickstart", "run.sh")
SETTINGS = ("direct", "pretrain_finetune", "pretrain_prompt")
SMALL, FULL = 0.05, 1.0  # the quickstart's fractions (besides none)

#: Table 3's rows: pretraining options added to the quickstart's
ABLATIONS: Dict[str, str] = {
    "full model": "",
    "token-level MLM": "--mlm-masking-unit token",
    "no spans": "--frame-mask-span 1",
    "text only [1,0,0,0]": "--objective-ratios [1,0,0,0]",
    "no visual [0.5,0,0,0.5]": "--objective-ratios [0.5,0,0,0.5]",
    "no acoustic [0.5,0.25,0.25,0]": "--objective-ratios [0.5,0.25,0.25,0]",
}


def run_quickstart(out: str, seed: int, collect_only: bool = False, **knobs: str) -> Dict:
    """Run the quickstart into ``out`` with environment ``knobs`` (or only read its results); its UAR per
    (setting, fraction) and its cost."""
    cost = {"wall_s": None, "cpu_s": None}
    if not collect_only:
        env = dict(os.environ, OUT=out, SEED=str(seed), **knobs)
        os.makedirs(out, exist_ok=True)
        start, before = time.monotonic(), os.times()
        with open(os.path.join(out, "run.log"), "w", encoding="utf-8") as log:
            proc = subprocess.run(["bash", QUICKSTART], env=env, stdout=log, stderr=subprocess.STDOUT)
        after = os.times()
        if proc.returncode != 0:
            raise SystemExit(f"{QUICKSTART} failed (exit {proc.returncode}); see {os.path.join(out, 'run.log')}")
        cost = {"wall_s": time.monotonic() - start,
                "cpu_s": (after.children_user - before.children_user) + (after.children_system - before.children_system)}
    with open(os.path.join(out, "cv", "results.csv"), newline="", encoding="utf-8") as handle:
        uar = {f"{row['setting']}@{float(row['train_fraction']):g}": float(row["uar_mean"]) for row in csv.DictReader(handle)}
    return {"uar": uar, **cost}


def _seconds(value) -> str:
    return f"{value:.0f}" if value is not None else "-"


def _pct(value) -> str:
    return f"{100 * value:5.1f}" if value is not None else "    -"


def summarise(runs: Dict[str, Dict[int, Dict]], seeds: List[int]) -> Dict:
    """Means over seeds of the quantities the issue's margins are about."""
    def avg(kind: str, key: str):
        values = [runs[kind][s]["uar"][key] for s in runs.get(kind, {}) if key in runs[kind][s]["uar"]]
        return mean(values) if values else None

    summary = {
        "seeds": seeds,
        "zero_shot_prompt": avg("main", "pretrain_prompt@0"),
        "control_zero_shot_prompt": avg("control", "pretrain_prompt@0"),
        "small_fraction": SMALL,
        **{f"{setting}@{fraction:g}": avg("main", f"{setting}@{fraction:g}") for setting in SETTINGS for fraction in (SMALL, FULL)},
        "ablations": {name: {"zero_shot": avg(f"ablation {name}", "pretrain_prompt@0"),
                             "full": avg(f"ablation {name}", "pretrain_prompt@1")}
                      for name in ABLATIONS if f"ablation {name}" in runs},
        "wall_s": sum(r["wall_s"] or 0 for kind in runs.values() for r in kind.values()),
        "cpu_s": sum(r["cpu_s"] or 0 for kind in runs.values() for r in kind.values()),
    }
    return summary


def report(summary: Dict, runs: Dict[str, Dict[int, Dict]]) -> str:
    lines = [f"Demo world, UAR % (mean over seeds {summary['seeds']}, 2 folds each)", "",
             f"| setting | no labels | {100 * SMALL:g}% | 100% |", "|---|---|---|---|"]
    for setting in SETTINGS:
        zero = summary["zero_shot_prompt"] if setting == "pretrain_prompt" else None
        lines.append(f"| {setting} | {_pct(zero)} | {_pct(summary[f'{setting}@{SMALL:g}'])} | "
                     f"{_pct(summary[f'{setting}@{FULL:g}'])} |")
    lines.append(f"| pretrain_prompt, negative control | {_pct(summary['control_zero_shot_prompt'])} | | |")
    if summary["ablations"]:
        lines += ["", "Table 3 on the demo world: Pretrain+Prompt UAR % (seed " +
                  ",".join(str(s) for s in runs[f"ablation {next(iter(summary['ablations']))}"]) + ")", "",
                  "| pretraining | no labels | 100% |", "|---|---|---|"]
        lines += [f"| {name} | {_pct(row['zero_shot'])} | {_pct(row['full'])} |" for name, row in summary["ablations"].items()]
    lines += ["", "| run | seed | wall s | CPU s (user+sys) |", "|---|---|---|---|"]
    for kind, by_seed in runs.items():
        lines += [f"| {kind} | {seed} | {_seconds(r['wall_s'])} | {_seconds(r['cpu_s'])} |" for seed, r in by_seed.items()]
    lines.append(f"| all | | {summary['wall_s']:.0f} | {summary['cpu_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="working directory (a rerun reuses its finished folds)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--ablations", action="store_true", help="also Table 3's ablations, on the first seed")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: summarise the runs already in --out (e.g. seeds run as separate processes)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in split_list(args.seeds)]
    runs: Dict[str, Dict[int, Dict]] = {"main": {}, "control": {}}
    for seed in seeds:
        base = os.path.join(args.out, f"seed{seed}")
        runs["main"][seed] = run_quickstart(os.path.join(base, "main"), seed, args.collect_only,
                                            FRACTIONS=f"0,{SMALL:g},{FULL:g}")
        runs["control"][seed] = run_quickstart(os.path.join(base, "control"), seed, args.collect_only,
                                               WORLD_ARGS="--shuffle-links", SETTINGS="pretrain_prompt", FRACTIONS="0")
        print(f"seed {seed}: {runs['main'][seed]['uar']}, control {runs['control'][seed]['uar']}", flush=True)
    if args.ablations:
        seed = seeds[0]
        world = os.path.join(args.out, f"seed{seed}", "main", "demo")
        for name, options in ABLATIONS.items():
            out = os.path.join(args.out, f"seed{seed}", "ablation-" + name.split(" [")[0].replace(" ", "_"))
            if not options:  # the full model: its prompt folds are the main run's
                runs[f"ablation {name}"] = {seed: runs["main"][seed]}
                continue
            runs[f"ablation {name}"] = {seed: run_quickstart(out, seed, args.collect_only, WORLD=world, PRETRAIN_ARGS=options,
                                                             SETTINGS="pretrain_prompt", FRACTIONS=f"0,{FULL:g}")}
            print(f"ablation {name}: {runs[f'ablation {name}'][seed]['uar']}", flush=True)
    summary = summarise(runs, seeds)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump({"summary": summary, "runs": {k: {str(s): r for s, r in v.items()} for k, v in runs.items()}},
                  handle, indent=1)
    print(report(summary, runs))
    print(f"\nsummary: {os.path.join(args.out, 'summary.json')}")


if __name__ == "__main__":
    sys.exit(main())
