"""SpanMVFC-KL: span-masked visual frame classification against the FER model's soft labels."""

import torch.nn.functional as F

from memobert_plugin.objectives.base import ObjectiveLoss, register_objective
from memobert_plugin.objectives.span_frames import FrameMaskingConfig, SpanMaskedFrames

__all__ = ["SpanMVFCKL"]


@register_objective("span_mvfc_kl", FrameMaskingConfig)
class SpanMVFCKL(SpanMaskedFrames):
    """KL(target || predicted) over the K facial-expression classes of each masked face frame."""

    modality = "visual"
    target_stream = "visual_fer"
    extra_sums = ("agree",)
    derived = {"agree": ("agree", "count")}  # argmax of prediction == argmax of target

    @property
    def mask_prob(self) -> float:
        return self.cfg.visual_mask_prob

    def compute_loss(self, head, states, view) -> ObjectiveLoss:
        logits = head(states).float()
        target = view.targets.float()
        # stored in float16: renormalise so each target is a distribution
        target = target / target.sum(-1, keepdim=True).clamp(min=1e-6)
        kl = F.kl_div(F.log_softmax(logits, -1), target, reduction="sum")
        agree = (logits.argmax(-1) == target.argmax(-1)).sum()
        return ObjectiveLoss(kl, int(logits.shape[0]), {"agree": agree})
