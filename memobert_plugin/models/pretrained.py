"""Initialisation from local pretrained weights: a Hugging Face BERT directory or a memobert checkpoint.

Nothing is downloaded: both loaders read files the user points to. Each returns an
:class:`InitReport` saying which parameters were loaded and which were left freshly
initialised, and the caller logs it. A memobert model is a fairseq checkpoint or the
directory ``memobert-export-hf`` writes (``config.json`` + ``model.safetensors``);
:func:`bert_state_from_memobert` runs the BERT mapping the other way, for that export.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from memobert_plugin.conf.model_shape import SHAPE_FIELDS, memobert_size_fields
from memobert_plugin.checkpoints.policy import check_memobert_checkpoint, load_memobert_checkpoint
from memobert_plugin.checkpoints.model_bounds import check_model_dims, read_config_json
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from memobert_plugin.data.vocab_file import read_vocab_file

__all__ = [
    "InitReport",
    "bert_shape",
    "load_bert_weights",
    "memobert_checkpoint_shape",
    "memobert_size_fields",
    "load_memobert_weights",
    "bert_state_from_memobert",
    "SHAPE_FIELDS",
    "EXPORT_FORMAT",
]

logger = logging.getLogger(__name__)

#: model config fields that a pretrained source dictates
#: our type vectors that BERT's two token types (segments A and B) initialise and export to
_BERT_TOKEN_TYPES = ("text.type_embedding", "frames.visual.type_embedding")
_BERT_SHAPE_KEYS = dict(zip(SHAPE_FIELDS, ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")))


@dataclass
class InitReport:
    source: str
    loaded: List[str] = field(default_factory=list)
    fresh: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)

    def log(self) -> None:
        logger.info("initialised %d tensors from %s", len(self.loaded), self.source)
        if self.fresh:
            logger.info("initialised fresh (not in %s): %s", self.source, ", ".join(self.fresh))
        if self.unused:
            logger.info("ignored from %s: %s", self.source, ", ".join(self.unused))


def _bert_config(bert_dir: str) -> dict:
    path = os.path.join(bert_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--bert-init {bert_dir}: no config.json (expected a Hugging Face BERT directory)")
    config = read_config_json(path, "--bert-init")
    if config.get("model_type", "bert") != "bert":
        raise ValueError(f"{path}: model_type is {config['model_type']!r}, not 'bert'")
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: only BERT with exact GELU and absolute positions is supported")
    sizes = ("vocab_size", "max_position_embeddings", "type_vocab_size")
    check_model_dims({k: config[k] for k in (*_BERT_SHAPE_KEYS.values(), *sizes) if k in config},
                     f"--bert-init {path}", required=tuple(_BERT_SHAPE_KEYS.values()))
    return config


def bert_shape(bert_dir: str) -> Dict[str, int]:
    """The encoder shape of a BERT directory, as memobert config fields."""
    config = _bert_config(bert_dir)
    return {ours: config[theirs] for ours, theirs in _BERT_SHAPE_KEYS.items()}


def _bert_state_dict(bert_dir: str) -> Dict[str, torch.Tensor]:
    safetensors_path = os.path.join(bert_dir, "model.safetensors")
    bin_path = os.path.join(bert_dir, "pytorch_model.bin")
    if os.path.isfile(safetensors_path):
        from safetensors.torch import load_file

        state = load_file(safetensors_path)
    elif os.path.isfile(bin_path):
        state = load_checkpoint_weights_only(bin_path)
    else:
        raise FileNotFoundError(f"--bert-init {bert_dir}: neither model.safetensors nor pytorch_model.bin")
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise ValueError(f"--bert-init {bin_path}: not a BERT state dict (parameter names to tensors)")
    out = {}
    for key, value in state.items():
        key = key[len("bert.") :] if key.startswith("bert.") else key
        # checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = value
    return out


def _bert_key_map(layers: int) -> Dict[str, str]:
    """BERT key -> memobert key, for everything copied one to one."""
    mapping = {
        "embeddings.word_embeddings.weight": "text.tokens.weight",
        "embeddings.LayerNorm.weight": "text.norm.weight",
        "embeddings.LayerNorm.bias": "text.norm.bias",
        "pooler.dense.weight": "pooler.dense.weight",
        "pooler.dense.bias": "pooler.dense.bias",
        "cls.predictions.transform.dense.weight": "lm_head.dense.weight",
        "cls.predictions.transform.dense.bias": "lm_head.dense.bias",
        "cls.predictions.transform.LayerNorm.weight": "lm_head.norm.weight",
        "cls.predictions.transform.LayerNorm.bias": "lm_head.norm.bias",
        "cls.predictions.bias": "lm_head.bias",
    }
    for i in range(layers):
        src, dst = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for theirs, ours in (
            ("attention.output.dense", "attention.out"),
            ("attention.output.LayerNorm", "attention_norm"),
            ("intermediate.dense", "ffn_in"),
            ("output.dense", "ffn_out"),
            ("output.LayerNorm", "ffn_norm"),
        ):
            for kind in ("weight", "bias"):
                mapping[f"{src}{theirs}.{kind}"] = f"{dst}{ours}.{kind}"
    return mapping


def load_bert_weights(model: torch.nn.Module, bert_dir: str, vocab_symbols: Optional[Sequence[str]] = None) -> InitReport:
    """Copy a BERT directory's weights into ``model`` (a MemobertModel of the same shape).

    Position and token-type tables are copied row for row into ours (the third type
    row, for acoustic frames, stays fresh). ``vocab_symbols`` are checked against the
    directory's vocab.txt so that token ids index the right embedding rows.
    """
    config = _bert_config(bert_dir)
    for ours, theirs in _BERT_SHAPE_KEYS.items():
        if getattr(model.cfg, ours) != config[theirs]:
            raise ValueError(f"--bert-init {bert_dir}: {theirs}={config[theirs]} but the model has {ours}={getattr(model.cfg, ours)}")
    if vocab_symbols is not None:
        _check_vocab(bert_dir, vocab_symbols)
    state = _bert_state_dict(bert_dir)
    ours = model.state_dict()
    report = InitReport(source=bert_dir)
    copied = set()
    with torch.no_grad():
        for theirs, mine in _bert_key_map(model.cfg.encoder_layers).items():
            if theirs in state:
                _copy(ours[mine], state[theirs], theirs)
                copied.update({theirs, mine})
        for i in range(model.cfg.encoder_layers):
            parts = [state.get(f"encoder.layer.{i}.attention.self.{p}.weight") for p in ("query", "key", "value")]
            if all(p is not None for p in parts):
                for kind in ("weight", "bias"):
                    fused = torch.cat([state[f"encoder.layer.{i}.attention.self.{p}.{kind}"] for p in ("query", "key", "value")])
                    _copy(ours[f"encoder.layers.{i}.attention.qkv.{kind}"], fused, f"layer {i} q/k/v {kind}")
                    copied.add(f"encoder.layers.{i}.attention.qkv.{kind}")
                    copied.update(f"encoder.layer.{i}.attention.self.{p}.{kind}" for p in ("query", "key", "value"))
        positions = "embeddings.position_embeddings.weight"
        if positions in state:
            rows = min(state[positions].shape[0], ours["text.positions.weight"].shape[0])
            ours["text.positions.weight"][:rows].copy_(state[positions][:rows])
            copied.update({positions, "text.positions.weight"})
            if rows < ours["text.positions.weight"].shape[0]:
                report.fresh.append(f"text.positions.weight[{rows}:]")
        # BERT's segment A row types the text; its segment B row starts the visual type
        types = state.get("embeddings.token_type_embeddings.weight")
        if types is not None:
            for row, mine in enumerate(_BERT_TOKEN_TYPES[: types.shape[0]]):
                _copy(ours[mine], types[row], f"token type row {row}")
                copied.add(mine)
            copied.add("embeddings.token_type_embeddings.weight")
    if "cls.predictions.decoder.weight" in state:
        copied.add("cls.predictions.decoder.weight")  # tied to the word embeddings, as in BERT
    # buffers and tied aliases are not parameters of their own
    aliases = {"lm_head.word_embeddings.weight"} if "text.tokens.weight" in copied else set()
    report.loaded = sorted(k for k in ours if k in copied or k in aliases)
    report.fresh += sorted(k for k in ours if k not in copied and k not in aliases)
    report.unused = sorted(k for k in state if k not in copied and not k.endswith("position_ids"))
    return report


def _check_vocab(bert_dir: str, vocab_symbols: Sequence[str]) -> None:
    path = os.path.join(bert_dir, "vocab.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--bert-init {bert_dir}: no vocab.txt to check the data dictionary against")
    theirs = read_vocab_file(path)
    if list(vocab_symbols) != theirs:
        first = next((i for i, (a, b) in enumerate(zip(vocab_symbols, theirs)) if a != b), min(len(theirs), len(vocab_symbols)))
        raise ValueError(
            f"--bert-init {bert_dir}: the data dictionary differs from its vocab.txt at id {first} "
            f"({len(vocab_symbols)} vs {len(theirs)} entries); binarize the text with that vocab.txt"
        )


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"pretrained tensor {name} has shape {tuple(src.shape)}, the model expects {tuple(dst.shape)}")
    dst.copy_(src)


#: ``format`` of the config.json of a whole memobert model written by memobert-export-hf
EXPORT_FORMAT = "memobert-safetensors"


def _exported_model(path: str) -> dict:
    """An exported directory as a checkpoint-like ``{"cfg": ..., "model": weights}``; tied weights restored."""
    from safetensors.torch import load_file

    config_path, weights_path = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
    if not (os.path.isfile(config_path) and os.path.isfile(weights_path)):
        raise FileNotFoundError(f"--memobert-init {path}: a directory needs config.json and model.safetensors "
                                "(as memobert-export-hf writes them)")
    config = read_config_json(config_path)
    if config.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{config_path}: format is {config.get('format')!r}, not {EXPORT_FORMAT!r} "
                         "(a Hugging Face BERT directory goes to --bert-init)")
    weights = load_file(weights_path)
    for alias, source in config.get("tied", {}).items():
        weights[alias] = weights[source]
    return {"cfg": {"model": config["model"], "task": config.get("task")}, "model": weights}


def _checkpoint_model_cfg(path: str) -> tuple:
    try:
        if os.path.isdir(path):  # memobert-export-hf's whole-model directory: its config is checked alike
            state = _exported_model(path)
            check_memobert_checkpoint(state, path)
        else:
            state = load_memobert_checkpoint(path)
    except ValueError as err:  # the message names the file; say which option gave it
        raise type(err)(f"--memobert-init {err}") from None
    return state, state["cfg"]["model"]


def memobert_checkpoint_shape(path: str) -> Dict[str, int]:
    """Encoder shape and feature dims recorded in a memobert checkpoint."""
    _, model_cfg = _checkpoint_model_cfg(path)  # its sizes are checked there (check_memobert_checkpoint)
    return {k: model_cfg[k] for k in memobert_size_fields() if k in model_cfg}


def load_memobert_weights(model: torch.nn.Module, path: str) -> InitReport:
    """Load a memobert checkpoint's weights; heads absent there stay fresh, its extra heads are dropped."""
    state, _ = _checkpoint_model_cfg(path)
    weights = state["model"]
    try:
        result = model.load_state_dict(weights, strict=False)  # renames older names in weights first
    except ValueError as err:  # a tensor of another shape, named
        raise ValueError(f"--memobert-init {path}: {err}") from None
    return InitReport(
        source=path,
        loaded=sorted(k for k in model.state_dict() if k not in result.missing_keys),
        fresh=sorted(result.missing_keys),
        unused=sorted(result.unexpected_keys),
    )


def bert_state_from_memobert(weights: Dict[str, torch.Tensor], layers: int) -> Dict[str, torch.Tensor]:
    """The text side of a memobert state dict under BERT's names (``bert.`` prefix omitted, as the loader
    reads them): the inverse of :func:`load_bert_weights` (q/k/v split, the text and visual type rows as
    BERT's two token types). The pooler is included; ``cls.predictions.decoder`` is tied to the word embeddings."""
    state = {theirs: weights[ours] for theirs, ours in _bert_key_map(layers).items()}
    for i in range(layers):
        for kind in ("weight", "bias"):
            for part, tensor in zip(("query", "key", "value"), weights[f"encoder.layers.{i}.attention.qkv.{kind}"].chunk(3)):
                state[f"encoder.layer.{i}.attention.self.{part}.{kind}"] = tensor
    state["embeddings.position_embeddings.weight"] = weights["text.positions.weight"]
    state["embeddings.token_type_embeddings.weight"] = torch.stack(
        [weights[name] for name in _BERT_TOKEN_TYPES])
    return {key: value.contiguous() for key, value in state.items()}
