"""Guards on fairseq-train's loop, installed from the plugin: a finished run stays finished, one run per save dir.

fairseq 0.12's ``fairseq_cli.train.main`` checks ``--max-update`` only *after* a training
step (in ``validate_and_save``), so a run restored from a checkpoint that already reached it
trains one more update and saves over ``checkpoint_last.pt``/``checkpoint_best.pt``; every
rerun of a finished job (a Slurm requeue, a repeated command) moved the model on. The
guard makes ``train`` return "stop" before its first step when the restored run is done.
"""

from __future__ import annotations

import logging
import math

import fairseq_cli.train as fairseq_train
from fairseq import checkpoint_utils

from .output_lock import lock_output_dir

__all__ = ["run_is_finished", "install_run_guards"]

logger = logging.getLogger(__name__)

_fairseq_train_epoch = fairseq_train.train
_fairseq_verify_checkpoint_directory = checkpoint_utils.verify_checkpoint_directory


def run_is_finished(cfg, trainer) -> bool:
    """Whether the restored run already met fairseq's stopping conditions on updates or training time."""
    max_update = cfg.optimization.max_update or math.inf
    hours = trainer.cumulative_training_time() / 3600
    return trainer.get_num_updates() >= max_update or 0 < cfg.optimization.stop_time_hours < hours


def _train_epoch_unless_finished(cfg, trainer, task, epoch_itr):
    if run_is_finished(cfg, trainer):
        logger.info("the run is already finished (%d updates, --max-update %s): nothing to train, no checkpoint written",
                    trainer.get_num_updates(), cfg.optimization.max_update)
        return [None], True
    return _fairseq_train_epoch(cfg, trainer, task, epoch_itr)


def _verify_and_lock_checkpoint_directory(save_dir: str) -> None:
    _fairseq_verify_checkpoint_directory(save_dir)
    lock_output_dir(save_dir, "this training save dir")


def install_run_guards() -> None:
    """Route fairseq-train's epoch loop and save-dir check (fairseq looks both up at call time) through the guards."""
    fairseq_train.train = _train_epoch_unless_finished
    checkpoint_utils.verify_checkpoint_directory = _verify_and_lock_checkpoint_directory
