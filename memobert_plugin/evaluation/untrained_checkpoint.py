"""Zero-shot folds (``--fractions 0``): the initialisation itself becomes the fold's checkpoint.

A prompt reads emotions out of the pretrained MLM head and adds no parameters, so a
pretrained model can be tested with no labels at all. fairseq-train cannot stop before its
first update, so this takes fairseq-train's own command line, builds the task, model and
criterion as fairseq-train would, and has fairseq's Trainer save them untouched as
``checkpoint_best.pt`` in ``--save-dir``; ``fairseq-validate`` then tests it like any fold.
"""

import os
import sys

from fairseq import options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from memobert_plugin import register
from memobert_plugin.fairseq_patches import mark_memobert_save_dir

__all__ = ["save_untrained_checkpoint", "main"]


def save_untrained_checkpoint(argv) -> str:
    """Write ``checkpoint_best.pt`` for fairseq-train arguments ``argv`` without training; its path."""
    register()  # run as python -m, the package is imported before fairseq: --user-dir would skip it
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    trainer = Trainer(cfg, task, model, task.build_criterion(cfg.criterion))
    os.makedirs(cfg.checkpoint.save_dir, exist_ok=True)
    mark_memobert_save_dir(cfg.checkpoint.save_dir)  # its save is atomic, as a memobert run's
    trainer.consolidate_optimizer()  # as fairseq's checkpoint_utils.save_checkpoint does before saving
    return trainer.save_checkpoint(os.path.join(cfg.checkpoint.save_dir, "checkpoint_best.pt"), {})


def main(argv=None) -> None:
    print(f"untrained checkpoint: {save_untrained_checkpoint(sys.argv[1:] if argv is None else argv)}")


if __name__ == "__main__":
    main()
