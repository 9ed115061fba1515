"""Frames given in memory (``memobert-predict``'s utterances) in the shape of a split's :class:`FeatureStore`."""

from typing import Optional, Sequence

import numpy as np

from memobert_plugin.data.feature_store import STORE_DTYPE

__all__ = ["GivenFrames"]


class GivenFrames:
    """One stream's frames per utterance (``None``: none), checked as a store's are when written: at the
    store's precision (what training read), where a value beyond its range is not finite.

    Has what :class:`~memobert_plugin.data.multimodal_dataset.MultimodalDataset` reads of a
    :class:`~memobert_plugin.data.feature_store.FeatureStore`: ``lengths``, ``dim``, ``len()``, items.
    """

    def __init__(self, stream: str, frames: Sequence[Optional[np.ndarray]], dim: int, names: Sequence[str]):
        self.dim = dim
        self.npy_path = self.len_path = f"the given {stream} frames"
        self.frames = []
        for name, given in zip(names, frames):
            given = np.zeros((0, dim), np.float32) if given is None else np.asarray(given)
            if given.ndim != 2 or given.shape[1] != dim:
                raise ValueError(f"utterance {name}: {stream} frames have shape {given.shape}, "
                                 f"the model expects [frames, {dim}]")
            with np.errstate(over="ignore"):
                stored = given.astype(STORE_DTYPE)
            if not np.isfinite(stored).all():
                beyond = np.isfinite(given.astype(np.float64)).all()
                raise ValueError(f"utterance {name}: non-finite {stream} features"
                                 + (f" in {np.dtype(STORE_DTYPE).name}, the precision the model was trained on "
                                    "(values beyond its range)" if beyond else ""))
            self.frames.append(stored.astype(np.float32))
        self.lengths = np.array([len(f) for f in self.frames], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.frames[index]
