"""``memobert-cv``: run (or just collect) a cross-validation sweep and write the results table.

    memobert-cv run --out cv/ --corpus iemocap=data-bin/iemocap --settings direct,pretrain_prompt \\
        --pretrained ckpt/checkpoint_best.pt --folds all --seeds 1,2,3 [-- extra fairseq-train args]
    memobert-cv collect --out cv/

Every argument is checked (data dirs, folds, the options each setting needs) before any
fold starts. While a fold trains, a line per validation (fold, epoch, valid UAR) is printed,
and after each fold the sweep's ETA (h:mm, from the folds run by this command: resumed ones
count as nothing). ``--keep-going`` runs the remaining folds after a failed one and lists
the failures at the end; ``--train-final`` adds a final model per row on all speakers.
"""

import argparse
import logging
import os
import sys
import time
from typing import Dict, List

from memobert_plugin.data.folds import LABELLED_SPLIT, num_folds
from memobert_plugin.data.utterance_meta import read_meta
from memobert_plugin.option_lists import split_list
from memobert_plugin.option_ranges import check_range, ranged
from memobert_plugin.output_lock import OutputBusyError
from memobert_plugin.evaluation.cross_validation import (
    SETTINGS,
    FoldFailedError,
    FoldJob,
    plan_jobs,
    requested_cv_scheme,
    run_fold_job,
)
from memobert_plugin.evaluation.results import (
    collect_results,
    plot_confusions,
    plot_low_resource,
    summarise,
    write_csv,
    write_markdown,
)

__all__ = ["main", "build_parser", "plan_sweep", "check_inputs", "write_tables", "parse_folds", "NoResultsError",
           "format_duration", "run_sweep"]

logger = logging.getLogger("memobert.cv")


def _pairs(values: List[str], flag: str, example: str = "") -> Dict[str, str]:
    """``[LABEL=]PATH`` values; with an ``example``, the label is required (``NAME=PATH``)."""
    pairs = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not (sep and label and path) and example:
            raise ValueError(f"{flag} {value}: expected NAME=DATA_DIR (e.g. {example})")
        if not sep:
            label, path = os.path.basename(os.path.normpath(value)), value
        if label in pairs:
            raise ValueError(f"{flag}: label {label!r} given twice")
        pairs[label] = path
    return pairs


def _numbers(text: str, flag: str, kind=int, low=None, high=None) -> list:
    """Comma-separated numbers, each within ``low..high``."""
    try:
        numbers = [kind(part) for part in split_list(text)]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated {kind.__name__}s") from None
    for number in numbers:
        check_range(flag.lstrip("-"), number, low, high)
    return numbers


class NoResultsError(ValueError):
    """A sweep directory without any result.json (memobert-cv prints it as its error message)."""


def _fold_count(data: str, scheme: str) -> int:
    meta_path = os.path.join(data, f"{LABELLED_SPLIT}.meta.tsv")
    if not os.path.isfile(meta_path):
        raise ValueError(f"--corpus {data}: no {LABELLED_SPLIT}.meta.tsv there (a memobert-prepare emotion data dir?)")
    return num_folds(read_meta(meta_path), scheme)


def parse_folds(spec: str, data: str, scheme: str = "auto") -> List[int]:
    """``all`` (every fold of the ``scheme``: one per speaker, or the one fixed split), ``1,2,5`` or ``1-4``."""
    if spec == "all":
        return list(range(1, _fold_count(data, scheme) + 1))
    folds = []
    for part in spec.split(","):
        start, _, end = part.partition("-")
        try:
            folds += list(range(int(start), int(end or start) + 1))
        except ValueError:
            raise ValueError(f"--folds {spec!r}: expected 'all', '1,2' or '1-4'") from None
    if min(folds, default=1) < 1:
        raise ValueError(f"--folds {spec}: folds count from 1 (a model on all speakers is --train-final)")
    return folds


def check_inputs(jobs: List[FoldJob]) -> None:
    """What the jobs read exists and their folds are the corpus's (ValueError naming it), before any job starts."""
    folds_of: Dict[str, int] = {}
    for job in jobs:
        if job.data not in folds_of:
            folds_of[job.data] = _fold_count(job.data, requested_cv_scheme(job.extra_train_args))
        count = folds_of[job.data]
        if not job.final and not 1 <= job.fold <= count:
            if job.cv_scheme() == "fixed":
                raise ValueError(f"--folds: {job.data} is evaluated on its fixed split (all.meta.tsv gives each "
                                 f"utterance's subset), its one fold: 1, not {job.fold}")
            raise ValueError(f"--folds: {job.data} has {count} speakers, so folds are 1..{count}, not {job.fold}")
        init = SETTINGS[job.setting][0]
        if init == "memobert" and not os.path.isfile(job.init_path):
            raise ValueError(f"--pretrained {job.init_path}: no such checkpoint")
        if init == "bert" and not os.path.isfile(os.path.join(job.init_path, "config.json")):
            raise ValueError(f"--bert-init {job.init_path}: not a Hugging Face BERT directory (no config.json)")


