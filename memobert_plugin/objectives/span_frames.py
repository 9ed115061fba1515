"""Span masking of one input frame stream, shared by SpanMAFR, SpanMVFR and SpanMVFC-KL."""

from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass

from memobert_plugin.objectives.base import ObjectiveLoss, PretrainingObjective, pad_masks
from memobert_plugin.data.masking import span_mask
from memobert_plugin.data.objective_batches import MaskedView

__all__ = ["FrameMaskingConfig", "SpanMaskedFrames", "SpanMaskedFrameRegression"]


@dataclass
class FrameMaskingConfig(FairseqDataclass):
    frame_mask_span: int = field(
        default=3, metadata={"help": "consecutive frames per masked span (1: independent frames, the Table 3 ablation)"}
    )
    visual_mask_prob: float = field(default=0.2, metadata={"help": "SpanMVFR/SpanMVFC-KL: fraction of face frames masked"})
    acoustic_mask_prob: float = field(default=0.15, metadata={"help": "SpanMAFR: fraction of speech frames masked"})


class SpanMaskedFrames(PretrainingObjective):
    """Masks non-overlapping spans of one frame stream; subclasses give the masked fraction, head and loss.

    The target at each masked frame is the frame itself, or the row of ``target_stream`` there.
    """

    @property
    def mask_prob(self) -> float:
        """The fraction of the stream's frames to mask (an option of the objective's config)."""
        raise NotImplementedError

    def mask_batch(self, batch, rngs) -> MaskedView:
        frames = batch.frames[self.modality]
        lengths = batch.frame_lengths[self.modality].tolist()
        masks = [span_mask(rng, n, self.mask_prob, self.cfg.frame_mask_span) for n, rng in zip(lengths, rngs)]
        positions = pad_masks(masks, frames.shape[1])
        return MaskedView(self.modality, positions, batch.frames[self.target_stream or self.modality][positions])

    def head_outputs(self) -> int:
        return self.data.stream_dims[self.target_stream or self.modality]


class SpanMaskedFrameRegression(SpanMaskedFrames):
    """L2 regression of the original frames at masked positions (mean over feature dims)."""

    def compute_loss(self, head, states, view) -> ObjectiveLoss:
        predicted = head(states)
        squared = F.mse_loss(predicted.float(), view.targets.float(), reduction="none")
        return ObjectiveLoss(squared.mean(-1).sum(), int(predicted.shape[0]), {})
