"""Per-batch objective choice and conditional masking, reproducible from (seed, epoch, index)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Protocol, Sequence

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset

from memobert_plugin.data.masking import masking_rng
from memobert_plugin.data.multimodal_dataset import UtteranceBatch

__all__ = ["ObjectiveBatchesDataset", "MaskingObjective", "MaskedView"]

_CHOICE_SALT = 0x0B1EC7


@dataclass
class MaskedView:
    """One objective's masking of a batch: which stream it hides where, and what is to be predicted there."""

    stream: str  # "text" or the input frame stream masked (one only: conditional masking)
    positions: torch.Tensor  # [B, T_stream] bool: the positions to predict
    targets: torch.Tensor  # [masked, ...] what to predict at them (token ids, target frames), in positions order
    #: text: the input tokens with the chosen words replaced; frames: None (the model hides ``positions``)
    tokens: Optional[torch.Tensor] = None
    weight: float = 1.0  # of its loss in the batch's

    def as_sample(self) -> Dict[str, Any]:
        """A plain dict in the batch, so fairseq moves its tensors to the device with the rest."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class MaskingObjective(Protocol):
    name: str
    salt: int

    def can_mask(self, batch: UtteranceBatch) -> bool: ...

    def mask_batch(self, batch: UtteranceBatch, rngs: Sequence[np.random.Generator]) -> MaskedView: ...


class ObjectiveBatchesDataset(BaseWrapperDataset):
    """Collates a batch, then masks it for one sampled objective (``sample``) or each (``sum``).

    The batch gains ``batch["objectives"][name]``, a :class:`MaskedView` as a dict (its weight is 1
    for a sampled objective, its normalised ratio in ``sum`` mode); only the objective's own
    stream is masked (conditional masking). Objectives with nothing to mask in the batch (e.g.
    no speech frames) are not chosen.
    """

    def __init__(
        self,
        dataset,
        objectives: Sequence[MaskingObjective],
        ratios: Sequence[float],
        mode: str,
        seed: int,
        fixed_epoch: Optional[int] = None,
    ):
        super().__init__(dataset)
        if mode not in ("sample", "sum"):
            raise ValueError(f"objective mode must be 'sample' or 'sum', got {mode!r}")
        self.objectives, self.ratios = list(objectives), np.asarray(ratios, dtype=np.float64)
        self.weights = {obj.name: r / self.ratios.sum() for obj, r in zip(self.objectives, self.ratios)}
        self.mode, self.seed = mode, seed
        # validation masks the same way every epoch so its loss is comparable across epochs
        self.fixed_epoch = fixed_epoch
        self.epoch = 1

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # masks depend on the epoch

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.epoch = epoch

    def choose(self, batch: UtteranceBatch, epoch: int) -> List[MaskingObjective]:
        """The objectives that mask this batch: one drawn by ratio, or (sum mode) every one."""
        eligible = [i for i, obj in enumerate(self.objectives) if self.ratios[i] > 0 and obj.can_mask(batch)]
        if self.mode == "sum" or not eligible:
            return [self.objectives[i] for i in eligible]
        rng = masking_rng(self.seed, epoch, int(batch.ids.min()), _CHOICE_SALT)
        p = self.ratios[eligible] / self.ratios[eligible].sum()
        return [self.objectives[eligible[rng.choice(len(eligible), p=p)]]]

    def collater(self, samples):
        batch = self.dataset.collater(samples)
        if not batch:
            return batch
        epoch = self.fixed_epoch or self.epoch
        utterances = UtteranceBatch.of(batch)
        batch["objectives"] = {}
        for obj in self.choose(utterances, epoch):
            rngs = [masking_rng(self.seed, epoch, index, obj.salt) for index in utterances.ids.tolist()]
            view = obj.mask_batch(utterances, rngs)
            view.weight = 1.0 if self.mode == "sample" else float(self.weights[obj.name])
            batch["objectives"][obj.name] = view.as_sample()
        return batch
