"""Every change memobert makes to fairseq and torch, why, and to what it applies.

:func:`install` puts them in place; ``memobert_plugin.register()`` calls it, which is what
``--user-dir memobert_plugin`` (and every memobert console script that runs fairseq in-process)
triggers. Importing a module of the package installs none of them. Each replaced fairseq function
decides per call whether the work is memobert's — the checkpoint's config names a memobert task or
model, the trainer's task is a memobert task, the file lies in a memobert run's save dir — and
otherwise calls fairseq's own function unchanged, so non-memobert work runs exactly as without the
plugin and finds nothing of it in its save dir.

Each entry: the fairseq (or torch) function replaced -- what changes -- to what it applies.

1. ``checkpoint_utils.load_checkpoint_to_cpu`` (``fairseq-validate --path``, ``load_model_ensemble_and_task``,
   ``--restore-file``, wav2vec 2.0's ``w2v_path``, hub loading) -- the file is read weights-only first (torch's
   allowlist :data:`.checkpoints.safe_loading.ALLOWED_GLOBALS` granted for this call only, never process-wide), then
   refused if its config holds an OmegaConf interpolation, if it has no config, or if a field fairseq
   evaluates (``conv_feature_layers``, fconv's layer lists, ...) is not a literal -- *every checkpoint*, as
   these make fairseq run code or read the environment; and a checkpoint naming a memobert task or model
   must name only memobert ones (:mod:`.checkpoints.policy`) -- *checkpoints naming memobert's*.
2. ``trainer.Trainer.load_checkpoint`` -- the file a run restores must be a memobert checkpoint --
   *trainers of a memobert task*.
3. ``checkpoint_utils.load_checkpoint`` (fairseq-train, before it restores) -- one writer per save dir
   (:mod:`.output_lock`), and the save dir marked as a memobert run's -- *trainers of a memobert task*.
4. ``fairseq_cli.train.train`` -- a restored run that already reached ``--max-update`` or
   ``--stop-time-hours`` trains nothing (fairseq 0.12 checks only after a step, so every rerun of a
   finished job trained one more update and overwrote its checkpoints) -- *memobert tasks*.
5. ``checkpoint_utils.torch_persistent_save`` and ``file_io.PathManager.copy`` -- written under a
   per-process temporary name and renamed when complete (fairseq copies over ``checkpoint_last.pt`` in
   place: a kill mid-copy truncated it) -- *files in a memobert run's save dir*.
6. fairseq's task and model config registries -- options added later by streams and objectives
   (:mod:`.registered_configs`) -- *memobert's own task and model names*.
7. the logger ``fairseq.tasks.text_to_speech`` -- its INFO line asking for tensorboardX, which no memobert
   command uses, is hidden (:func:`quiet_tensorboard_nag`) -- *installed at package import*, not by
   :func:`install`, because fairseq prints it while being imported.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from typing import Any, Dict, Set

__all__ = ["install", "mark_memobert_save_dir", "run_is_finished", "quiet_tensorboard_nag"]

logger = logging.getLogger(__name__)

#: real paths of the save dirs of memobert runs in this process: their checkpoint writes are atomic
_MEMOBERT_SAVE_DIRS: Set[str] = set()
#: fairseq's own functions, kept by install()
_fairseq: Dict[str, Any] = {}


class _NoTensorboardNag(logging.Filter):
    """fairseq's text-to-speech task, imported with every fairseq, asks at INFO level to install tensorboardX,
    which none of our commands use (``pip install memobert[tensorboard]`` is for --tensorboard-logdir)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please install tensorboardX")


def quiet_tensorboard_nag() -> None:
    logging.getLogger("fairseq.tasks.text_to_speech").addFilter(_NoTensorboardNag())


# --- is this memobert's? ---------------------------------------------------------------------
def _is_memobert_task(task) -> bool:
    from memobert_plugin.tasks.multimodal_task import MultimodalTask

    return isinstance(task, MultimodalTask)


def mark_memobert_save_dir(save_dir: str) -> None:
    """Checkpoint saves and copies into ``save_dir`` are atomic from now on (done for a memobert run's)."""
    _MEMOBERT_SAVE_DIRS.add(os.path.realpath(save_dir))


def _in_memobert_save_dir(path: str) -> bool:
    from fairseq.file_io import PathManager

    return (not PathManager.path_requires_pathmanager(path)  # remote storage (an iopath handler): fairseq's way
            and os.path.realpath(os.path.dirname(os.path.abspath(path))) in _MEMOBERT_SAVE_DIRS)


