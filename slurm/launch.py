"""Submit memobert work to Slurm (or run it with submitit's local executor).

    python -m slurm.launch pretrain [--config FILE] [--cluster slurm|local] [key=value ...]
    python -m slurm.launch cv       [--config FILE] [--cluster slurm|local] [key=value ...]
    python -m slurm.launch collect  [--config FILE] [--cluster slurm|local] [key=value ...]

The configuration is the YAML file (default: slurm/config/<command>.yaml; collect reads cv's),
then the ``key=value`` overrides, e.g. ``resources.nodes=2 fairseq.lr=1e-4 seeds=[1,2]``.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional

from .config import CLUSTERS, CONFIG_DIR, ConfigError, CVConfig, PretrainConfig, load_config

__all__ = ["main"]

logger = logging.getLogger("memobert.slurm")

_DEFAULT_CONFIG = {"pretrain": "pretrain.yaml", "cv": "cv.yaml", "collect": "cv.yaml"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m slurm.launch", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="See docs/cluster.md.",
    )
    parser.add_argument("command", choices=sorted(_DEFAULT_CONFIG), help="pretrain: one fairseq-train job; "
                        "cv: a job array of fold jobs; collect: write the sweep's tables")
    parser.add_argument("--config", help="YAML configuration (default: slurm/config/<command>.yaml)")
    parser.add_argument("--cluster", choices=CLUSTERS, help="override the configuration's cluster")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides (omegaconf dotlist)")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = _parser().parse_intermixed_args(argv)
    logging.basicConfig(format="%(asctime)s | %(message)s", level=logging.INFO, stream=sys.stdout)
    config_path = args.config or os.path.join(CONFIG_DIR, _DEFAULT_CONFIG[args.command])
    malformed = [o for o in args.overrides if "=" not in o]
    if malformed:
        raise SystemExit(f"error: overrides are key=value, got {malformed}")
    try:
        # the configuration first: its errors should not wait for fairseq to import
        config = load_config(PretrainConfig if args.command == "pretrain" else CVConfig,
                             config_path, args.overrides, args.cluster)
        if args.command == "pretrain":
            from memobert_plugin.evaluation.cross_validation import PLUGIN_DIR

            from .pretrain import submit_pretrain

            submit_pretrain(config, PLUGIN_DIR)
            return
        from .cv import plan, submit_collect, submit_cv

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