def write_tables(out_dir: str) -> str:
    """Summarise every result under ``out_dir`` into results.md, results.csv, a confusion-matrix figure
    per table cell (confusion/*.png) and low_resource.png."""
    rows = summarise(collect_results(out_dir))
    if not rows:
        raise NoResultsError(f"{out_dir}: no result.json found")
    table = write_markdown(rows, os.path.join(out_dir, "results.md"))
    write_csv(rows, os.path.join(out_dir, "results.csv"))
    figures = plot_confusions(rows, os.path.join(out_dir, "confusion"))
    if figures:
        table += f"\nconfusion-matrix figures: {len(figures)} under {os.path.join(out_dir, 'confusion')}\n"
    if plot_low_resource(rows, os.path.join(out_dir, "low_resource.png")):
        table += f"\nlow-resource figure: {os.path.join(out_dir, 'low_resource.png')}\n"
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memobert-cv", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every missing fold job, then write the tables")
    collect = sub.add_parser("collect", help="only write the tables from finished jobs")
    for p in (run, collect):
        p.add_argument("--out", required=True, help="sweep directory (one subdirectory per job)")
    run.add_argument("--corpus", action="append", required=True, metavar="NAME=DATA_DIR",
                     help="a labelled data dir (with all.meta.tsv); repeat for several corpora")
    run.add_argument("--settings", default=",".join(SETTINGS),
                     help=f"comma-separated, from {sorted(SETTINGS)}")
    run.add_argument("--pretrained", action="append", default=[], metavar="[LABEL=]CHECKPOINT",
                     help="memobert_pretrain checkpoint for the pretrain_* settings; repeat for one row each")
    run.add_argument("--bert-init", default="", help="Hugging Face BERT directory for bert_direct")
    run.add_argument("--folds", default="all",
                     help="'all', '1,2' or '1-4': speaker folds, or 1 (= all) for a corpus with a fixed split "
                          "(a subset column in all.meta.tsv, e.g. MELD)")
    run.add_argument("--seeds", default="1,2,3")
    run.add_argument("--fractions", default="1.0",
                     help="training fractions, e.g. 0,0.1,0.2,0.5,1.0 (Fig. 3); 0 trains nothing and tests the "
                          "prompt settings' pretrained model as it is (zero-shot)")
    run.add_argument("--same-subset-for-all-seeds", action="store_true",
                     help="draw a fraction's training subset once (seed 1) instead of once per seed")
    run.add_argument("--lr-schedule", choices=("constant", "warmup_linear"), default=FoldJob.lr_schedule,
                     help="constant, or warm-up over 10%% of the updates then linear decay to 0 (the authors')")
    run.add_argument("--decay-norm-and-bias", action="store_true",
                     help="weight decay on biases and LayerNorm parameters too (BERT and the authors exclude them)")
    run.add_argument("--prompt-loss", choices=("vocabulary", "label_words"), default=FoldJob.prompt_loss,
                     help="prompt settings' loss: vocabulary: the MLM cross-entropy over the whole vocabulary at "
                          "[MASK] (the authors'), or label_words: cross-entropy over the label words only")
    run.add_argument("--arch", default=FoldJob.arch)
    run.add_argument("--lr", type=ranged(float, 0, low_open=True), default=FoldJob.lr,
                     help="default: 5e-5 on full data, 3e-5 on a fraction")
    run.add_argument("--max-epoch", type=ranged(int, 1), default=FoldJob.max_epoch)
    run.add_argument("--batch-size", type=ranged(int, 1), default=FoldJob.batch_size)
    run.add_argument("--keep-checkpoints", action="store_true", help="keep each fold's checkpoints after testing")
    run.add_argument("--keep-going", action="store_true", help="after a failed fold, run the others; list failures at the end")
    run.add_argument("--train-final", action="store_true",
                     help="also train, per corpus, row and seed, a final model on every labelled speaker (the last "
                          "speaker by name validates, for checkpoint selection) under ROW/final/seedN, checkpoints kept")
    run.add_argument("extra", nargs=argparse.REMAINDER, help="after --: extra fairseq-train arguments")
    return parser


