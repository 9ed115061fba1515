"""A subset of a multimodal corpus (one fold's train, valid or test rows) with class labels."""

from typing import Any, Dict, Sequence

import numpy as np
import torch

from memobert_plugin.data.multimodal_dataset import MultimodalDataset, SizedByAllModalities

__all__ = ["LabelledSubset"]


class LabelledSubset(SizedByAllModalities):
    """Rows ``indices`` of ``corpus``; items keep the corpus row as ``id`` and gain ``label``."""

    def __init__(self, corpus: MultimodalDataset, indices: Sequence[int], labels: Sequence[int]):
        super().__init__()
        self.corpus = corpus
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sizes = corpus.sizes[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        row = int(self.indices[index])
        item = self.corpus[row]
        item["label"] = int(self.labels[row])
        return item

    def collater(self, samples):
        batch = self.corpus.collater(samples)
        if batch:
            batch["target"] = torch.tensor([s["label"] for s in samples], dtype=torch.long)
        return batch