# --- checkpoint reading ----------------------------------------------------------------------
def _checked_load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
    import torch
    from fairseq.file_io import PathManager

    from memobert_plugin.checkpoints.policy import check_fairseq_checkpoint
    from memobert_plugin.checkpoints.safe_loading import ALLOWED_GLOBALS, load_checkpoint_weights_only

    local = PathManager.get_local_path(path)
    # zip checkpoints are memory-mapped: this first read costs their config, not their weights
    check_fairseq_checkpoint(load_checkpoint_weights_only(local), local)
    with torch.serialization.safe_globals(ALLOWED_GLOBALS):
        return _fairseq["load_checkpoint_to_cpu"](path, arg_overrides, load_on_all_ranks)


def _trainer_load_checkpoint(self, filename, *args, **kwargs):
    if _is_memobert_task(self.task) and os.path.isfile(filename):
        from memobert_plugin.checkpoints.policy import load_memobert_checkpoint

        load_memobert_checkpoint(filename)
    return _fairseq["Trainer.load_checkpoint"](self, filename, *args, **kwargs)


# --- fairseq-train's loop --------------------------------------------------------------------
def _load_checkpoint(cfg, trainer, **passthrough_args):
    if _is_memobert_task(trainer.task):
        from fairseq import distributed_utils

        from memobert_plugin.output_lock import lock_output_dir

        mark_memobert_save_dir(cfg.save_dir)
        if distributed_utils.is_master(trainer.cfg.distributed_training):  # the ranks of one run share it
            lock_output_dir(cfg.save_dir, "this training save dir")
    return _fairseq["load_checkpoint"](cfg, trainer, **passthrough_args)


def run_is_finished(cfg, trainer) -> bool:
    """Whether the restored run already met fairseq's stopping conditions on updates or training time."""
    max_update = cfg.optimization.max_update or math.inf
    hours = trainer.cumulative_training_time() / 3600
    return trainer.get_num_updates() >= max_update or 0 < cfg.optimization.stop_time_hours < hours


def _train_epoch_unless_finished(cfg, trainer, task, epoch_itr):
    if _is_memobert_task(task) and run_is_finished(cfg, trainer):
        logger.info("the run is already finished (%d updates, --max-update %s): nothing to train, no checkpoint written",
                    trainer.get_num_updates(), cfg.optimization.max_update)
        return [None], True
    return _fairseq["train"](cfg, trainer, task, epoch_itr)


# --- checkpoint writing ----------------------------------------------------------------------
def _atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    if not _in_memobert_save_dir(dst_path):
        return _fairseq["copy"](src_path, dst_path, overwrite)
    from fairseq.file_io import PathManager

    from memobert_plugin.files import atomic_open

    if not overwrite and PathManager.exists(dst_path):
        raise FileExistsError(f"{dst_path} exists and overwrite=False")
    with open(src_path, "rb") as src, atomic_open(dst_path, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return True


def _atomic_save(obj, filename, async_write: bool = False) -> None:
    if async_write or not _in_memobert_save_dir(filename):
        return _fairseq["torch_persistent_save"](obj, filename, async_write)
    from fairseq import checkpoint_utils

    from memobert_plugin.files import atomic_open

    with atomic_open(filename, "wb") as handle:
        checkpoint_utils._torch_persistent_save(obj, handle)


def install() -> None:
    """Put every change above in place (idempotent). fairseq looks each of these up at call time."""
    if _fairseq:
        return
    import fairseq_cli.train as fairseq_train
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager
    from fairseq.trainer import Trainer

    _fairseq.update(load_checkpoint_to_cpu=checkpoint_utils.load_checkpoint_to_cpu,
                    load_checkpoint=checkpoint_utils.load_checkpoint,
                    torch_persistent_save=checkpoint_utils.torch_persistent_save,
                    copy=PathManager.copy, train=fairseq_train.train,
                    **{"Trainer.load_checkpoint": Trainer.load_checkpoint})
    checkpoint_utils.load_checkpoint_to_cpu = _checked_load_checkpoint_to_cpu
    checkpoint_utils.load_checkpoint = _load_checkpoint
    checkpoint_utils.torch_persistent_save = _atomic_save
    PathManager.copy = staticmethod(_atomic_copy)
    fairseq_train.train = _train_epoch_unless_finished
    Trainer.load_checkpoint = _trainer_load_checkpoint
