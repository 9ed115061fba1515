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
import dataclasses
import hashlib
import json
import os
import warnings
from abc import ABC, abstractmethod
from typing import Dict, Optional

import numpy as np
import torch

from ..safe_loading import load_checkpoint_weights_only
from .audio import SAMPLE_RATE
from .files import sha256_file
from .manifest import Utterance
from .report import ItemError
from .speech_stage import SpeechStage

__all__ = ["Wav2Vec2Features", "load_wav2vec2", "average_pool", "AcousticStage"]


def average_pool(frames: np.ndarray, size: int) -> np.ndarray:
    """Mean of every ``size`` consecutive frames; a shorter last group is averaged too."""
    full = len(frames) // size * size
    pooled = frames[:full].reshape(-1, size, frames.shape[1]).mean(axis=1)
    if full < len(frames):
        pooled = np.concatenate([pooled, frames[full:].mean(axis=0, keepdims=True)])
    return pooled


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
    def _hidden(self, wave: torch.Tensor) -> torch.Tensor:
        """``[1, samples]`` -> ``[frames, dim]`` at :attr:`layer`."""

    @abstractmethod
    def _num_frames(self, samples: int) -> int:
        """How many frames the convolutional front end makes of ``samples`` samples."""

    @torch.inference_mode()
    def __call__(self, wave: np.ndarray) -> np.ndarray:
        if self._num_frames(len(wave)) < 1:
            raise ItemError(f"audio too short for wav2vec 2.0 ({len(wave) / SAMPLE_RATE * 1000:.0f} ms)")
        source = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)[None]
        if self.normalize:  # models trained on normalised waves (e.g. the large LV-60 ones)
            source = torch.nn.functional.layer_norm(source, source.shape)
        return self._hidden(source).float().cpu().numpy()

    def describe(self) -> dict:
        return {"format": self.kind, "layer": self.layer or self.num_layers, "layers": self.num_layers,
                "dim": self.dim, "normalize": self.normalize}


class _FairseqWav2Vec2(Wav2Vec2Features):
    kind = "fairseq"

    def _hidden(self, wave: torch.Tensor) -> torch.Tensor:
        layer = None if self.layer is None else self.layer - 1  # fairseq counts blocks from 0
        return self.model.extract_features(wave, padding_mask=None, mask=False, layer=layer)["x"][0]

    def _num_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor([samples]))[0])


class _HuggingFaceWav2Vec2(Wav2Vec2Features):
    kind = "huggingface"

    def _hidden(self, wave: torch.Tensor) -> torch.Tensor:
        out = self.model(wave, output_hidden_states=self.layer is not None)
        return (out.last_hidden_state if self.layer is None else out.hidden_states[self.layer])[0]

    def _num_frames(self, samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(samples))


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
        cfg = state["cfg"]
        return dict(cfg["model"]), dict(cfg.get("task") or {})
    if state.get("args") is not None:
        options = vars(state["args"])
        return _legacy_model_options(options, config_class), options
    raise ValueError(f"{path}: no 'cfg' or 'args' entry; not a fairseq checkpoint")


def _load_fairseq(path: str, layer: Optional[int], device: str) -> Wav2Vec2Features:
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    from omegaconf import OmegaConf

    state = load_checkpoint_weights_only(path)
    model_options, task_options = _fairseq_options(state, path, Wav2Vec2Config)
    if model_options.get("_name") != "wav2vec2":
        raise ValueError(
            f"{path}: a {model_options.get('_name')!r} checkpoint; give a pretrained fairseq 'wav2vec2' model "
            "(e.g. wav2vec_small.pt), not a fine-tuned one"
        )
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
    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model.from_pretrained(path, local_files_only=True)
    config = model.config
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
    """Writes the ``acoustic`` stream: pooled wav2vec 2.0 features of each utterance's audio."""

    def __init__(self, checkpoint: str, layer: Optional[int] = None, pool: int = 3, max_seconds: float = 10.0,
                 device: str = "cpu", trim_silence: bool = False, vad: str = "auto"):
        super().__init__(max_seconds, trim_silence, vad)
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.checkpoint, self.layer, self.pool = os.path.abspath(checkpoint), layer, pool
        self.device = device
        self._model: Optional[Wav2Vec2Features] = None
        self._checksum: Optional[str] = None

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

    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        wave = self.read_speech(utterance)
        return {"acoustic": average_pool(self._model(wave), self.pool)}
