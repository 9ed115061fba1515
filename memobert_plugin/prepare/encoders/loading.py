"""Pretrained encoders read from local files, for the acoustic and visual stages.

A transformers model directory is loaded only when its ``config.json`` names a model type the
stage knows (a whitelist, each mapped to a transformers class named here: never
``trust_remote_code``, never a class the file picks), with every size it gives bounded by
:mod:`memobert_plugin.checkpoints.model_bounds` before a tensor is allocated, and weights from ``model.safetensors`` or a
weights-only ``pytorch_model.bin``. Nothing is downloaded (``local_files_only``).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Iterable, Mapping, Tuple

from memobert_plugin.files import sha256_file
from memobert_plugin.checkpoints.model_bounds import check_model_dims, read_config_json
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from memobert_plugin.prepare.shards import disable_torchaudio

__all__ = ["read_model_config", "config_sizes", "load_transformers_model", "model_checksum"]

def read_model_config(path: str, model_types: Mapping[str, str], what: str) -> dict:
    """``path/config.json`` as a dict, refused unless its ``model_type`` is one of ``model_types``."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path}: no config.json; expected a transformers {what} directory")
    config = read_config_json(config_path)
    if config.get("model_type") not in model_types:
        kind = config.get("model_type")
        raise ValueError(f"{config_path}: model_type {kind!r} is not a {what} memobert reads; "
                         f"give one of: {', '.join(model_types)}")
    if config.get("auto_map"):  # custom code beside the weights: never run
        raise ValueError(f"{config_path}: refers to custom model code (auto_map); memobert reads only the "
                         "transformers library's own models")
    return config


def _weights_file(path: str) -> Tuple[str, bool]:
    for name, safetensors in (("model.safetensors", True), ("pytorch_model.bin", False)):
        if os.path.isfile(os.path.join(path, name)):
            return name, safetensors
    raise FileNotFoundError(f"{path}: neither model.safetensors nor pytorch_model.bin")


def load_transformers_model(path: str, class_name: str, sizes: Iterable[Tuple[str, Any]], optional_keys=()):
    """The transformers ``class_name`` model of directory ``path``, in eval mode.

    ``sizes`` are the ``(field, value)`` pairs of the config to bound (:func:`check_model_dims`)
    before the model is built. Weights the class has and the files lack are an error (a model
    half random would give features silently); weights the files have beyond the class's
    (a pretraining or CTC head) are left aside, as are the class's ``optional_keys`` prefixes.
    """
    check_model_dims(dict(sizes), os.path.join(path, "config.json"))
    weights, safetensors = _weights_file(path)
    disable_torchaudio()
    import transformers

    model_class = getattr(transformers, class_name)
    if not safetensors:  # transformers reads a pickled .bin weights-only too, but its refusal advises against it
        load_checkpoint_weights_only(os.path.join(path, weights))
    try:
        model, info = model_class.from_pretrained(path, local_files_only=True, trust_remote_code=False,
                                                  use_safetensors=safetensors, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: transformers could not load it as a {class_name} "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(tuple(optional_keys))]
    if missing:
        raise ValueError(f"{os.path.join(path, weights)}: lacks {len(missing)} weights of a {class_name} "
                         f"(e.g. {sorted(missing)[0]}); not a complete pretrained model")
    return model.eval()


def model_checksum(path: str) -> str:
    """SHA-256 of a checkpoint file, or of a model directory's files (names and contents)."""
    if os.path.isfile(path):
        return sha256_file(path)
    files = sorted(f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)))
    return hashlib.sha256("".join(f"{f}:{sha256_file(os.path.join(path, f))}\n" for f in files).encode()).hexdigest()


def config_sizes(config: Dict[str, Any], fields: Iterable[str]) -> list:
    """``(field, value)`` of each of ``fields`` the config sets, for :func:`load_transformers_model`."""
    return [(f, config[f]) for f in fields if f in config]
