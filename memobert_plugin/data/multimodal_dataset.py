"""Utterances as text + face frames + speech frames, truncated to the configured limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from memobert_plugin.streams import frame_streams
from memobert_plugin.data.feature_store import FeatureStore

__all__ = ["TextFormat", "SizedByAllModalities", "MultimodalDataset", "collate_utterances", "UtteranceBatch"]


@dataclass(frozen=True)
class TextFormat:
    """``[CLS] prefix utterance suffix [SEP]`` within ``max_tokens``.

    Over-long utterances are truncated, never dropped; the prefix and suffix (a prompt
    template's words) always stay whole.
    """

    bos: int
    eos: int
    max_tokens: int
    prefix: tuple = ()
    suffix: tuple = ()

    @property
    def budget(self) -> int:
        budget = self.max_tokens - 2 - len(self.prefix) - len(self.suffix)
        if budget < 0:
            raise ValueError(f"a text limit of {self.max_tokens} tokens cannot hold the template itself")
        return budget

    def build(self, body: np.ndarray) -> torch.Tensor:
        tokens = [self.bos, *self.prefix, *body[: self.budget].tolist(), *self.suffix, self.eos]
        return torch.tensor(tokens, dtype=torch.long)

    def sizes(self, body_lengths: np.ndarray) -> np.ndarray:
        return np.minimum(body_lengths, self.budget) + (self.max_tokens - self.budget)


class SizedByAllModalities(FairseqDataset):
    """``sizes[i]``: utterance i's text tokens + face frames + speech frames, what --max-tokens counts."""

    sizes: np.ndarray

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.sizes[indices]

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """fairseq's batches, and the last one too.

        fairseq 0.12 drops the final batch when its size is not a multiple of
        ``--required-batch-size-multiple`` (8 by default): validation and test scores would
        silently leave utterances out, and training (batches are sorted by length) would never
        see the longest ones. That batch was built within the limits, so it is kept.
        """
        batches = list(super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple))
        covered = sum(len(batch) for batch in batches)
        if covered < len(indices):
            batches.append(np.asarray(indices[covered:], dtype=np.int64))
        return batches


class MultimodalDataset(SizedByAllModalities):
    """Joins a split's binarized text with its frame streams (every declared one), index for index.

    ``text`` is a fairseq indexed dataset whose lines end with ``[SEP]`` (fairseq's eos).
    A stream may be absent (``None``): every utterance then has zero frames of it.
    ``limits``: most frames per utterance of each stream.
    """

    def __init__(
        self,
        text: FairseqDataset,
        text_format: TextFormat,
        pad: int,
        stores: Dict[str, Optional[FeatureStore]],
        dims: Dict[str, int],
        limits: Dict[str, int],
        name: str,
    ):
        super().__init__()
        self.text, self.text_format, self.pad = text, text_format, pad
        self.stores, self.dims, self.limits = stores, dims, limits
        body_lengths = np.asarray(text.sizes, dtype=np.int64) - 1
        self.frame_lengths = {}
        self.sizes = text_format.sizes(body_lengths)
        for stream in frame_streams():
            store = stores.get(stream.name)
            if store is not None and len(store) != len(text):
                raise ValueError(
                    f"{name}: {store.len_path} lists {len(store)} utterances but the text has {len(text)}; "
                    "the modalities of this split disagree"
                )
            lengths = store.lengths if store is not None else np.zeros(len(text), dtype=np.int64)
            self.frame_lengths[stream.name] = np.minimum(lengths, limits[stream.name])
            if stream.is_input:
                self.sizes = self.sizes + self.frame_lengths[stream.name]
            elif store is not None and stores.get(stream.target_of) is not None:
                source = stores[stream.target_of]
                differ = np.flatnonzero(store.lengths != source.lengths)
                if len(differ):
                    raise ValueError(
                        f"{name}: utterance {differ[0]} has {source.lengths[differ[0]]} {stream.target_of} frames "
                        f"but {store.lengths[differ[0]]} {stream.name} rows (one per {stream.target_of} frame)"
                    )

    def __len__(self) -> int:
        return len(self.text)

    def _frames(self, stream: str, index: int) -> torch.Tensor:
        store = self.stores.get(stream)
        if store is None:
            return torch.zeros(0, self.dims[stream])
        frames = np.asarray(store[index][: self.limits[stream]], dtype=np.float32)
        # FeatureStoreWriter refuses NaN/Inf; a store written otherwise is checked here, per
        # utterance as it is read, rather than by scanning the whole corpus at start-up
        if not np.isfinite(frames).all():
            raise ValueError(
                f"{store.npy_path}: utterance {index} (0-based, in data order) has non-finite (NaN/Inf) {stream} "
                "features; fix or drop it and rewrite the store with FeatureStoreWriter, which refuses such values"
            )
        return torch.from_numpy(frames)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        body = self.text[index].numpy()[:-1]  # drop the binarizer's trailing [SEP]
        item = {"id": index, "text": self.text_format.build(body)}
        for stream in frame_streams():
            item[stream.name] = self._frames(stream.name, index)
        return item

    @property
    def supports_prefetch(self) -> bool:
        return False

    def collater(self, samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        return collate_utterances(samples, self.pad, self.dims)


def collate_utterances(samples: Sequence[Dict[str, Any]], pad: int, dims: Dict[str, int]) -> Dict[str, Any]:
    """Pad each stream on its own: the text and input streams in ``net_input`` (the model's arguments),
    target streams in ``frame_targets`` and ``frame_target_lengths``. ``dims``: the streams to collate."""
    if len(samples) == 0:
        return {}
    net_input: Dict[str, Any] = {
        "src_tokens": data_utils.collate_tokens([s["text"] for s in samples], pad), "frames": {}, "frame_lengths": {},
    }
    batch: Dict[str, Any] = {
        "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
        "nsentences": len(samples),
        "ntokens": sum(len(s["text"]) for s in samples),
        "net_input": net_input,
        "frame_targets": {},
        "frame_target_lengths": {},
    }
    for stream in frame_streams():
        if stream.name not in dims:
            continue
        frames, lengths = _pad_frames([s[stream.name] for s in samples], dims[stream.name])
        if stream.is_input:
            net_input["frames"][stream.name], net_input["frame_lengths"][stream.name] = frames, lengths
            batch["ntokens"] += int(lengths.sum())
        else:
            batch["frame_targets"][stream.name], batch["frame_target_lengths"][stream.name] = frames, lengths
    return batch


@dataclass
class UtteranceBatch:
    """A collated batch as the objectives read it, whatever the collated keys are."""

    ids: torch.Tensor  # [B] data indices
    tokens: torch.Tensor  # [B, L] ``[CLS] ... [SEP]``, padded
    frames: Dict[str, torch.Tensor]  # every collated stream, input or target: [B, T, dim]
    frame_lengths: Dict[str, torch.Tensor]  # [B] per stream

    @classmethod
    def of(cls, batch: Dict[str, Any]) -> "UtteranceBatch":
        net_input = batch["net_input"]
        return cls(batch["id"], net_input["src_tokens"], {**net_input["frames"], **batch["frame_targets"]},
                   {**net_input["frame_lengths"], **batch["frame_target_lengths"]})


def _pad_frames(frames: List[torch.Tensor], dim: int):
    lengths = torch.tensor([len(f) for f in frames], dtype=torch.long)
    out = torch.zeros(len(frames), int(lengths.max()), dim)
    for row, f in enumerate(frames):
        out[row, : len(f)] = f
    return out, lengths