def plan_sweep(args: argparse.Namespace) -> List[FoldJob]:
    """The fold jobs of a parsed ``memobert-cv run`` command line (ValueError: options that do not fit the
    settings); :func:`check_inputs` checks them against the files."""
    corpora = _pairs(args.corpus, "--corpus", example="iemocap=data-bin/iemocap")
    pretrained = _pairs(args.pretrained, "--pretrained")
    train_args = [a for a in args.extra if a != "--"]
    return plan_jobs(
        args.out, corpora,
        settings=split_list(args.settings),
        folds={name: parse_folds(args.folds, data, requested_cv_scheme(train_args)) for name, data in corpora.items()},
        seeds=_numbers(args.seeds, "--seeds", low=0),
        fractions=_numbers(args.fractions, "--fractions", float, 0, 1),
        pretrained=pretrained,
        bert_init=args.bert_init,
        train_final=args.train_final,
        arch=args.arch, lr=args.lr, max_epoch=args.max_epoch, batch_size=args.batch_size,
        keep_checkpoints=args.keep_checkpoints, same_subset_for_all_seeds=args.same_subset_for_all_seeds,
        lr_schedule=args.lr_schedule, decay_norm_and_bias=args.decay_norm_and_bias, prompt_loss=args.prompt_loss,
        extra_train_args=train_args,
    )


def format_duration(seconds: float) -> str:
    """``h:mm``, rounded up to the minute."""
    minutes = int(-(-seconds // 60))
    return f"{minutes // 60}:{minutes % 60:02d}"


def run_sweep(jobs: List[FoldJob], keep_going: bool = False) -> List[str]:
    """Run every job in turn, printing progress; returns the failed jobs' descriptions (with keep_going)."""
    failures: List[str] = []
    ran, ran_seconds = 0, 0.0  # folds run here (not resumed ones): the ETA's rate
    for done, job in enumerate(jobs, start=1):
        if os.path.exists(job.result_path):
            run_fold_job(job)  # refuses a result made with other options
            logger.info("[%d/%d] %s: done before", done, len(jobs), job.describe())
            continue

        def on_validation(summary: Dict, job=job) -> None:
            logger.info("  %s epoch %s: valid UAR %.4f", job.describe(), summary.get("epoch", "?"),
                        summary.get("uar", float("nan")))

        start = time.monotonic()
        try:
            result = run_fold_job(job, on_validation)
        except FoldFailedError as exc:
            if not keep_going:
                raise
            failures.append(f"{job.describe()}: {str(exc).splitlines()[0]}")
            logger.error("[%d/%d] %s FAILED: %s", done, len(jobs), job.describe(), str(exc).splitlines()[0])
            continue
        ran, ran_seconds = ran + 1, ran_seconds + time.monotonic() - start
        scores = result[job.evaluated_subset]
        logger.info("[%d/%d] %s: %s WA %.4f UAR %.4f macro-F1 %.4f | ETA %s", done, len(jobs), job.describe(),
                    job.evaluated_subset, scores["wa"], scores["uar"], scores["macro_f1"],
                    format_duration(ran_seconds / ran * sum(not os.path.exists(j.result_path) for j in jobs[done:])))
    return failures


def main(argv=None) -> None:
    logging.basicConfig(format="%(asctime)s | %(message)s", level=logging.INFO, stream=sys.stdout, force=True)
    args = build_parser().parse_args(argv)
    failures: List[str] = []
    if args.command == "run":
        try:
            jobs = plan_sweep(args)
            check_inputs(jobs)
        except ValueError as exc:
            raise SystemExit(f"memobert-cv: {exc}") from None  # checked before anything starts or is written
        logger.info("%d fold jobs under %s; each writes its commands and output to its train.log", len(jobs), args.out)
        try:
            failures = run_sweep(jobs, args.keep_going)
        except OutputBusyError as exc:  # another sweep is on this fold: say so, as for any CLI error here
            raise SystemExit(str(exc)) from None
        except FoldFailedError as exc:
            raise SystemExit(f"memobert-cv: {exc}\n(--keep-going runs the other folds after a failure)") from None
    try:
        table = write_tables(args.out)
    except NoResultsError as exc:
        if not failures:
            raise SystemExit(str(exc)) from None  # the message alone, exit status 1, as for any CLI error here
        table = str(exc)
    print(table)
    if failures:
        raise SystemExit(f"memobert-cv: {len(failures)} fold job(s) failed:\n" + "\n".join(f"  {f}" for f in failures))


if __name__ == "__main__":
    main()
