"""SpanMAFR: span-masked acoustic frame regression."""

from memobert_plugin.objectives.base import register_objective
from memobert_plugin.objectives.span_frames import FrameMaskingConfig, SpanMaskedFrameRegression

__all__ = ["SpanMAFR"]


@register_objective("span_mafr", FrameMaskingConfig)
class SpanMAFR(SpanMaskedFrameRegression):
    """Reconstruct masked speech frames from text, faces and the unmasked speech."""

    modality = "acoustic"

    @property
    def mask_prob(self) -> float:
        return self.cfg.acoustic_mask_prob
