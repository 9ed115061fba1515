"""Pretraining objectives: each a registered unit of masking, head size, loss and metrics."""

from .base import (
    OBJECTIVE_REGISTRY,
    ObjectiveData,
    ObjectiveLoss,
    PretrainingObjective,
    objective_config_classes,
    on_objective_registered,
    pad_masks,
    register_objective,
)
from .span_frames import FrameMaskingConfig, SpanMaskedFrameRegression, SpanMaskedFrames
from .wwmlm import WholeWordMLM, WwmlmConfig
from .span_mvfr import SpanMVFR
from .span_mvfc_kl import SpanMVFCKL
from .span_mafr import SpanMAFR
from ..data.objective_batches import MaskedView
from ..data.multimodal_dataset import UtteranceBatch

__all__ = [
    "OBJECTIVE_REGISTRY",
    "ObjectiveData",
    "ObjectiveLoss",
    "PretrainingObjective",
    "MaskedView",
    "UtteranceBatch",
    "objective_config_classes",
    "on_objective_registered",
    "pad_masks",
    "register_objective",
    "FrameMaskingConfig",
    "SpanMaskedFrames",
    "SpanMaskedFrameRegression",
    "WholeWordMLM",
    "WwmlmConfig",
    "SpanMVFR",
    "SpanMVFCKL",
    "SpanMAFR",
]
