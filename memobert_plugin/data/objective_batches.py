"""Per-batch objective choice and conditional masking, reproducible from (seed, epoch, index)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Protocol, Sequence

import numpy as np
from fairseq.data import BaseWrapperDataset

from .masking import masking_rng

__all__ = ["ObjectiveBatchesDataset", "MaskingObjective"]

_CHOICE_SALT = 0x0B1EC7


class MaskingObjective(Protocol):
    name: str
    salt: int

    def can_mask(self, sample: Dict[str, Any]) -> bool: ...

    def mask_batch(self, samples, rngs, batch) -> Dict[str, Dict[str, Any]]: ...


class ObjectiveBatchesDataset(BaseWrapperDataset):
    """Collates a batch, then masks it for one sampled objective (``sample``) or each (``sum``).

    The batch gains ``batch["objectives"][name] = {"net_input": overrides, "targets": ...,
    "weight": w}`` (w is 1 for a sampled objective, its normalised ratio in ``sum`` mode);
    only the objective's own modality is masked (conditional masking). Objectives with
    nothing to mask in the batch (e.g. no speech frames) are not chosen.
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

    def _choose(self, samples, epoch: int) -> list:
        eligible = [
            i for i, obj in enumerate(self.objectives)
            if self.ratios[i] > 0 and any(obj.can_mask(s) for s in samples)
        ]
        if self.mode == "sum" or not eligible:
            return [self.objectives[i] for i in eligible]
        rng = masking_rng(self.seed, epoch, min(s["id"] for s in samples), _CHOICE_SALT)
        p = self.ratios[eligible] / self.ratios[eligible].sum()
        return [self.objectives[eligible[rng.choice(len(eligible), p=p)]]]

    def collater(self, samples):
        batch = self.dataset.collater(samples)
        if not batch:
            return batch
        epoch = self.fixed_epoch or self.epoch
        batch["objectives"] = {}
        for obj in self._choose(samples, epoch):
            rngs = [masking_rng(self.seed, epoch, s["id"], obj.salt) for s in samples]
            masked = obj.mask_batch(samples, rngs, batch)
            masked["weight"] = 1.0 if self.mode == "sample" else float(self.weights[obj.name])
            batch["objectives"][obj.name] = masked
        return batch
