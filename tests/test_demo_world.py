"""The paper's effect on the demo world (slow): benchmarks/demo_world.py, seeds 1-2 x folds 1-8.

Every claim is a paired comparison over (seed, fold) pairs, judged by the one-sided 95% t lower
bound of the mean difference against a margin, and it has to clear the margin by at least its
own standard error (:mod:`memobert_plugin.evaluation.paired_claims`; UAR as a fraction, chance
0.25). A seed's folds share one world and one pretraining, so each seed's mean difference must
clear the margin too. The margins were fixed before any number was seen; the world's first
redesign then failed the first two (mean differences +0.113 and +0.088, lower bounds +0.067 and
+0.043), and the world's settings were changed until its emotion-word link formed on every seed
tried (README, "How the world got here"); the margins were not touched.

- no labels: Pretrain+Prompt minus the negative control (pretraining on the same world with the
  emotion words shuffled away from their face and voice) >= 0.15, over 16 pairs;
- 5% of the labels: Pretrain+Prompt minus Direct >= 0.10, over 16 pairs;
- all labels: Pretrain+Prompt minus Direct and Pretrain+Finetune minus Direct >= -0.08
  (non-inferiority within 8 UAR points), over 8 pairs (folds 1-4: the costly cells).

Besides, each seed's pretraining has learnt every objective: each regression's validation loss
at most 60% of predicting each dimension's mean, span_mvfc_kl below predicting the FER prior.

Measured on the run that passed (README "The demo world"; 18 min 58 s on 2 cores), mean
difference (SE) -> lower bound: no labels +0.301 (0.017) -> +0.270; 5% +0.322 (0.017) ->
+0.293; all labels, Prompt +0.051 (0.012) -> +0.029 and Finetune +0.042 (0.012) -> +0.019.
Regressions at 47-54% of their baselines, span_mvfc_kl at 49-58% of the prior's KL.
"""

import json
import os
import sys

import pytest

from conftest import REPO_ROOT, run_cli
from memobert_plugin.evaluation.paired_claims import paired_claim, paired_differences

pytestmark = pytest.mark.slow

#: (name, minuend, subtrahend, margin, pairs): margins fixed before the numbers were seen; pairs: seeds 1-2 x
#: folds 1-8 (the all-label cells, the costly ones: folds 1-4)
CLAIMS = [
    ("no labels: Pretrain+Prompt - negative control", "pretrain_prompt@0", "control@0", 0.15, 16),
    ("5% of the labels: Pretrain+Prompt - Direct", "pretrain_prompt@0.05", "direct@0.05", 0.10, 16),
    ("all labels: Pretrain+Prompt - Direct", "pretrain_prompt@1", "direct@1", -0.08, 8),
    ("all labels: Pretrain+Finetune - Direct", "pretrain_finetune@1", "direct@1", -0.08, 8),
]


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    # MEMOBERT_DEMO_WORLD_OUT keeps the runs (e.g. for the README's tables); a rerun there reuses them
    out = os.environ.get("MEMOBERT_DEMO_WORLD_OUT") or str(tmp_path_factory.mktemp("demo_world"))
    run_cli([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "demo_world.py"), "--out", out,
             "--seeds", "1,2", "--folds", "1-8", "--all-label-folds", "1-4", "--jobs", "2"], timeout=2 * 3600)
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("name,minuend,subtrahend,margin,n", CLAIMS, ids=[c[0] for c in CLAIMS])
def test_paired_claim(summary, name, minuend, subtrahend, margin, n):
    differences = paired_differences(summary["pairs"][minuend], summary["pairs"][subtrahend])
    assert len(differences) == n
    claim = paired_claim(name, list(differences.values()), margin)
    print(claim.describe())
    assert claim.holds, claim.describe()
    # a seed's folds share one world and one pretraining: the claim also holds on each seed's mean
    for seed in {pair.split(":")[0] for pair in differences}:
        on_seed = [d for pair, d in differences.items() if pair.split(":")[0] == seed]
        assert sum(on_seed) / len(on_seed) >= margin, (seed, on_seed)


def test_pretraining_learns_every_objective(summary):
    for seed, figures in summary["objectives"]["main"].items():
        for objective in ("span_mvfr", "span_mafr"):
            assert figures[f"{objective}_loss"] <= 0.6 * figures[f"{objective}_baseline"], (seed, objective, figures)
        assert figures["span_mvfc_kl_loss"] < figures["span_mvfc_kl_baseline"], (seed, figures)


def test_quickstart_prints_the_table_and_draws_the_figure(tmp_path):
    """examples/quickstart/run.sh end to end with tiny knobs: every setting at 0 / 5 / 100%."""
    env = {"OUT": str(tmp_path / "qs"), "PRETRAIN_UTTERANCES": "400", "PRETRAIN_UPDATES": "20",
           "LABELLED_SCALE": "0.05", "FOLDS": "1", "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    out = run_cli(["bash", os.path.join(REPO_ROOT, "examples", "quickstart", "run.sh")], env=env, timeout=1800).stdout
    cv = tmp_path / "qs" / "cv"
    assert f"table: {cv}/results.md" in out and f"low-resource figure: {cv}/low_resource.png" in out
    assert "texts naming an emotion" in out  # the world's rates
    assert (cv / "low_resource.png").stat().st_size > 0
    table = (cv / "results.md").read_text()
    for fraction in ("0", "5", "100"):
        assert f"### Training data: {fraction}%" in table
    assert table.count("| pretrain_prompt |") == 3 and table.count("| direct |") == 2
