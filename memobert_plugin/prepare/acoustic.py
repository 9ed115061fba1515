"""Acoustic stage: wav2vec 2.0 frame features from a local checkpoint, average-pooled every 3 frames.

Two checkpoint formats are read, nothing is downloaded:

* a fairseq ``.pt`` file of a pretrained ``wav2vec2`` model (``{"cfg": {"model": ...}, "model": ...}``,
  or the older ``{"args": Namespace, "model": ...}`` of the released wav2vec_small.pt), loaded
  weights-only through :mod:`memobert_plugin.safe_loading`;
* a Hugging Face directory (``config.json`` + weights) of a ``Wav2Vec2Model``.

``layer`` counts transformer blocks from 1; None (the default) is the model's final
output, which for the post-LN base model is the last block's output.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import os
import warnings
from abc import ABC, abstractmethod
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..model_bounds import check_model_dims, read_config_json
from ..safe_loading import checkpoint_options, literal_conv_layers, load_checkpoint_weights_only, refuse_interpolation
from .audio import SAMPLE_RATE
from ..files import sha256_file
from .manifest import Utterance
from .report import ItemError
from .speech_stage import SpeechStage

__all__ = ["Wav2Vec2Features", "load_wav2vec2", "average_pool", "AcousticStage"]

#: audio per transformer batch in the acoustic stage: enough to fill the matrix products, few enough
#: that the padded batch's activations stay small
_BATCH_SECONDS = 60.0
#: longest over shortest wave (in frames) that share a padded transformer batch
_MAX_PADDING = 1.1


def average_pool(frames: np.ndarray, size: int) -> np.ndarray:
    """Mean of every ``size`` consecutive frames; a shorter last group is averaged too."""
    full = len(frames) // size * size
    pooled = frames[:full].reshape(-1, size, frames.shape[1]).mean(axis=1)
    if full < len(frames):
        pooled = np.concatenate([pooled, frames[full:].mean(axis=0, keepdims=True)])
    return pooled


def _length_groups(lengths: Sequence[int]) -> List[List[int]]:
    """Indices of ``lengths`` in groups padded together: similar lengths (the longest at most
    :data:`_MAX_PADDING` over the shortest), so that padding wastes little compute; a 7-s and a 3-s
    utterance padded together cost more than each alone (measured on CPU: 1.2x over 5 utterances)."""
    groups: List[List[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and lengths[i] <= lengths[groups[-1][0]] * _MAX_PADDING:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class Wav2Vec2Features(ABC):
    """A frozen wav2vec 2.0 model: 16 kHz wave -> ``[frames, dim]`` hidden states of one layer."""

    kind: str

    def __init__(self, path: str, model: torch.nn.Module, num_layers: int, dim: int, normalize: bool,
                 layer: Optional[int], device: str):
        if layer is not None and not 1 <= layer <= num_layers:
            raise ValueError(f"{path}: layer {layer} out of range; the model has layers 1..{num_layers}")
        self.path, self.num_layers, self.dim, self.normalize = path, num_layers, dim, normalize
        # the last block named explicitly is the model's final output, in both formats
        self.layer = None if layer == num_layers else layer
        self.device = device
        self.model = model.to(device).eval()

    @abstractmethod
    def _front_end(self, wave: torch.Tensor) -> torch.Tensor:
        """``[1, samples]`` -> ``[1, frames, dim]``: the convolutional features, projected for the transformer."""

    @abstractmethod
    def _encode(self, features: torch.Tensor, padding: Optional[torch.Tensor]) -> torch.Tensor:
        """``[batch, frames, dim]`` (``padding`` True at padded frames) -> the hidden states at :attr:`layer`."""

    @abstractmethod
    def _num_frames(self, samples: int) -> int:
        """How many frames the convolutional front end makes of ``samples`` samples."""

    def check_length(self, wave: np.ndarray) -> None:
        if self._num_frames(len(wave)) < 1:
            raise ItemError(f"audio too short for wav2vec 2.0 ({len(wave) / SAMPLE_RATE * 1000:.0f} ms)")

    def _source(self, wave: np.ndarray) -> torch.Tensor:
        self.check_length(wave)
        source = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)[None]
        if self.normalize:  # models trained on normalised waves (e.g. the large LV-60 ones)
            source = torch.nn.functional.layer_norm(source, source.shape)
        return source

    @torch.inference_mode()
    def batch(self, waves: Sequence[np.ndarray]) -> List[np.ndarray]:
        """``[frames, dim]`` features of each wave, the transformer running once per group of similar
        lengths (:func:`_length_groups`).

        The convolutional front end runs wave by wave: the base models' group norm spans a whole
        wave, so padding would change it. The transformer sees the padded batch with a padding
        mask, which is exact: padded frames get no attention weight and are zeroed before the
        positional convolution, as that convolution's own zero padding is.
        """
        features = [self._front_end(self._source(wave))[0] for wave in waves]
        out: List[Optional[np.ndarray]] = [None] * len(features)
        for group in _length_groups([len(f) for f in features]):
            lengths = [len(features[i]) for i in group]
            padded = torch.nn.utils.rnn.pad_sequence([features[i] for i in group], batch_first=True)
            padding = torch.arange(padded.shape[1], device=padded.device)[None] >= torch.tensor(lengths, device=padded.device)[:, None]
            hidden = self._encode(padded, padding if padding.any() else None).float().cpu().numpy()
            for row, (i, n) in enumerate(zip(group, lengths)):
                out[i] = hidden[row, :n]
        return out

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return self.batch([wave])[0]

    def describe(self) -> dict:
        return {"format": self.kind, "layer": self.layer or self.num_layers, "layers": self.num_layers,
                "dim": self.dim, "normalize": self.normalize}


class _FairseqWav2Vec2(Wav2Vec2Features):
    """``Wav2Vec2Model.forward(features_only=True)`` in two halves (its masking and dropout are off in eval)."""

    kind = "fairseq"

    def _front_end(self, wave: torch.Tensor) -> torch.Tensor:
        features = self.model.layer_norm(self.model.feature_extractor(wave).transpose(1, 2))
        return features if self.model.post_extract_proj is None else self.model.post_extract_proj(features)

    def _encode(self, features: torch.Tensor, padding: Optional[torch.Tensor]) -> torch.Tensor:
        layer = None if self.layer is None else self.layer - 1  # fairseq counts blocks from 0
        return self.model.encoder(features, padding_mask=padding, layer=layer)[0]

    def _num_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor([samples]))[0])


class _HuggingFaceWav2Vec2(Wav2Vec2Features):
    """``Wav2Vec2Model.forward`` in two halves (its time masking is off in eval)."""

    kind = "huggingface"

    def _front_end(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model.feature_projection(self.model.feature_extractor(wave).transpose(1, 2))[0]

    def _encode(self, features: torch.Tensor, padding: Optional[torch.Tensor]) -> torch.Tensor:
        mask = None if padding is None else ~padding
        if self.layer is None:
            return self.model.encoder(features, attention_mask=mask).last_hidden_state
        captured = []

        def stop_after(module, inputs, output):  # the blocks above the requested one are never run
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _LayerReached

        hook = self.model.encoder.layers[self.layer - 1].register_forward_hook(stop_after)
        try:
            self.model.encoder(features, attention_mask=mask)
        except _LayerReached:
            pass
        finally:
            hook.remove()
        return captured[0]

    def _num_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(samples))


class _LayerReached(Exception):
    """Ends a Hugging Face encoder's forward at the requested block."""


