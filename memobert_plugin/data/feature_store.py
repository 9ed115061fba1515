"""Memory-mapped per-utterance frame features, in the style of HuBERT's feature dumps.

For a split and a stream (``visual``, ``visual_fer``, ``acoustic``) the store is two files::

    {split}.{stream}.npy   float16 [total_frames, dim], all utterances' frames concatenated
    {split}.{stream}.len   one frame count per line, in utterance order

Reads slice a memory map, so a corpus of any size costs the RAM of one batch.
Writes stream to disk and become visible only by an atomic rename at ``close()``.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

import numpy as np

__all__ = ["FeatureStore", "FeatureStoreWriter", "NonFiniteFeatures", "feature_paths", "npy_shape", "STORE_DTYPE"]

STORE_DTYPE = np.float16
_COPY_CHUNK_BYTES = 1 << 22


def feature_paths(data_dir: str, split: str, stream: str) -> tuple[str, str]:
    """The ``.npy`` and ``.len`` paths of one split's stream."""
    prefix = os.path.join(data_dir, f"{split}.{stream}")
    return prefix + ".npy", prefix + ".len"


def _read_lengths(path: str) -> np.ndarray:
    lengths = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text.isdigit():
                raise ValueError(f"{path}:{line_no}: expected a frame count, got {text!r}")
            lengths.append(int(text))
    return np.asarray(lengths, dtype=np.int64)


def npy_shape(path: str) -> tuple:
    """The shape a feature ``.npy`` file's header declares, checked against the file (numpy's errors name no file)."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
        except (ValueError, EOFError, SyntaxError):
            raise ValueError(f"{path}: not a .npy feature file (no valid numpy header); rerun memobert-prepare write") from None
        header_end = handle.tell()
    if dtype.hasobject or fortran:
        raise ValueError(f"{path}: holds {'Python objects' if dtype.hasobject else 'a Fortran-order array'}, "
                         "not frame features; rerun memobert-prepare write")
    expected = header_end + int(np.prod(shape)) * dtype.itemsize
    size = os.path.getsize(path)
    if size != expected:
        raise ValueError(f"{path}: {size} bytes but its header promises {expected} ({shape} {dtype}): "
                         "the file was cut short or altered; rerun memobert-prepare write")
    return shape


def _map_frames(path: str) -> np.ndarray:
    shape = npy_shape(path)
    if int(np.prod(shape)) == 0:  # nothing to map (an empty split, or no frames at all)
        return np.load(path)
    return np.load(path, mmap_mode="r")


class FeatureStore:
    """Read access to one split's stream: ``store[i]`` is utterance i's ``[T, dim]`` frames."""

    def __init__(self, data_dir: str, split: str, stream: str):
        self.npy_path, self.len_path = feature_paths(data_dir, split, stream)
        self.stream = stream
        self.lengths = _read_lengths(self.len_path)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.frames = _map_frames(self.npy_path)
        if self.frames.ndim != 2:
            raise ValueError(f"{self.npy_path}: expected a 2-d frame array, got shape {self.frames.shape}")
        if self.frames.shape[0] != self.offsets[-1]:
            raise ValueError(
                f"{self.npy_path} has {self.frames.shape[0]} frames but {self.len_path} "
                f"sums to {self.offsets[-1]}: the two files are from different runs"
            )

    @classmethod
    def open_if_present(cls, data_dir: str, split: str, stream: str) -> Optional["FeatureStore"]:
        """The store, or None when the split has no such stream (an absent modality)."""
        npy_path, len_path = feature_paths(data_dir, split, stream)
        present = [os.path.exists(p) for p in (npy_path, len_path)]
        if not any(present):
            return None
        if not all(present):
            missing = npy_path if not present[0] else len_path
            raise FileNotFoundError(f"{missing} is missing while its companion file exists")
        return cls(data_dir, split, stream)

    @property
    def dim(self) -> int:
        return int(self.frames.shape[1])

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> np.ndarray:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.frames[start:end]


class NonFiniteFeatures(ValueError):
    """Frames hold NaN or Inf, or values that overflow float16 (a caller may skip the item instead of failing)."""


class FeatureStoreWriter:
    """Streams utterances' frames into a store; nothing is visible until ``close()``."""

    def __init__(self, data_dir: str, split: str, stream: str, dim: int):
        self.npy_path, self.len_path = feature_paths(data_dir, split, stream)
        self.dim = dim
        os.makedirs(data_dir, exist_ok=True)
        self._raw_path = self.npy_path + ".partial"
        self._raw = open(self._raw_path, "wb")
        self._lengths: list[int] = []

    def cast(self, frames: np.ndarray, item: str = "?") -> np.ndarray:
        """``frames`` as stored (float16; no copy if they already are), or :class:`NonFiniteFeatures`."""
        with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
            stored = np.asarray(frames).astype(STORE_DTYPE, copy=False)
        if not np.isfinite(stored).all():
            raise NonFiniteFeatures(
                f"{item}: non-finite feature values (NaN/Inf, or beyond float16's range) for {self.npy_path}"
            )
        return stored

    def append(self, frames: np.ndarray, item: str = "?") -> None:
        """Add one utterance's ``[T, dim]`` frames (T may be 0); ``item`` names it in errors."""
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] != self.dim:
            raise ValueError(
                f"{item}: {self.npy_path} expects [frames, {self.dim}] features, got shape {frames.shape}"
            )
        stored = self.cast(frames, item)
        self._raw.write(np.ascontiguousarray(stored).tobytes())
        self._lengths.append(int(frames.shape[0]))

    def close(self) -> None:
        """Write the ``.npy`` header and lengths, then rename both into place."""
        self._raw.close()
        total = sum(self._lengths)
        tmp_npy = self.npy_path + ".tmp"
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(STORE_DTYPE)), "fortran_order": False,
                  "shape": (total, self.dim)}
        # plain buffered reads and writes: memory-mapping both files would keep every page of them in RSS
        with open(self._raw_path, "rb") as raw, open(tmp_npy, "wb") as out:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, _COPY_CHUNK_BYTES)
        tmp_len = self.len_path + ".tmp"
        with open(tmp_len, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{n}\n" for n in self._lengths))
        os.replace(tmp_npy, self.npy_path)
        os.replace(tmp_len, self.len_path)
        os.remove(self._raw_path)

    def abort(self) -> None:
        """Drop what was written (the store's previous files, if any, stay)."""
        self._raw.close()
        if os.path.exists(self._raw_path):
            os.remove(self._raw_path)

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

