"""Submit memobert work to Slurm (or run it with submitit's local executor).

    memobert-launch pretrain [--config FILE|NAME] [--cluster slurm|local] [key=value ...]
    memobert-launch cv       [--config FILE|NAME] [--cluster slurm|local] [key=value ...]
    memobert-launch collect  [--config FILE|NAME] [--cluster slurm|local] [key=value ...]
    memobert-launch prepare  [--config FILE|NAME] [--cluster slurm|local] [key=value ...]

The configuration is the YAML file (default: the packaged <command>.yaml; collect reads cv's;
a NAME such as ``cv_demo`` picks a packaged one), then the ``key=value`` overrides, e.g.
``resources.nodes=2 fairseq.lr=1e-4 seeds=[1,2]``. ``python -m slurm.launch`` is an alias.
Needs the ``slurm`` extra: ``pip install memobert[slurm]``.
"""

import argparse
import logging
import sys
from typing import List, Optional

from memobert_plugin.cluster.config import (
    CLUSTERS,
    ConfigError,
    CVConfig,
    PrepareConfig,
    PretrainConfig,
    config_path,
    load_config,
)

__all__ = ["main"]

logger = logging.getLogger("memobert.slurm")

_DEFAULT_CONFIG = {"pretrain": "pretrain", "cv": "cv", "collect": "cv", "prepare": "prepare"}
_SCHEMA = {"pretrain": PretrainConfig, "cv": CVConfig, "collect": CVConfig, "prepare": PrepareConfig}


def _check_submitit() -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("the launchers need submitit: pip install 'memobert[slurm]'") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memobert-launch", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="See docs/cluster.md.",
    )
    parser.add_argument("command", choices=sorted(_DEFAULT_CONFIG), help="pretrain: one fairseq-train job; "
                        "cv: a job array of fold jobs; collect: write the sweep's tables; "
                        "prepare: memobert-prepare's extractor stages as job arrays, then the write step")
    parser.add_argument("--config", help="YAML file, or the name of a packaged one (pretrain, pretrain_demo, cv, "
                        "cv_demo, ...; default: <command>)")
    parser.add_argument("--cluster", choices=CLUSTERS, help="override the configuration's cluster")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides (omegaconf dotlist)")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = _parser().parse_intermixed_args(argv)
    logging.basicConfig(format="%(asctime)s | %(message)s", level=logging.INFO, stream=sys.stdout)
    malformed = [o for o in args.overrides if "=" not in o]
    if malformed:
        raise SystemExit(f"error: overrides are key=value, got {malformed}")
    try:
        _check_submitit()
        # the configuration first: its errors should not wait for fairseq to import
        config = load_config(_SCHEMA[args.command], config_path(args.config or _DEFAULT_CONFIG[args.command]),
                             args.overrides, args.cluster)
        if args.command == "pretrain":
            from memobert_plugin.evaluation.cross_validation import PLUGIN_DIR

            from memobert_plugin.cluster.pretrain import submit_pretrain

            submit_pretrain(config, PLUGIN_DIR)
            return
        if args.command == "prepare":
            from memobert_plugin.cluster.prepare import submit_prepare

            submit_prepare(config)
            return
        from memobert_plugin.cluster.cv import plan, submit_collect, submit_cv

        if args.command == "cv":
            submit_cv(config)
        else:
            job = submit_collect(config, plan(config))
            logger.info("collect job %s; waiting for it", job.job_id)
            print(job.result())
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
