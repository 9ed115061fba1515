"""Span masking of face or voice frames, shared by SpanMAFR, SpanMVFR and SpanMVFC-KL."""

from dataclasses import dataclass, field
from typing import Dict

import torch
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass

from .base import ObjectiveLoss, PretrainingObjective, pad_masks
from ..data.masking import span_mask
from ..models.heads import MLPHead

__all__ = ["FrameMaskingConfig", "SpanMaskedFrames", "SpanMaskedFrameRegression"]


@dataclass
class FrameMaskingConfig(FairseqDataclass):
    frame_mask_span: int = field(
        default=3, metadata={"help": "consecutive frames per masked span (1: independent frames, the Table 3 ablation)"}
    )
    visual_mask_prob: float = field(default=0.2, metadata={"help": "SpanMVFR/SpanMVFC-KL: fraction of face frames masked"})
    acoustic_mask_prob: float = field(default=0.15, metadata={"help": "SpanMAFR: fraction of speech frames masked"})


class SpanMaskedFrames(PretrainingObjective):
    """Masks non-overlapping spans of one frame stream; subclasses add the head and loss."""

    def mask_batch(self, samples, rngs, batch):
        prob = getattr(self.cfg, f"{self.modality}_mask_prob")
        frames = batch["net_input"][self.modality]
        lengths = batch["net_input"][f"{self.modality}_lengths"].tolist()
        masks = [span_mask(rng, n, prob, self.cfg.frame_mask_span) for n, rng in zip(lengths, rngs)]
        mask = pad_masks(masks, frames.shape[1])
        # model inputs sit in net_input; target-only streams (visual_fer) at the batch's top level
        source = batch["net_input"] if self.target_stream in batch["net_input"] else batch
        targets = {"positions": mask, "frames": source[self.target_stream][mask]}
        return {"net_input": {f"{self.modality}_mask": mask}, "targets": targets}

    def masked_states(self, output, targets: Dict[str, torch.Tensor]) -> torch.Tensor:
        return output.layout.modality_states(output.hidden, self.modality)[targets["positions"]]

    def build_head(self, hidden_dim: int) -> MLPHead:
        return MLPHead(hidden_dim, self.data.stream_dims[self.target_stream])


class SpanMaskedFrameRegression(SpanMaskedFrames):
    """L2 regression of the original frames at masked positions (mean over feature dims)."""

    def compute_loss(self, model, output, targets) -> ObjectiveLoss:
        predicted = model.heads[self.name](self.masked_states(output, targets))
        squared = F.mse_loss(predicted.float(), targets["frames"].float(), reduction="none")
        return ObjectiveLoss(squared.mean(-1).sum(), int(predicted.shape[0]), {})
