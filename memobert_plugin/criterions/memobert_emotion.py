"""``memobert_emotion`` criterion: cross-entropy over the classes (or the prompt's MLM loss), exact WA and UAR.

WA is accuracy; UAR is the mean per-class recall over the classes present in the
evaluated data. Both are derived in ``reduce_metrics`` from per-class correct/total
counts that fairseq sums over batches and workers, so they are exact (the authors'
code averaged per-GPU figures instead). Logs carry fractions; tables print percents.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from .unused_parameters import anchor_unused_parameters

__all__ = ["MemobertEmotionCriterion", "MemobertEmotionCriterionConfig", "weighted_accuracy", "unweighted_average_recall"]


@dataclass
class MemobertEmotionCriterionConfig(FairseqDataclass):
    prompt_loss: ChoiceEnum(["label_words", "vocabulary"]) = field(
        default="label_words",
        metadata={"help": "prompt head's training loss: label_words: cross-entropy over the label words only (the "
                  "classes); vocabulary: MLM cross-entropy over the whole vocabulary at the [MASK] slot(s), as the "
                  "authors' code. The prediction is always the best label word"},
    )


def weighted_accuracy(correct, total) -> float:
    """Accuracy from per-class counts."""
    return sum(correct) / sum(total) if sum(total) > 0 else float("nan")


def unweighted_average_recall(correct, total) -> float:
    """Mean recall over the classes that occur (total > 0)."""
    recalls = [c / t for c, t in zip(correct, total) if t > 0]
    return sum(recalls) / len(recalls) if recalls else float("nan")


@register_criterion("memobert_emotion", dataclass=MemobertEmotionCriterionConfig)
class MemobertEmotionCriterion(FairseqCriterion):
    def __init__(self, cfg: MemobertEmotionCriterionConfig, task):
        super().__init__(task)
        self.num_classes = len(task.class_names)
        if cfg.prompt_loss == "vocabulary" and task.cfg.emotion_head != "prompt":
            raise ValueError("--prompt-loss vocabulary needs --emotion-head prompt (a classifier has no vocabulary)")
        # a prompt's class scores are its label words' log-probabilities over the whole vocabulary, so
        # their negative is the MLM loss; cross-entropy renormalises them over the label words
        self.class_loss = F.nll_loss if cfg.prompt_loss == "vocabulary" else F.cross_entropy

    def forward(self, model, sample, reduce: bool = True):
        logits = self.task.class_logits(model, sample["net_input"])
        target = sample["target"]
        loss = anchor_unused_parameters(self.class_loss(logits.float(), target, reduction="sum"), model)
        hits = logits.argmax(-1).eq(target)
        total = torch.bincount(target, minlength=self.num_classes)
        correct = torch.bincount(target[hits], minlength=self.num_classes)
        logging_output = {
            "loss": loss.detach().item(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": len(target),
        }
        # one device-to-host copy per tensor, not a sync per class and count
        total_counts, correct_counts = total.tolist(), correct.tolist()
        for k in range(self.num_classes):
            logging_output[f"class{k}_total"] = total_counts[k]
            logging_output[f"class{k}_correct"] = correct_counts[k]
        return loss, len(target), logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = utils.item(sum(log.get("loss", 0) for log in logging_outputs))
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        metrics.log_scalar("loss", loss_sum / max(sample_size, 1) / math.log(2), sample_size, round=4)
        num_classes = sum(1 for key in logging_outputs[0] if key.endswith("_total")) if logging_outputs else 0
        for k in range(num_classes):
            for kind in ("total", "correct"):
                key = f"class{k}_{kind}"
                metrics.log_scalar_sum(f"_{key}", utils.item(sum(log.get(key, 0) for log in logging_outputs)))

        def counts(meters):
            return ([meters[f"_class{k}_correct"].sum for k in range(num_classes)],
                    [meters[f"_class{k}_total"].sum for k in range(num_classes)])

        metrics.log_derived("wa", lambda meters: round(weighted_accuracy(*counts(meters)), 6))
        metrics.log_derived("uar", lambda meters: round(unweighted_average_recall(*counts(meters)), 6))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
