"""What the plugin lets a checkpoint file do: hold data, never run code.

Two layers, both needed. Weights-only unpickling (``torch.load(weights_only=True)``,
through an explicit allowlist) keeps a pickle from calling anything. But a checkpoint of
only dicts and strings can still reach code through its *config*: fairseq ``eval``s some
config strings (wav2vec 2.0's ``conv_feature_layers``, fconv's layer lists, ...), builds
whatever registered model the config names, and OmegaConf resolves ``${...}``
interpolations (``${oc.env:HOME}`` reads the environment) wherever a value is read. So
every config read from a checkpoint is checked here before anything is built from it:
no interpolation anywhere, and the fields fairseq evaluates parsed as literals.

Since torch 2.6 ``torch.load`` is weights-only by default and fairseq 0.12 calls it
without ``weights_only``; the few non-tensor types fairseq checkpoints hold are named in
:data:`ALLOWED_GLOBALS`, allowed for the loads that need them (never process-wide). Refusals
name the file and never suggest turning weights-only loading off (torch's own message does;
it is not passed on).
"""

from __future__ import annotations

import argparse
import ast
import os
import pickle
import pickletools
import re
import zipfile
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import torch

__all__ = [
    "ALLOWED_GLOBALS",
    "load_checkpoint_weights_only",
    "UnsafeCheckpointError",
    "refuse_interpolation",
    "checkpoint_options",
    "literal_conv_layers",
    "EVALUATED_FIELDS",
    "refuse_code_in_evaluated_fields",
]


def _numpy_scalar_reconstructor():
    # numpy 2 moved the pickled scalar reconstructor to numpy._core
    core = getattr(np, "_core", None) or np.core
    return core.multiarray.scalar


#: what fairseq 0.12's trainer pickles beyond tensors and plain containers
ALLOWED_GLOBALS = [
    _numpy_scalar_reconstructor(),  # metric values logged as numpy scalars
    np.dtype,
    *{type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")},
    argparse.Namespace,  # the options of pre-hydra checkpoints, e.g. the released wav2vec 2.0 wav2vec_small.pt
]

#: the part of torch's refusal worth showing: what the pickle asked for (torch's advice around it is dropped)
_ASKED_FOR = re.compile(r"(unsupported GLOBAL \S+|Unsupported global: GLOBAL \S+)")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asks for something beyond plain data: a type outside the allowlist, or a config
    that would make fairseq or OmegaConf run code or read the environment."""


def load_checkpoint_weights_only(path: str) -> Dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with the allowlist; a clear refusal or read error.

    Files in torch's zip format are memory-mapped, so reading a large checkpoint's config, or
    the model weights without the optimizer state, reads only what is used.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: an empty (0-byte) file, not a checkpoint; a save was cut short or the copy failed")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        asked = _ASKED_FOR.search(str(err))
        imported = asked.group(1).split()[-1] if asked else _first_import(path)
        if imported:
            raise UnsafeCheckpointError(
                f"{path}: refused: it asks to load {imported}, which is not plain data "
                "(tensors, numbers, strings, containers); a checkpoint from another program, or one crafted to run code"
            ) from None
        raise ValueError(f"{path}: not a readable torch checkpoint (its bytes are not torch.save data)") from None
    except (EOFError, KeyError, RuntimeError, OSError) as err:  # what torch.load raises on foreign or cut-off files
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated, or not written by torch.save): {type(err).__name__}"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a checkpoint dictionary")
    return state


def _first_import(path: str) -> str:
    """The first module.name a plain pickle file would import, read from its opcodes without running
    them ('' for bytes that are not a pickle); torch's refusal of such a file does not say."""
    strings: List[str] = []
    try:
        with open(path, "rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                name = str(arg).replace(" ", ".") if opcode.name in ("GLOBAL", "INST") else (
                    ".".join(strings[-2:]) if opcode.name == "STACK_GLOBAL" else "")
                if name:  # a dotted identifier; noise that happens to start like a pickle is not one
                    return name if re.fullmatch(r"[A-Za-z_][\w.]*", name) else ""
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001  (anything that is not a whole pickle: random bytes, a cut-off file)
        return ""
    return ""


#: deeper than any fairseq config (a few levels); deeper ones would exhaust Python's recursion in the readers
MAX_CONFIG_DEPTH = 64


def _strings(value: Any, where: str, path: str, depth: int = 0) -> Iterator[Tuple[str, str]]:
    """Every string inside a config (nested dicts, lists, Namespaces; keys too), with where it is.

    Nesting deeper than :data:`MAX_CONFIG_DEPTH` is refused with ``path`` named.
    """
    if depth > MAX_CONFIG_DEPTH:
        raise ValueError(f"{path}: {where} is nested more than {MAX_CONFIG_DEPTH} levels deep; not a fairseq config")
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, where, path, depth + 1)
            yield from _strings(item, f"{where}.{key}", path, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]", path, depth + 1)
    elif isinstance(value, str):
        yield where, value


def refuse_interpolation(state: Dict[str, Any], path: str) -> None:
    """Refuse OmegaConf interpolations (``${...}``) in a checkpoint's ``cfg`` or ``args``.

    fairseq saves configs resolved, so a ``${`` was put there by hand; resolving it could
    read environment variables (``oc.env``) or other config values. The value is not shown.
    A config nested too deep for the readers after this one is refused too.
    """
    for slot in ("cfg", "args"):
        for where, text in _strings(state.get(slot), slot, path):
            if "${" in text:
                raise UnsafeCheckpointError(
                    f"{path}: refused: {where} holds an OmegaConf interpolation ('${{...}}'), which fairseq "
                    "checkpoints never contain; it could read environment variables"
                )