def _legacy_model_options(options: dict, config_class: type) -> dict:
    """A pre-hydra checkpoint's flat options, reduced to the model's fields.

    argparse kept list and tuple options as their command-line strings (e.g. ``latent_temp``
    ``'(2,0.5,0.999995)'``); they are parsed as literals where the field holds a sequence.
    """
    model = {"_name": options.get("arch")}
    for f in dataclasses.fields(config_class):
        if f.name not in options:
            continue
        value = options[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(value, str) and isinstance(default, (tuple, list)):
            value = ast.literal_eval(value)
        model[f.name] = value
    return model


def _fairseq_options(state: dict, path: str, config_class: type) -> tuple:
    """(model options, task options) of a fairseq checkpoint, new (cfg) or old (args) style."""
    if state.get("cfg") is not None:
        model, task = checkpoint_options(state, path)
        return dict(model), dict(task)
    if state.get("args") is not None:
        options = vars(state["args"])
        return _legacy_model_options(options, config_class), options
    raise ValueError(f"{path}: no 'cfg' or 'args' entry; not a fairseq checkpoint")


#: the options that size a wav2vec 2.0 model's tensors (the conv feature extractor's are bounded by literal_conv_layers)
_FAIRSEQ_SIZE_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                        "conv_pos", "conv_pos_groups", "latent_vars", "latent_groups")
_HUGGINGFACE_SIZE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "conv_dim",
                            "conv_kernel", "conv_stride", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups",
                            "num_codevectors_per_group", "num_codevector_groups")


