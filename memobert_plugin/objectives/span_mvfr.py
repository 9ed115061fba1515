"""SpanMVFR: span-masked visual frame regression."""

from memobert_plugin.objectives.base import register_objective
from memobert_plugin.objectives.span_frames import FrameMaskingConfig, SpanMaskedFrameRegression

__all__ = ["SpanMVFR"]


@register_objective("span_mvfr", FrameMaskingConfig)
class SpanMVFR(SpanMaskedFrameRegression):
    """Reconstruct masked face features from text, voice and the unmasked faces."""

    modality = "visual"

    @property
    def mask_prob(self) -> float:
        return self.cfg.visual_mask_prob
