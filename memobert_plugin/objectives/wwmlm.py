"""WWMLM: whole-word masked language modelling, conditioned on the intact face and voice streams."""

from dataclasses import dataclass, field
import numpy as np
import torch
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from memobert_plugin.objectives.base import ObjectiveLoss, PretrainingObjective, register_objective
from memobert_plugin.data.masking import whole_word_mask
from memobert_plugin.data.objective_batches import MaskedView
from memobert_plugin.streams import TEXT

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

    modality = TEXT
    uses_lm_head = True
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

    def can_mask(self, batch) -> bool:
        return bool((~self.special[batch.tokens.numpy()]).any())  # padding is a special token

    def mask_batch(self, batch, rngs) -> MaskedView:
        """Each utterance's tokens masked in a copy of the collated text (right-padded: a row's
        tokens are its first non-padding ones)."""
        tokens = batch.tokens.numpy()
        masked, positions = tokens.copy(), np.zeros(tokens.shape, dtype=bool)
        for row, rng in enumerate(rngs):
            length = int((tokens[row] != self.pad_idx).sum())
            utterance = tokens[row, :length]
            masked[row, :length], positions[row, :length] = whole_word_mask(
                rng,
                utterance,
                maskable=~self.special[utterance],
                word_start=self.word_start,
                mask_prob=self.cfg.mlm_mask_prob,
                mask_idx=self.mask_idx,
                random_ids=self.random_ids,
                leave_unmasked_prob=self.cfg.mlm_leave_unmasked_prob,
                random_token_prob=self.cfg.mlm_random_token_prob,
                whole_word=self.cfg.mlm_masking_unit == "word",
            )
        positions = torch.from_numpy(positions)
        return MaskedView(TEXT, positions, batch.tokens[positions], tokens=torch.from_numpy(masked))

    def compute_loss(self, head, states, view) -> ObjectiveLoss:
        logits = head(states)
        loss = F.cross_entropy(logits.float(), view.targets, reduction="sum")
        correct = (logits.argmax(-1) == view.targets).sum()
        return ObjectiveLoss(loss, int(view.targets.numel()), {"correct": correct})
