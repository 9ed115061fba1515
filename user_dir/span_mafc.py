"""SpanMAFC: classify masked speech frames into k-means clusters of the speech features."""

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass

from memobert_plugin.objectives import ObjectiveLoss, SpanMaskedFrames, register_objective

__all__ = ["SpanMafcConfig", "SpanMAFC"]


@dataclass
class SpanMafcConfig(FairseqDataclass):
    mafc_codebook: str = field(
        default="", metadata={"help": "SpanMAFC: .npy of k-means centroids [clusters, speech dim] (see fit_codebook.py)"}
    )


@register_objective("span_mafc", SpanMafcConfig)
class SpanMAFC(SpanMaskedFrames):
    """Masks speech spans like SpanMAFR (same --frame-mask-span / --acoustic-mask-prob), but predicts
    each masked frame's nearest centroid with cross-entropy instead of regressing the frame."""

    modality = "acoustic"
    extra_sums = ("correct",)
    derived = {"acc": ("correct", "count")}

    def __init__(self, cfg, data):
        super().__init__(cfg, data)
        if not cfg.mafc_codebook or not os.path.isfile(cfg.mafc_codebook):
            raise FileNotFoundError(f"span_mafc needs --mafc-codebook, a centroids .npy (got {cfg.mafc_codebook!r})")
        self.centroids = torch.from_numpy(np.load(cfg.mafc_codebook).astype(np.float32))
        if self.centroids.ndim != 2 or self.centroids.shape[1] != data.stream_dims["acoustic"]:
            raise ValueError(f"{cfg.mafc_codebook}: centroids of shape {tuple(self.centroids.shape)}, "
                             f"expected [clusters, {data.stream_dims['acoustic']}]")

    @property
    def mask_prob(self) -> float:
        return self.cfg.acoustic_mask_prob

    def head_outputs(self) -> int:
        return self.centroids.shape[0]

    def compute_loss(self, head, states, view) -> ObjectiveLoss:
        frames = view.targets.float()
        clusters = torch.cdist(frames, self.centroids.to(frames.device)).argmin(-1)
        logits = head(states).float()
        loss = F.cross_entropy(logits, clusters, reduction="sum")
        correct = (logits.argmax(-1) == clusters).sum()
        return ObjectiveLoss(loss, int(clusters.numel()), {"correct": correct})
