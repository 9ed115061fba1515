"""Naming the utterances of a batch whose loss is not finite."""

import logging

import torch

__all__ = ["report_non_finite"]

logger = logging.getLogger(__name__)


def report_non_finite(loss: torch.Tensor, sample, task) -> None:
    """Log the batch's utterances, as ``task.describe_utterances`` names them, when its loss is NaN/Inf.

    fairseq then handles the step as usual: the non-finite gradient norm makes the trainer
    raise (fp32) or skip the update and lower the loss scale (fp16/amp), so no update is
    ever made with NaN weights; this log says which data caused it.
    """
    if not torch.isfinite(loss).all():
        logger.error("non-finite loss %s on the batch of utterances %s", loss.item(), task.describe_utterances(sample["id"].tolist()))