def _load_fairseq(path: str, layer: Optional[int], device: str) -> Wav2Vec2Features:
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    from omegaconf import OmegaConf

    state = load_checkpoint_weights_only(path)
    refuse_interpolation(state, path)
    model_options, task_options = _fairseq_options(state, path, Wav2Vec2Config)
    if model_options.get("_name") != "wav2vec2":
        raise ValueError(
            f"{path}: a {model_options.get('_name')!r} checkpoint; give a pretrained fairseq 'wav2vec2' model "
            "(e.g. wav2vec_small.pt), not a fine-tuned one"
        )
    if "conv_feature_layers" in model_options:  # the one config string fairseq's wav2vec2 model eval()s
        literal_conv_layers(model_options["conv_feature_layers"], "conv_feature_layers", path)
    check_model_dims({k: model_options[k] for k in _FAIRSEQ_SIZE_FIELDS if k in model_options}, path)
    cfg = merge_with_parent(Wav2Vec2Config(), OmegaConf.create(model_options), remove_missing=True)
    with warnings.catch_warnings():  # fairseq 0.12 builds its positional convolution with a deprecated torch API
        warnings.simplefilter("ignore", FutureWarning)
        model = Wav2Vec2Model.build_model(cfg)
    model.load_state_dict(state["model"])
    normalize = bool(task_options.get("normalize", cfg.extractor_mode == "layer_norm"))
    return _FairseqWav2Vec2(path, model, cfg.encoder_layers, cfg.encoder_embed_dim, normalize, layer, device)


def _load_huggingface(path: str, layer: Optional[int], device: str) -> Wav2Vec2Features:
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path}: no config.json; expected a Hugging Face Wav2Vec2Model directory")
    config_path = os.path.join(path, "config.json")
    config = read_config_json(config_path)
    check_model_dims({k: config[k] for k in _HUGGINGFACE_SIZE_FIELDS if k in config}, config_path)
    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(path, local_files_only=True)
    config = model.config
    if getattr(config, "add_adapter", False):
        raise ValueError(f"{path}: a Wav2Vec2Model with an adapter; give a pretrained model without one")
    preprocessor = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(preprocessor):
        with open(preprocessor, encoding="utf-8") as handle:
            normalize = bool(json.load(handle).get("do_normalize", False))
    else:  # without the feature extractor's settings, follow the model family's convention
        normalize = config.feat_extract_norm == "layer"
    return _HuggingFaceWav2Vec2(path, model, config.num_hidden_layers, config.hidden_size, normalize, layer, device)


def load_wav2vec2(path: str, layer: Optional[int] = None, device: str = "cpu") -> Wav2Vec2Features:
    """A fairseq checkpoint file or a Hugging Face model directory (told apart by being a folder)."""
    if os.path.isdir(path):
        return _load_huggingface(path, layer, device)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no wav2vec 2.0 checkpoint file or directory")
    return _load_fairseq(path, layer, device)


