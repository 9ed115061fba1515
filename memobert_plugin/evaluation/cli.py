"""``memobert-cv``: run (or just collect) a cross-validation sweep and write the results table.

    memobert-cv run --out cv/ --corpus iemocap=data-bin/iemocap --settings direct,pretrain_prompt \\
        --pretrained ckpt/checkpoint_best.pt --folds all --seeds 1,2,3 [-- extra fairseq-train args]
    memobert-cv collect --out cv/
"""

import argparse
import logging
import os
import sys
import time
from typing import Dict, List

from ..data.folds import num_folds
from ..data.utterance_meta import read_meta
from ..output_lock import OutputBusyError
from ..tasks.memobert_emotion import MemobertEmotionConfig
from .cross_validation import SETTINGS, FoldJob, plan_jobs, run_fold_job
from .results import collect_results, plot_low_resource, summarise, write_csv, write_markdown

__all__ = ["main", "build_parser", "plan_sweep", "write_tables", "parse_folds", "NoResultsError"]

logger = logging.getLogger("memobert.cv")


def _pairs(values: List[str], flag: str, default_label: str = "") -> Dict[str, str]:
    pairs = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep:
            label, path = default_label or os.path.basename(os.path.normpath(value)), value
        if label in pairs:
            raise SystemExit(f"{flag}: label {label!r} given twice")
        pairs[label] = path
    return pairs


class NoResultsError(ValueError):
    """A sweep directory without any result.json (memobert-cv prints it as its error message)."""


def parse_folds(spec: str, data: str) -> List[int]:
    """``all`` (every fold of the task's default corpus split), ``1,2,5`` or ``1-4``."""
    if spec == "all":
        meta_path = os.path.join(data, f"{MemobertEmotionConfig.corpus_split}.meta.tsv")
        return list(range(1, num_folds(read_meta(meta_path)) + 1))
    folds = []
    for part in spec.split(","):
        start, _, end = part.partition("-")
        folds += list(range(int(start), int(end or start) + 1))
    return folds


def write_tables(out_dir: str) -> str:
    """Summarise every result under ``out_dir`` into results.md, results.csv and low_resource.png."""
    rows = summarise(collect_results(out_dir))
    if not rows:
        raise NoResultsError(f"{out_dir}: no result.json found")
    table = write_markdown(rows, os.path.join(out_dir, "results.md"))
    write_csv(rows, os.path.join(out_dir, "results.csv"))
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
    run.add_argument("--folds", default="all", help="'all', '1,2' or '1-4'")
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
    run.add_argument("--prompt-loss", choices=("label_words", "vocabulary"), default=FoldJob.prompt_loss,
                     help="prompt settings' loss: cross-entropy over the label words, or the MLM cross-entropy over "
                          "the whole vocabulary at [MASK] (the authors')")
    run.add_argument("--arch", default=FoldJob.arch)
    run.add_argument("--lr", type=float, default=FoldJob.lr, help="default: 5e-5 on full data, 3e-5 on a fraction")
    run.add_argument("--max-epoch", type=int, default=FoldJob.max_epoch)
    run.add_argument("--batch-size", type=int, default=FoldJob.batch_size)
    run.add_argument("--keep-checkpoints", action="store_true", help="keep each fold's checkpoints after testing")
    run.add_argument("extra", nargs=argparse.REMAINDER, help="after --: extra fairseq-train arguments")
    return parser


def plan_sweep(args: argparse.Namespace) -> List[FoldJob]:
    """The fold jobs of a parsed ``memobert-cv run`` command line."""
    corpora = _pairs(args.corpus, "--corpus")
    return plan_jobs(
        args.out, corpora,
        settings=[s.strip() for s in args.settings.split(",") if s.strip()],
        folds={name: parse_folds(args.folds, data) for name, data in corpora.items()},
        seeds=[int(s) for s in args.seeds.split(",")],
        fractions=[float(f) for f in args.fractions.split(",")],
        pretrained=_pairs(args.pretrained, "--pretrained"),
        bert_init=args.bert_init,
        arch=args.arch, lr=args.lr, max_epoch=args.max_epoch, batch_size=args.batch_size,
        keep_checkpoints=args.keep_checkpoints, same_subset_for_all_seeds=args.same_subset_for_all_seeds,
        lr_schedule=args.lr_schedule, decay_norm_and_bias=args.decay_norm_and_bias, prompt_loss=args.prompt_loss,
        extra_train_args=[a for a in args.extra if a != "--"],
    )


def main(argv=None) -> None:
    logging.basicConfig(format="%(asctime)s | %(message)s", level=logging.INFO, stream=sys.stdout, force=True)
    args = build_parser().parse_args(argv)
    if args.command == "run":
        jobs = plan_sweep(args)
        logger.info("%d fold jobs under %s; each writes its commands and output to its train.log", len(jobs), args.out)
        start = time.monotonic()
        for done, job in enumerate(jobs, start=1):
            try:
                result = run_fold_job(job)
            except OutputBusyError as exc:  # another sweep is on this fold: say so, as for any CLI error here
                raise SystemExit(str(exc)) from None
            elapsed = time.monotonic() - start
            eta = elapsed / done * (len(jobs) - done)
            logger.info("[%d/%d] %s %s frac %g seed %d fold %d: test WA %.4f UAR %.4f (ETA %.0fs)",
                        done, len(jobs), job.corpus, job.row_label, job.train_fraction, job.seed, job.fold,
                        result["test"]["wa"], result["test"]["uar"], eta)
    try:
        table = write_tables(args.out)
    except NoResultsError as exc:
        raise SystemExit(str(exc)) from None  # the message alone, exit status 1, as for any CLI error here
    print(table)


if __name__ == "__main__":
    main()
