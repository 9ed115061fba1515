"""``memobert_emotion`` criterion: cross-entropy over the classes (or the prompt's MLM loss), exact WA, UAR and F1.

WA is accuracy; UAR is the mean per-class recall over the classes present in the
evaluated data; macro and weighted F1 as in :mod:`memobert_plugin.class_metrics`. All are
derived in ``reduce_metrics`` from a confusion matrix of counts (``confusion_{gold}_{predicted}``)
that fairseq sums over batches and workers, so they are exact (the authors' code averaged
per-GPU figures instead); the summed matrix is logged too (``confusion``, rows gold).
Logs carry fractions; tables print percents. The loss is logged in nats (natural log), as every memobert loss.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from memobert_plugin.class_metrics import (
    confusion_from_counts,
    macro_f1,
    unweighted_average_recall,
    weighted_accuracy,
    weighted_f1,
)
from memobert_plugin.criterions.unused_parameters import anchor_unused_parameters

__all__ = ["MemobertEmotionCriterion", "MemobertEmotionCriterionConfig"]


@dataclass
class MemobertEmotionCriterionConfig(FairseqDataclass):
    prompt_loss: ChoiceEnum(["vocabulary", "label_words"]) = field(
        default="vocabulary",
        metadata={"help": "prompt head's training loss: vocabulary: MLM cross-entropy over the whole vocabulary at "
                  "the [MASK] slot(s), as the authors' code; label_words: cross-entropy over the label words only. "
                  "The prediction is always the best label word; the classifier head (Direct, Finetune) always "
                  "trains with cross-entropy over the classes"},
    )


@register_criterion("memobert_emotion", dataclass=MemobertEmotionCriterionConfig)
class MemobertEmotionCriterion(FairseqCriterion):
    def __init__(self, cfg: MemobertEmotionCriterionConfig, task):
        super().__init__(task)
        self.num_classes = len(task.class_names)
        # a prompt's class scores are its label words' log-probabilities over the whole vocabulary, so
        # their negative is the MLM loss; cross-entropy renormalises them over the label words (and is
        # what a classifier's logits need)
        vocabulary = cfg.prompt_loss == "vocabulary" and task.cfg.emotion_head == "prompt"
        self.class_loss = F.nll_loss if vocabulary else F.cross_entropy

    def forward(self, model, sample, reduce: bool = True):
        logits = self.task.class_logits(model, sample["net_input"])
        target = sample["target"]
        loss = anchor_unused_parameters(self.class_loss(logits.float(), target, reduction="sum"), model)
        # confusion counts, row-major (gold, predicted), in one bincount
        confusion = torch.bincount(target * self.num_classes + logits.argmax(-1), minlength=self.num_classes ** 2)
        self.task.record_predictions(sample, logits)
        logging_output = {
            "loss": loss.detach().item(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": len(target),
        }
        # one device-to-host copy, not a sync per count
        for k, count in enumerate(confusion.tolist()):
            logging_output[f"confusion_{k // self.num_classes}_{k % self.num_classes}"] = count
        return loss, len(target), logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = utils.item(sum(log.get("loss", 0) for log in logging_outputs))
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        # in nats per utterance, as the pretraining loss (not fairseq's usual bits)
        metrics.log_scalar("loss", loss_sum / max(sample_size, 1), sample_size, round=4)
        # all-reduced outputs may reorder their keys: name them in the matrix's row-major order
        num_classes = math.isqrt(sum(key.startswith("confusion_") for key in logging_outputs[0])) if logging_outputs else 0
        keys = [f"confusion_{g}_{p}" for g in range(num_classes) for p in range(num_classes)]
        for key in keys:
            metrics.log_scalar_sum(f"_{key}", utils.item(sum(log.get(key, 0) for log in logging_outputs)))

        def confusion(meters):
            return confusion_from_counts([meters[f"_{key}"].sum for key in keys], num_classes)

        for name, measure in (("wa", weighted_accuracy), ("uar", unweighted_average_recall),
                              ("macro_f1", macro_f1), ("weighted_f1", weighted_f1)):
            metrics.log_derived(name, lambda meters, measure=measure: round(measure(confusion(meters)), 6))
        metrics.log_derived("confusion", confusion)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
