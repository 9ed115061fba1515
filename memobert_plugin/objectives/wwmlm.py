"""WWMLM: whole-word masked language modelling, conditioned on the intact face and voice streams."""

from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.data import data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from .base import ObjectiveLoss, PretrainingObjective, pad_masks, register_objective
from ..data.masking import whole_word_mask

__all__ = ["WwmlmConfig", "WholeWordMLM"]


@dataclass
class WwmlmConfig(FairseqDataclass):
    mlm_mask_prob: float = field(default=0.15, metadata={"help": "WWMLM: fraction of words to mask"})
    mlm_leave_unmasked_prob: float = field(default=0.1, metadata={"help": "WWMLM: of masked words, fraction kept as is"})
    mlm_random_token_prob: float = field(default=0.1, metadata={"help": "WWMLM: of masked words, fraction replaced by random tokens"})
    mlm_masking_unit: ChoiceEnum(["word", "token"]) = field(
        default="word", metadata={"help": "WWMLM: mask whole words, or single word pieces (the Table 3 ablation)"}
    )


@register_objective("wwmlm", WwmlmConfig)
class WholeWordMLM(PretrainingObjective):
    """Cross-entropy at masked positions only, scored by BERT's tied MLM head."""

    modality = "text"
    extra_sums = ("correct",)
    derived = {"acc": ("correct", "count")}

    def __init__(self, cfg, data):
        super().__init__(cfg, data)
        if cfg.mlm_leave_unmasked_prob + cfg.mlm_random_token_prob > 1:
            raise ValueError(f"--mlm-leave-unmasked-prob {cfg.mlm_leave_unmasked_prob} and --mlm-random-token-prob "
                             f"{cfg.mlm_random_token_prob}: together more than all of the masked words")
        vocab = data.vocab
        special = np.zeros(len(vocab), dtype=bool)
        special[vocab.special_ids()] = True
        self.special = special
        self.word_start = vocab.word_start_flags()
        self.random_ids = np.flatnonzero(~special)
        self.mask_idx = vocab.mask_index
        self.pad_idx = vocab.pad()

    def can_mask(self, sample: Dict[str, Any]) -> bool:
        return bool((~self.special[sample["text"].numpy()]).any())

    def mask_batch(self, samples, rngs, batch):
        masked, positions = [], []
        for sample, rng in zip(samples, rngs):
            tokens = sample["text"].numpy()
            new_tokens, targets = whole_word_mask(
                rng,
                tokens,
                maskable=~self.special[tokens],
                word_start=self.word_start,
                mask_prob=self.cfg.mlm_mask_prob,
                mask_idx=self.mask_idx,
                random_ids=self.random_ids,
                leave_unmasked_prob=self.cfg.mlm_leave_unmasked_prob,
                random_token_prob=self.cfg.mlm_random_token_prob,
                whole_word=self.cfg.mlm_masking_unit == "word",
            )
            masked.append(torch.from_numpy(new_tokens))
            positions.append(targets)
        original = batch["net_input"]["src_tokens"]
        src_tokens = data_utils.collate_tokens(masked, self.pad_idx)
        mask = pad_masks(positions, original.shape[1])
        return {"net_input": {"src_tokens": src_tokens}, "targets": {"positions": mask, "tokens": original[mask]}}

    def compute_loss(self, model, output, targets) -> ObjectiveLoss:
        states = output.layout.modality_states(output.hidden, "text")[targets["positions"]]
        logits = model.lm_head(states)
        loss = F.cross_entropy(logits.float(), targets["tokens"], reduction="sum")
        correct = (logits.argmax(-1) == targets["tokens"]).sum()
        return ObjectiveLoss(loss, int(targets["tokens"].numel()), {"correct": correct})
