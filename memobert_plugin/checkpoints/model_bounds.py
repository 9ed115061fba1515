"""Sane bounds on model shapes read from files, checked before anything is allocated.

A config that asks for a 10^6-wide layer builds a network of terabytes, and only an outside
memory limit stops it, with a traceback naming neither the file nor the field. Every loader
that builds a network from a file's numbers (a wav2vec 2.0 checkpoint or config.json, the FER
checkpoint's architecture, a ``--bert-init`` config.json, a memobert checkpoint's model
config) passes those numbers through :func:`check_model_dims` first. The limits are far
beyond any released model (XLS-R 2B: 48 layers of 1920, FFN 7680; Whisper large: d_model 1280).
:func:`read_config_json` reads a config.json with its problems named.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

__all__ = ["ModelShapeError", "LIMITS", "FIELD_KINDS", "MAX_PARAMETERS", "check_model_dims", "read_config_json"]


class ModelShapeError(ValueError):
    """A model shape from a file that is missing, not an integer, or beyond sane bounds."""


#: kind of dimension -> (smallest, largest) allowed value
LIMITS: Dict[str, tuple] = {
    "layers": (1, 256),
    "width": (1, 32768),  # hidden / embedding size
    "ffn": (1, 131072),
    "heads": (1, 1024),
    "vocab": (1, 2_000_000),
    "positions": (1, 1 << 20),
    "channels": (1, 65536),  # convolution channels, input feature dims, class counts
    "kernel": (1, 4096),  # convolution kernels and strides, patch sizes, conv position groups
    "image": (1, 8192),  # image side in pixels
}

#: a field's name, as the files spell it -> its kind (fairseq, Hugging Face, memobert, FER names)
FIELD_KINDS: Dict[str, str] = {
    **dict.fromkeys(("encoder_layers", "decoder_layers", "num_hidden_layers", "depth", "num_conv_pos_embedding_groups",
                     "conv_pos_groups", "num_conv_pos_embedding_layers", "pos_conv_depth"), "layers"),
    **dict.fromkeys(("encoder_embed_dim", "decoder_embed_dim", "hidden_size", "d_model", "embed_dim", "projection_dim"),
                    "width"),
    **dict.fromkeys(("encoder_ffn_embed_dim", "decoder_ffn_embed_dim", "intermediate_size", "encoder_ffn_dim",
                     "decoder_ffn_dim"), "ffn"),
    **dict.fromkeys(("encoder_attention_heads", "decoder_attention_heads", "num_attention_heads"), "heads"),
    **dict.fromkeys(("vocab_size", "latent_vars", "num_codevectors_per_group"), "vocab"),
    **dict.fromkeys(("max_position_embeddings", "max_source_positions", "max_target_positions", "max_text_positions",
                     "max_frame_positions", "max_positions", "type_vocab_size", "num_buckets", "max_bucket_distance"),
                    "positions"),
    **dict.fromkeys(("conv_dim", "growth_rate", "num_classes", "num_labels", "num_mel_bins", "num_channels",
                     "visual_feature_dim", "acoustic_feature_dim", "latent_groups", "num_codevector_groups"),
                    "channels"),
    **dict.fromkeys(("conv_kernel", "conv_stride", "conv_pos", "num_conv_pos_embeddings", "conv_pos_kernel_size",
                     "patch_size"), "kernel"),
    **dict.fromkeys(("image_size",), "image"),
}

#: the largest parameter count a shape may imply (16 GB in float32)
MAX_PARAMETERS = 4 * 10**9


def _kind(name: str) -> str:
    # "conv_dim[3]": one entry of a list field; "text_config.hidden_size": a field of a nested config
    base = name.split("[", 1)[0].rsplit(".", 1)[-1]
    if base in FIELD_KINDS:
        return FIELD_KINDS[base]
    if base.endswith("_feature_dim"):  # an input stream declared by an extension
        return "channels"
    raise KeyError(f"model_bounds: no kind for the field {name!r}; add it to FIELD_KINDS")


def _largest(dims: Dict[str, int], kind: str) -> int:
    return max((v for k, v in dims.items() if _kind(k) == kind), default=0)


def _parameters(dims: Dict[str, int]) -> int:
    """A transformer's parameter count implied by ``dims`` (0 when they name no layers and width):
    per layer attention (4 W^2) and FFN (2 W F), plus the embedding tables and input projections."""
    layers, width = _largest(dims, "layers"), _largest(dims, "width")
    if not (layers and width):
        return 0
    ffn = _largest(dims, "ffn") or 4 * width
    tables = sum(v for k, v in dims.items() if _kind(k) in ("vocab", "positions", "channels"))
    return layers * (4 * width * width + 2 * width * ffn) + tables * width


def check_model_dims(dims: Mapping[str, Any], source: str, required: tuple = (),
                     parameters: Optional[int] = None) -> Dict[str, int]:
    """``dims`` (field -> value as read from ``source``) as ints within :data:`LIMITS`, or a
    :class:`ModelShapeError` naming ``source`` and the field.

    A list value (Hugging Face's ``conv_dim``) is checked entry by entry; ``required`` fields must
    be present. The shape as a whole may imply at most :data:`MAX_PARAMETERS` parameters: a
    transformer's count is estimated from ``dims``; another kind of network (a CNN) passes its
    own count as ``parameters``.
    """
    missing = [name for name in required if name not in dims]
    if missing:
        raise ModelShapeError(f"{source}: the model config lacks {', '.join(missing)}")
    checked: Dict[str, int] = {}
    for name, value in dims.items():
        is_list = isinstance(value, (list, tuple))
        if is_list and not 1 <= len(value) <= LIMITS["layers"][1]:  # per-layer sizes: at most one per layer
            raise ModelShapeError(f"{source}: {name} lists {len(value)} sizes (allowed: 1..{LIMITS['layers'][1]})")
        entries = {f"{name}[{i}]": v for i, v in enumerate(value)} if is_list else {name: value}
        for field, entry in entries.items():
            low, high = LIMITS[_kind(field)]
            if type(entry) is not int:  # bool, float, str, None: not a size
                raise ModelShapeError(f"{source}: {field} is {entry!r}, not an integer (allowed: {low}..{high})")
            if not low <= entry <= high:
                raise ModelShapeError(f"{source}: {field} = {entry} is out of bounds (allowed: {low}..{high})")
            checked[field] = entry
    parameters = max(parameters or 0, _parameters(checked))
    if parameters > MAX_PARAMETERS:
        raise ModelShapeError(f"{source}: the model config asks for about {parameters / 1e9:.0f} billion parameters "
                              f"(at most {MAX_PARAMETERS / 1e9:.0f} billion allowed); a damaged or crafted config")
    return checked


def read_config_json(path: str, what: Optional[str] = None) -> Dict[str, Any]:
    """A config.json as a dict; not JSON, not a JSON object, not UTF-8, or nested too deep is a
    ValueError naming ``path`` (and ``what`` option gave it)."""
    where = f"{what} {path}" if what else path
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text, so not a config.json") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deep to be a model config") from None
    if not isinstance(config, dict):
        raise ValueError(f"{where}: holds a JSON {type(config).__name__}, not an object of model settings")
    return config
