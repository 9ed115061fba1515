"""What the plugin lets be built from a checkpoint: memobert tasks and memobert models only.

fairseq builds whatever a checkpoint's config names: ``fairseq-validate --path`` and
``checkpoint_utils.load_model_ensemble_and_task`` set up the task in ``cfg.task`` and build
the model in ``cfg.model``, and some registered models (fconv, wav2vec 2.0, HuBERT, ...)
``eval`` config strings while being built. So with the plugin loaded, every checkpoint
fairseq reads (through ``load_checkpoint_to_cpu``: those two, ``--restore-file``) and every
one memobert reads itself (``--memobert-init``, ``memobert-predict``) is checked first:
readable weights-only, no interpolation, a memobert task and model named, and a model shape
within :mod:`~memobert_plugin.model_bounds`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from .model_bounds import check_model_dims
from .safe_loading import UnsafeCheckpointError, checkpoint_options, load_checkpoint_weights_only, refuse_interpolation

__all__ = ["require_memobert_model", "memobert_model_dims", "check_memobert_checkpoint", "load_memobert_checkpoint",
           "guard_fairseq_checkpoint_loading"]


def _memobert_models() -> list:
    from fairseq.models import ARCH_MODEL_REGISTRY

    from .models.memobert import MemobertModel

    return sorted(name for name, cls in ARCH_MODEL_REGISTRY.items() if issubclass(cls, MemobertModel))


def _memobert_tasks() -> list:
    from fairseq.tasks import TASK_REGISTRY

    from .tasks.multimodal_task import MultimodalTask

    return sorted(name for name, cls in TASK_REGISTRY.items() if issubclass(cls, MultimodalTask))


def require_memobert_model(name: Any, origin: str) -> None:
    """``name`` (a model config's ``_name``) must be a memobert architecture: fairseq builds nothing else here."""
    from fairseq.models import MODEL_REGISTRY

    from .models.memobert import MemobertModel

    known = _memobert_models()
    model = MODEL_REGISTRY.get(name) if isinstance(name, str) else None
    if name not in known and not (model is not None and issubclass(model, MemobertModel)):
        raise UnsafeCheckpointError(
            f"{origin}: refused: the model {name!r} is not a memobert architecture ({', '.join(known)}); "
            "memobert tasks build only memobert models"
        )


def memobert_model_dims(model_options: Dict[str, Any]) -> Dict[str, Any]:
    """The sizes a memobert model config holds (a feature dim of 0 means "read from the data")."""
    from .models.pretrained import memobert_size_fields  # that module loads checkpoints through this one

    return {k: model_options[k] for k in memobert_size_fields() if k in model_options
            and not (k.endswith("_feature_dim") and model_options[k] == 0)}


def check_memobert_checkpoint(state: Dict[str, Any], path: str, task: Optional[str] = None) -> None:
    """Refuse a checkpoint whose config could run code or is not memobert's (``task``: the task it must be for)."""
    refuse_interpolation(state, path)
    model_options, task_options = checkpoint_options(state, path)
    require_memobert_model(model_options.get("_name"), path)
    check_model_dims(memobert_model_dims(model_options), path)
    name, tasks = task_options.get("_name"), _memobert_tasks()
    if name not in tasks:
        raise UnsafeCheckpointError(f"{path}: refused: the task {name!r} is not a memobert task ({', '.join(tasks)})")
    if task is not None and name != task:
        raise ValueError(f"{path}: a {name} checkpoint; this needs a {task} one")
    if not isinstance(state.get("model"), dict):
        raise ValueError(f"{path}: no model weights ('model' entry); not a checkpoint saved by fairseq-train")


def load_memobert_checkpoint(path: str, task: Optional[str] = None) -> Dict[str, Any]:
    """A memobert checkpoint, loaded weights-only and checked (:func:`check_memobert_checkpoint`)."""
    state = load_checkpoint_weights_only(path)
    check_memobert_checkpoint(state, path, task)
    return state


_fairseq_load_checkpoint_to_cpu = checkpoint_utils.load_checkpoint_to_cpu


def _checked_load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
    # zip checkpoints are memory-mapped: this first read costs their config, not their weights
    load_memobert_checkpoint(PathManager.get_local_path(path))
    return _fairseq_load_checkpoint_to_cpu(path, arg_overrides, load_on_all_ranks)


def guard_fairseq_checkpoint_loading() -> None:
    """Check every checkpoint fairseq loads (validation, ``--restore-file``, ensembles) before it builds anything."""
    checkpoint_utils.load_checkpoint_to_cpu = _checked_load_checkpoint_to_cpu
