"""What the plugin lets be built from a checkpoint.

fairseq builds whatever a checkpoint's config names: ``fairseq-validate --path`` and
``checkpoint_utils.load_model_ensemble_and_task`` set up the task in ``cfg.task`` and build
the model in ``cfg.model``, and some registered models (fconv, wav2vec 2.0, HuBERT, ...)
``eval`` config strings while being built. Two rules:

* every checkpoint (:func:`check_fairseq_checkpoint`, applied by :mod:`..fairseq_patches` to
  whatever fairseq loads): plain data, a config, no interpolation, evaluated fields literal;
* memobert's (one naming a memobert task or model, every one memobert reads itself:
  ``--memobert-init``, ``memobert-predict``, bundles, a memobert run's ``--restore-file``):
  besides, a memobert task and a memobert model, nothing else, with a model shape within
  :mod:`~memobert_plugin.checkpoints.model_bounds` (:func:`check_memobert_checkpoint`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from memobert_plugin.conf.model_shape import memobert_size_fields
from memobert_plugin.checkpoints.model_bounds import check_model_dims
from memobert_plugin.checkpoints.safe_loading import (
    UnsafeCheckpointError,
    checkpoint_options,
    load_checkpoint_weights_only,
    refuse_code_in_evaluated_fields,
    refuse_interpolation,
)

__all__ = ["MEMOBERT_MARK", "require_memobert_model", "memobert_model_dims", "check_fairseq_checkpoint",
           "check_memobert_checkpoint", "load_memobert_checkpoint"]

#: the class attribute that marks memobert's own tasks and models (``MultimodalTask``, ``MemobertModel`` and
#: what extends them): they import this module, so it recognises them by the mark instead of importing them
MEMOBERT_MARK = "is_memobert"


def _is_memobert(cls: Any) -> bool:
    return getattr(cls, MEMOBERT_MARK, False) is True


def _registered_memobert(registry: Dict[str, type]) -> list:
    from memobert_plugin import register

    register()  # memobert's names are those registered
    return sorted(name for name, cls in registry.items() if _is_memobert(cls))


def _memobert_models() -> list:
    from fairseq.models import ARCH_MODEL_REGISTRY

    return _registered_memobert(ARCH_MODEL_REGISTRY)


def _memobert_tasks() -> list:
    from fairseq.tasks import TASK_REGISTRY

    return _registered_memobert(TASK_REGISTRY)


def require_memobert_model(name: Any, origin: str) -> None:
    """``name`` (a model config's ``_name``) must be a memobert architecture: fairseq builds nothing else here."""
    from fairseq.models import MODEL_REGISTRY

    known = _memobert_models()
    model = MODEL_REGISTRY.get(name) if isinstance(name, str) else None
    if name not in known and not _is_memobert(model):
        raise UnsafeCheckpointError(
            f"{origin}: refused: the model {name!r} is not a memobert architecture ({', '.join(known)}); "
            "memobert tasks build only memobert models"
        )


def memobert_model_dims(model_options: Dict[str, Any]) -> Dict[str, Any]:
    """The sizes a memobert model config holds (a feature dim of 0 means "read from the data")."""
    return {k: model_options[k] for k in memobert_size_fields() if k in model_options
            and not (k.endswith("_feature_dim") and model_options[k] == 0)}


def _checked_options(state: Dict[str, Any], path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(model options, task options), once nothing in the config could run code or read the environment."""
    refuse_interpolation(state, path)
    options = checkpoint_options(state, path)
    refuse_code_in_evaluated_fields(state, path)
    return options


def _require_memobert(state: Dict[str, Any], path: str, model_options, task_options, task: Optional[str]) -> None:
    require_memobert_model(model_options.get("_name"), path)
    check_model_dims(memobert_model_dims(model_options), path)
    name, tasks = task_options.get("_name"), _memobert_tasks()
    if name not in tasks:
        raise UnsafeCheckpointError(f"{path}: refused: the task {name!r} is not a memobert task ({', '.join(tasks)})")
    if task is not None and name != task:
        raise ValueError(f"{path}: a {name} checkpoint; this needs a {task} one")
    if not isinstance(state.get("model"), dict):
        raise ValueError(f"{path}: no model weights ('model' entry); not a checkpoint saved by fairseq-train")


def check_fairseq_checkpoint(state: Dict[str, Any], path: str) -> None:
    """Refuse a checkpoint whose config could run code or read the environment; one that names a memobert
    task or model must be memobert's through and through (:func:`check_memobert_checkpoint`)."""
    model_options, task_options = _checked_options(state, path)
    if model_options.get("_name") in _memobert_models() or task_options.get("_name") in _memobert_tasks():
        _require_memobert(state, path, model_options, task_options, None)


def check_memobert_checkpoint(state: Dict[str, Any], path: str, task: Optional[str] = None) -> None:
    """Refuse a checkpoint whose config could run code or is not memobert's (``task``: the task it must be for)."""
    _require_memobert(state, path, *_checked_options(state, path), task)


def load_memobert_checkpoint(path: str, task: Optional[str] = None) -> Dict[str, Any]:
    """A memobert checkpoint, loaded weights-only and checked (:func:`check_memobert_checkpoint`)."""
    state = load_checkpoint_weights_only(path)
    check_memobert_checkpoint(state, path, task)
    return state
