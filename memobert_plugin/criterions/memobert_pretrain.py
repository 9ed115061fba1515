"""``memobert_pretrain`` criterion: the masked objectives' losses, with exact per-objective metrics."""

from dataclasses import dataclass
from typing import Any, Dict

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from memobert_plugin.data.objective_batches import MaskedView
from memobert_plugin.objectives import OBJECTIVE_REGISTRY
from memobert_plugin.streams import TEXT
from memobert_plugin.criterions.unused_parameters import anchor_unused_parameters

__all__ = ["MemobertPretrainCriterion", "MemobertPretrainCriterionConfig"]


@dataclass
class MemobertPretrainCriterionConfig(FairseqDataclass):
    pass


@register_criterion("memobert_pretrain", dataclass=MemobertPretrainCriterionConfig)
class MemobertPretrainCriterion(FairseqCriterion):
    """Sum over the batch's objectives of weight x mean loss per masked unit.

    For each objective the batch was masked for, the model encodes the masked batch, and the
    objective gets its head (the model's masked-LM head or its own) and the encoder states of
    its stream at the masked positions.

    The returned loss is already a per-batch mean, so ``sample_size`` is 1 and fairseq
    averages batches across workers and ``--update-freq`` steps alike. Every logging
    output has each objective's sums (zero when it was not drawn), so workers always
    all-reduce the same keys, and ``reduce_metrics`` derives ratios from summed counts.
    Sums stay tensors: the forward never waits for the device (no ``.item()``).
    """

    def __init__(self, cfg: MemobertPretrainCriterionConfig, task):
        super().__init__(task)

    def forward(self, model, sample, reduce: bool = True):
        logging_output = {"ntokens": sample["ntokens"], "nsentences": sample["nsentences"], "sample_size": 1}
        # counts are host numbers, sums device tensors, on every worker whatever it drew: fairseq
        # all-reduces host numbers and device tensors as two groups, which must match across workers
        zero = torch.zeros((), device=sample["net_input"]["src_tokens"].device)
        for objective in self.task.objectives.values():
            logging_output.update(dict.fromkeys(objective.sum_keys(), 0))
            logging_output.update(dict.fromkeys(objective.tensor_sum_keys(), zero))
        loss = None
        for name, entry in sample["objectives"].items():
            objective, view = self.task.objectives[name], MaskedView(**entry)
            output = model(**_masked_input(sample["net_input"], view))
            states = output.layout.modality_states(output.hidden, view.stream)[view.positions]
            head = model.lm_head if objective.uses_lm_head else model.heads[name]
            result = objective.compute_loss(head, states, view)
            if result.count > 0:
                term = view.weight * result.loss_sum / result.count
                loss = term if loss is None else loss + term
            logging_output[f"{name}_loss_sum"] = result.loss_sum.detach()
            logging_output[f"{name}_count"] = result.count
            logging_output[f"{name}_nbatches"] = 1
            for key, value in result.sums.items():
                logging_output[f"{name}_{key}"] = torch.as_tensor(value, device=zero.device)
        if loss is None:  # nothing maskable in the batch: a zero step through the model
            loss = model(**sample["net_input"]).hidden.sum() * 0.0
        loss = anchor_unused_parameters(loss, model)
        logging_output["loss"] = loss.detach()
        return loss, 1, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = utils.item(sum(log.get("loss", 0) for log in logging_outputs))
        batches = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        metrics.log_scalar("loss", loss_sum / max(batches, 1), batches, round=4)
        names = {k[: -len("_count")] for log in logging_outputs[:1] for k in log if k.endswith("_count")}
        for name in sorted(names):
            if name in OBJECTIVE_REGISTRY:
                OBJECTIVE_REGISTRY[name].reduce_metrics(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _masked_input(net_input: Dict[str, Any], view: MaskedView) -> Dict[str, Any]:
    """The model's arguments with the view's stream masked: the text's replaced tokens, or the frames to hide."""
    if view.stream == TEXT:
        return {**net_input, "src_tokens": view.tokens}
    return {**net_input, "frame_masks": {view.stream: view.positions}}
