"""Pretrained image encoders for the visual stream: a transformers ViT or CLIP vision model directory.

Loaded as :mod:`.loading` says (model-type whitelist, sizes bounded, weights-only,
nothing downloaded). A face crop's feature is ViT's ``[CLS]`` state after the final layer norm,
and CLIP's pooled output (its image embedding before the projection), each ``hidden_size``-d.
Crops are grey (the face detector reads grey frames), given to the model as three equal
channels, resized to its ``image_size`` and normalised with its preprocessor's mean and std.
"""

from __future__ import annotations

import json
import os
from typing import List

import numpy as np
import torch

from memobert_plugin.prepare.encoders.loading import config_sizes, load_transformers_model, read_model_config

__all__ = ["VISION_MODELS", "VISION_EXTRACTORS", "VisionEncoder", "load_vision_encoder", "vision_model_name"]

#: transformers ``model_type`` -> the class read; a whole CLIP directory gives its vision tower
VISION_MODELS = {"vit": "ViTModel", "clip_vision_model": "CLIPVisionModel", "clip": "CLIPVisionModel"}
#: the names the visual stage records for a vision encoder's features
VISION_EXTRACTORS = ("vit", "clip_vision")
_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size", "patch_size",
          "num_channels", "projection_dim")
#: each family's pixel normalisation when the directory has no preprocessor_config.json
_DEFAULT_MEAN_STD = {"vit": ([0.5] * 3, [0.5] * 3),
                     "clip_vision": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])}
_BATCH = 64


def vision_model_name(path: str) -> str:
    """``vit`` or ``clip_vision``: the family of the encoder directory ``path`` (its config only)."""
    return "vit" if read_model_config(path, VISION_MODELS, "vision model")["model_type"] == "vit" else "clip_vision"


class VisionEncoder:
    """Face crops ``[N, S, S]`` uint8 grey (``S`` = :attr:`image_size`) -> ``[N, dim]`` features."""

    def __init__(self, path: str, model: torch.nn.Module, family: str, mean: List[float], std: List[float],
                 device: str = "cpu"):
        self.path, self.family, self.device = path, family, device
        self.model = model.to(device).eval()
        self.dim, self.image_size = model.config.hidden_size, model.config.image_size
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def pixels(self, faces: np.ndarray) -> torch.Tensor:
        """The model's ``[N, 3, S, S]`` input: grey as three channels, scaled to [0, 1], normalised."""
        if faces.ndim != 3 or faces.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"expected [N, {self.image_size}, {self.image_size}] grey faces, got shape {faces.shape}")
        grey = torch.from_numpy(faces.astype(np.float32) / 255.0)[:, None].expand(-1, 3, -1, -1)
        return (grey - self._mean) / self._std

    @torch.inference_mode()
    def __call__(self, faces: np.ndarray) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(faces), _BATCH):
            output = self.model(pixel_values=self.pixels(faces[start: start + _BATCH]).to(self.device))
            pooled = output.last_hidden_state[:, 0] if self.family == "vit" else output.pooler_output
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out)

    def describe(self) -> dict:
        return {"model_type": self.family, "dim": self.dim, "image_size": self.image_size}


def load_vision_encoder(path: str, device: str = "cpu") -> VisionEncoder:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such directory; expected a transformers ViT or CLIP model directory")
    config = read_model_config(path, VISION_MODELS, "vision model")
    family = "vit" if config["model_type"] == "vit" else "clip_vision"
    sizes = config.get("vision_config", {}) if config["model_type"] == "clip" else config
    if not isinstance(sizes, dict):
        raise ValueError(f"{path}: its vision_config is not a mapping")
    bounded = config_sizes(sizes, _SIZES)
    if config["model_type"] == "clip":  # the text tower is not built, but its config is read too
        bounded += [(f"text_config.{f}", v) for f, v in config_sizes(config.get("text_config") or {}, _SIZES)]
    model = load_transformers_model(path, VISION_MODELS[config["model_type"]], bounded,
                                    optional_keys=("pooler.",) if family == "vit" else ())
    if model.config.num_channels != 3:
        raise ValueError(f"{path}: a model of {model.config.num_channels}-channel images; memobert gives it RGB faces")
    mean, std = _DEFAULT_MEAN_STD[family]
    preprocessor = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(preprocessor):
        with open(preprocessor, encoding="utf-8") as handle:
            settings = json.load(handle)
        mean, std = settings.get("image_mean", mean), settings.get("image_std", std)
    return VisionEncoder(path, model, family, mean, std, device)