def checkpoint_options(state: Dict[str, Any], path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(model options, task options) of a fairseq checkpoint, hydra (``cfg``) or pre-hydra (``args``) style.

    For an ``args`` checkpoint both are the flat option dict (``arch`` and ``task`` name them).
    """
    cfg = state.get("cfg")
    if cfg is not None:
        model = cfg.get("model") if isinstance(cfg, dict) else None
        if isinstance(model, argparse.Namespace):  # a model still configured by arguments (RoBERTa, ...)
            model = {"_name": getattr(model, "_name", None) or getattr(model, "arch", None), **vars(model)}
        if not isinstance(model, dict):
            raise ValueError(f"{path}: its 'cfg' has no model configuration; not a fairseq checkpoint")
        task = cfg.get("task") or {}
        return model, task if isinstance(task, dict) else {}
    args = state.get("args")
    if isinstance(args, argparse.Namespace):
        options = vars(args)
        return {"_name": options.get("arch"), **options}, {"_name": options.get("task"), **options}
    raise ValueError(f"{path}: no model configuration ('cfg' or 'args'); not a fairseq checkpoint")


#: the config fields fairseq 0.12 evaluates (``eval``, ``utils.eval_str_list``) while building a model,
#: optimizer or criterion from a checkpoint: wav2vec/wav2vec 2.0/HuBERT/data2vec feature extractors, fconv's
#: layer lists, character CNN filters, adaptive softmax cutoffs, optimizer betas, ...
EVALUATED_FIELDS = frozenset({
    "conv_feature_layers", "conv_aggregator_layers", "feature_encoder_spec", "override_encoder_layers",
    "encoder_layers", "decoder_layers", "encoder_attention", "decoder_attention", "self_attention",
    "project_input", "gated_attention", "downsample", "pretrained", "character_filters",
    "adaptive_softmax_cutoff", "adaptive_input_cutoff", "adam_betas", "adamax_betas", "adafactor_eps",
    "lamb_betas", "wer_args", "conv_enc_config", "vggblock_enc_config", "transformer_enc_config",
    "transformer_dec_config", "conv_dec_config", "transformer_context", "transformer_sampling",
})

#: bounds for wav2vec 2.0's conv feature extractor spec, far beyond any released model
_CONV_LIMITS = {"layers": 32, "channels": 8192, "kernel": 1024}
#: bounds for any evaluated field: what a list repetition may build
_LITERAL_LIMITS = {"items": 4096, "chars": 2000}


def literal_value(value: Any, field: str, path: str, max_items: int = _LITERAL_LIMITS["items"]) -> Any:
    """A config string that fairseq ``eval``s, evaluated as data: Python literals combined with ``+`` and
    ``*`` (the form fairseq's own defaults use, e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``), building lists of
    at most ``max_items``. Anything else (a call, a name, an attribute) is refused."""
    def refuse(why: str):
        return UnsafeCheckpointError(f"{path}: refused: {field} {why}; expected e.g. '[(512, 10, 5)] + [(512, 3, 2)] * 4'")

    if not isinstance(value, str) or len(value) > _LITERAL_LIMITS["chars"]:
        raise refuse("is not a short string")
    try:
        tree = ast.parse(value.strip(), mode="eval").body
    except SyntaxError:
        raise refuse("is not an expression") from None

    def evaluate(node) -> Any:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = evaluate(node.left), evaluate(node.right)
            if isinstance(node.op, ast.Mult):
                count, items = (right, left) if isinstance(left, list) else (left, right)
                if not (isinstance(count, int) and isinstance(items, list)
                        and 0 <= count and len(items) * count <= max_items):
                    raise refuse(f"repeats something other than a list, or past {max_items} items")
                return items * count
            if not (isinstance(left, list) and isinstance(right, list)):
                raise refuse("adds something other than lists")
            return left + right
        try:
            return ast.literal_eval(node)
        except ValueError:
            raise refuse("is not made of literals") from None

    return evaluate(tree)


def refuse_code_in_evaluated_fields(state: Dict[str, Any], path: str) -> None:
    """Every :data:`EVALUATED_FIELDS` string in a checkpoint's ``cfg`` or ``args`` must be a literal value."""
    def visit(value: Any) -> None:
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, dict):
            for key, item in value.items():
                if key in EVALUATED_FIELDS and isinstance(item, str):
                    literal_value(item, key, path)
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    for slot in ("cfg", "args"):
        visit(state.get(slot))


def literal_conv_layers(value: Any, field: str, path: str) -> List[Tuple[int, int, int]]:
    """A ``conv_feature_layers``-style string (``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``) as data: a list of
    (channels, kernel, stride) integer triples of bounded size (:func:`literal_value`)."""
    layers = literal_value(value, field, path, max_items=_CONV_LIMITS["layers"])
    if not isinstance(layers, list) or not 0 < len(layers) <= _CONV_LIMITS["layers"]:
        raise UnsafeCheckpointError(f"{path}: refused: {field} is not a list of 1 to {_CONV_LIMITS['layers']} layers; "
                                    "expected e.g. '[(512, 10, 5)] + [(512, 3, 2)] * 4'")
    for layer in layers:
        if not (isinstance(layer, tuple) and len(layer) == 3 and all(type(x) is int and x > 0 for x in layer)
                and layer[0] <= _CONV_LIMITS["channels"] and max(layer[1:]) <= _CONV_LIMITS["kernel"]):
            raise UnsafeCheckpointError(
                f"{path}: refused: {field} has a layer {layer!r} that is not a (channels, kernel, stride) triple of "
                "small positive ints")
    return layers
