"""Pretraining objectives: each a registered unit of masking, head size, loss and metrics."""

from memobert_plugin.objectives.base import (
    OBJECTIVE_REGISTRY,
    ObjectiveData,
    ObjectiveLoss,
    PretrainingObjective,
    objective_config_classes,
    on_objective_registered,
    pad_masks,
    register_objective,
)
from memobert_plugin.objectives.span_frames import FrameMaskingConfig, SpanMaskedFrameRegression, SpanMaskedFrames
from memobert_plugin.objectives.wwmlm import WholeWordMLM, WwmlmConfig
from memobert_plugin.objectives.span_mvfr import SpanMVFR
from memobert_plugin.objectives.span_mvfc_kl import SpanMVFCKL
from memobert_plugin.objectives.span_mafr import SpanMAFR
from memobert_plugin.data.objective_batches import MaskedView
from memobert_plugin.data.multimodal_dataset import UtteranceBatch

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