def _model_checksum(path: str) -> str:
    """SHA-256 of the checkpoint file, or of a model directory's files (names and contents)."""
    if os.path.isfile(path):
        return sha256_file(path)
    files = sorted(f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)))
    return hashlib.sha256("".join(f"{f}:{sha256_file(os.path.join(path, f))}\n" for f in files).encode()).hexdigest()


class AcousticStage(SpeechStage):
    """Writes the ``acoustic`` stream: pooled wav2vec 2.0 features of each utterance's audio.

    Within a shard, consecutive utterances (up to :data:`_BATCH_SECONDS` of audio) go through the
    transformer together (:meth:`Wav2Vec2Features.batch`); each utterance's report rows stay its own.
    A shard's batches depend only on its entries, so the output is the same for any ``--workers``.
    """

    def __init__(self, checkpoint: str, layer: Optional[int] = None, pool: int = 3, max_seconds: float = 10.0,
                 device: str = "cpu", trim_silence: bool = False, vad: str = "auto"):
        super().__init__(max_seconds, trim_silence, vad)
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.checkpoint, self.layer, self.pool = os.path.abspath(checkpoint), layer, pool
        self.device = device
        self._model: Optional[Wav2Vec2Features] = None
        self._checksum: Optional[str] = None
        self._ahead: Optional[dict] = None  # during run_shard: the shard's entries and the features computed ahead

    def setup(self) -> None:
        super().setup()
        if self._model is None:
            self._model = load_wav2vec2(self.checkpoint, self.layer, self.device)

    def config(self) -> dict:
        if self._checksum is None:
            self._checksum = _model_checksum(self.checkpoint)
        return {"extractor": "wav2vec2", "checkpoint": self.checkpoint, "sha256": self._checksum,
                "layer": self.layer, "pool": self.pool, **self.speech_config()}

    @property
    def streams(self) -> Dict[str, int]:
        self.setup()
        return {"acoustic": self._model.dim}

    def summary(self) -> dict:
        self.setup()
        return {**self.config(), **self._model.describe()}

    @contextlib.contextmanager
    def batching(self, entries: Sequence[Utterance]) -> Iterator[None]:
        """Within the block, :meth:`extract` of these entries runs them in batches (in this order)."""
        self._ahead = {"entries": list(entries), "ready": {}}
        try:
            yield
        finally:
            self._ahead = None

    def run_shard(self, entries: List[Utterance], prefix: str, advance,
                  reuse: Optional[Dict[int, int]] = None) -> list:
        reused = reuse or {}  # copied from the shard's previous outputs, not extracted
        with self.batching([e for i, e in enumerate(entries) if i not in reused]):
            return super().run_shard(entries, prefix, advance, reuse)

    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        self.setup()
        if self._ahead is None:  # called on its own (prediction): this utterance alone
            return {"acoustic": average_pool(self._model(self.read_speech(utterance)), self.pool)}
        if utterance.id not in self._ahead["ready"]:
            self._extract_batch(utterance)
        result, warnings = self._ahead["ready"].pop(utterance.id)
        for reason in warnings:
            self.warn(reason)
        if isinstance(result, ItemError):
            raise result
        return {"acoustic": result}

    def _extract_batch(self, first: Utterance) -> None:
        """Read the utterances from ``first`` on (up to :data:`_BATCH_SECONDS` of audio) and run them as one batch."""
        entries, ready = self._ahead["entries"], self._ahead["ready"]
        current, waves, samples = self._warnings, {}, 0
        for utterance in entries[entries.index(first):]:
            if samples >= _BATCH_SECONDS * SAMPLE_RATE:
                break
            self._warnings = []  # each utterance's report rows are collected on their own
            try:
                wave = self.read_speech(utterance)
                self._model.check_length(wave)
            except ItemError as err:
                ready[utterance.id] = (err, self._warnings)
                continue
            waves[utterance.id] = wave, self._warnings
            samples += len(wave)
        self._warnings = current
        features = self._model.batch([wave for wave, _ in waves.values()])
        for (uid, (_, warnings)), frames in zip(waves.items(), features):
            ready[uid] = average_pool(frames, self.pool), warnings
