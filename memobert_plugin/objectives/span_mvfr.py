"""SpanMVFR: span-masked visual frame regression."""

from .base import register_objective
from .span_frames import FrameMaskingConfig, SpanMaskedFrameRegression

__all__ = ["SpanMVFR"]


@register_objective("span_mvfr", FrameMaskingConfig)
class SpanMVFR(SpanMaskedFrameRegression):
    """Reconstruct masked face features from text, voice and the unmasked faces."""

    modality = "visual"

    @property
    def mask_prob(self) -> float:
        return self.cfg.visual_mask_prob
