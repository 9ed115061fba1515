"""The facial-expression model: a DenseNet-BC on 48x48 grey faces, trained on FER+ (8 classes).

With the default depth 100 and growth rate 12 its pooled features are 342-d, the visual
feature size of the paper. The checkpoint (written by ``memobert-train-fer``) holds the
architecture with the weights, so the visual extractor rebuilds exactly what was trained.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from memobert_plugin.checkpoints.model_bounds import check_model_dims
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from memobert_plugin.prepare.fer.labels import FACE_SIZE, FER_CLASSES
from memobert_plugin.files import atomic_open

__all__ = [
    "FER_CLASSES", "FACE_SIZE", "DenseNetFER", "FerModel", "face_tensor", "inference_network", "save_fer_checkpoint",
    "load_fer_model",
]

_CHECKPOINT_FORMAT = "memobert-fer-densenet"
#: the DenseNetFER arguments a checkpoint gives; their sizes are bounded by model_bounds, the depth below
_ARCH_FIELDS = ("depth", "growth_rate", "compression", "num_classes")
_MAX_DEPTH = 250  # DenseNet-BC-250, the deepest of Huang et al.


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck, 4k) then BN-ReLU-Conv3x3 (k new channels), concatenated."""

    def __init__(self, channels: int, growth_rate: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, 4 * growth_rate, 1, bias=False),
            nn.BatchNorm2d(4 * growth_rate), nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class _DenseBlockBuffer(nn.Module):
    """Inference form of consecutive dense layers: each writes its k new channels into one preallocated
    tensor, where ``torch.cat`` would copy all the channels so far at every layer (memory traffic
    quadratic in the block's depth)."""

    def __init__(self, layers: List[_DenseLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        growth = self.layers[0].body[-1].out_channels
        out = torch.empty((batch, channels + growth * len(self.layers), height, width), dtype=x.dtype,
                          device=x.device, memory_format=torch.channels_last)
        out[:, :channels] = x
        for layer in self.layers:
            out[:, channels: channels + growth] = layer.body(out[:, :channels])
            channels += growth
        return out


class DenseNetFER(nn.Module):
    """DenseNet-BC (Huang et al., 2017) with three dense blocks; ``forward`` gives (features, logits)."""

    def __init__(self, depth: int = 100, growth_rate: int = 12, compression: float = 0.5,
                 num_classes: int = len(FER_CLASSES)):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n+4 with n >= 1 (10, 16, ..., 100), got {depth}")
        self.arch = {"depth": depth, "growth_rate": growth_rate, "compression": compression,
                     "num_classes": num_classes}
        layers_per_block = (depth - 4) // 6
        channels = 2 * growth_rate
        modules = [nn.Conv2d(1, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                modules.append(_DenseLayer(channels, growth_rate))
                channels += growth_rate
            if block < 2:
                reduced = int(channels * compression)
                modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                            nn.Conv2d(channels, reduced, 1, bias=False), nn.AvgPool2d(2)]
                channels = reduced
        modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*modules)
        self.classifier = nn.Linear(channels, num_classes)
        self.feature_dim = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, faces: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.features(faces)
        return features, self.classifier(features)


def _densenet_parameters(depth: int, growth_rate: int, compression: float) -> int:
    """The convolution weights of :class:`DenseNetFER` with these arguments, counted without building it."""
    layers_per_block, channels = max(0, (depth - 4) // 6), 2 * growth_rate
    count = 9 * channels
    for block in range(3):
        for _ in range(layers_per_block):
            count += channels * 4 * growth_rate + 4 * growth_rate * growth_rate * 9
            channels += growth_rate
        if block < 2:
            count += channels * int(channels * compression)
            channels = int(channels * compression)
    return count


def face_tensor(faces: np.ndarray) -> torch.Tensor:
    """``[N, 48, 48]`` uint8 grey faces -> the network's ``[N, 1, 48, 48]`` input in [-1, 1]."""
    if faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"expected [N, {FACE_SIZE}, {FACE_SIZE}] grey faces, got shape {faces.shape}")
    return torch.from_numpy(faces.astype(np.float32) / 127.5 - 1.0)[:, None]


def inference_network(network: DenseNetFER) -> DenseNetFER:
    """A copy of ``network`` for inference, the same outputs up to float rounding, faster: each dense
    layer's bottleneck BatchNorm folded into the 1x1 convolution before it (one pass less per layer),
    each dense block writing into one preallocated tensor (:class:`_DenseBlockBuffer`), and
    channels-last weights (oneDNN's and cuDNN's convolution layout: no reordering per call)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(network).eval()
    modules, block = [], []
    for module in list(fast.features) + [None]:
        if isinstance(module, _DenseLayer):
            module.body[2] = fuse_conv_bn_eval(module.body[2], module.body[3])
            module.body[3] = nn.Identity()
            block.append(module)
            continue
        if block:
            modules.append(_DenseBlockBuffer(block))
            block = []
        if module is not None:
            modules.append(module)
    fast.features = nn.Sequential(*modules)
    return fast.to(memory_format=torch.channels_last)


class FerModel:
    """Inference wrapper: faces -> (features ``[N, feature_dim]``, class probabilities ``[N, 8]``)."""

    def __init__(self, network: DenseNetFER, device: str = "cpu", batch_size: int = 64):
        self.network = network.to(device).eval()
        self._fast = inference_network(self.network)
        self.device, self.batch_size = device, batch_size
        self.feature_dim = network.feature_dim
        self.num_classes = network.arch["num_classes"]

    @torch.inference_mode()
    def __call__(self, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        features, probs = [], []
        for start in range(0, len(faces), self.batch_size):
            batch = face_tensor(faces[start: start + self.batch_size]).to(self.device, memory_format=torch.channels_last)
            feats, logits = self._fast(batch)
            features.append(feats.float().cpu().numpy())
            probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        if not features:
            return np.zeros((0, self.feature_dim), np.float32), np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(features), np.concatenate(probs)


def save_fer_checkpoint(path: str, network: DenseNetFER, metrics: Optional[Dict[str, float]] = None) -> None:
    """Weights, architecture and metrics, in plain types (loadable weights-only), written atomically."""
    state = {
        "format": _CHECKPOINT_FORMAT,
        "arch": dict(network.arch),
        "classes": list(FER_CLASSES),
        "face_size": FACE_SIZE,
        "metrics": dict(metrics or {}),
        "model": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def load_fer_model(path: str, device: str = "cpu", batch_size: int = 64) -> FerModel:
    state = load_checkpoint_weights_only(path)
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a facial-expression checkpoint written by memobert-train-fer")
    if tuple(state.get("classes") or ()) != FER_CLASSES:
        raise ValueError(f"{path}: classes {state.get('classes')} differ from FER+'s {list(FER_CLASSES)}")
    arch = state.get("arch")
    if not (isinstance(arch, dict) and set(arch) <= set(_ARCH_FIELDS)):
        raise ValueError(f"{path}: 'arch' {arch!r} is not a DenseNet-BC shape (fields {', '.join(_ARCH_FIELDS)})")
    dims = check_model_dims({k: v for k, v in arch.items() if k != "compression"}, path)
    compression = arch.get("compression", 0.5)
    if type(compression) not in (int, float) or not 0 < compression <= 1:
        raise ValueError(f"{path}: 'arch' compression {compression!r} is not a fraction in (0, 1]")
    if dims.get("num_classes", len(FER_CLASSES)) != len(FER_CLASSES) or dims.get("depth", 100) > _MAX_DEPTH:
        raise ValueError(f"{path}: 'arch' {arch!r} is not a DenseNet-BC shape for FER+ (depth <= {_MAX_DEPTH}, "
                         f"{len(FER_CLASSES)} classes)")
    check_model_dims(dims, path, parameters=_densenet_parameters(dims.get("depth", 100), dims.get("growth_rate", 12),
                                                                 compression))
    network = DenseNetFER(**arch)
    try:
        network.load_state_dict(state["model"])
    except (RuntimeError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: its weights do not fit the DenseNet its 'arch' describes: {str(err).splitlines()[0]}") from None
    return FerModel(network, device, batch_size)
