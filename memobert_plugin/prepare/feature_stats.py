"""Per-dimension standardisation of the stored input streams, from the training data's statistics.

Raw extractor outputs live on scales that differ by orders of magnitude (eGeMAPS: formants
in Hz beside ratios near 0), and the reconstruction objectives (``span_mafr``,
``span_mvfr``) assume comparable scales. So the ``write`` step stores every *input* stream
(``acoustic``, ``visual``, any stream an extension registers; never a target stream such as
``visual_fer``, whose rows are probabilities) as ``(x - mean) / std`` per dimension, in the
stores' float16, with the mean and std of one split: by default the first split written
into the data dir (write the training split first), or another data dir's (a pretraining
corpus's), or none (``--feature-stats``). The statistics are recorded in each split's
extractor settings in ``dataset.json`` (``extractors.STAGE.standardization``), so bundles
carry them and prediction applies :func:`standardize_frames` to what the extractors give.

Statistics are computed over the staged store in chunks, each chunk's mean and squared
deviations in float64 merged by Chan et al.'s parallel update (Welford's for chunks): no
cancellation however many frames. A dimension whose spread is below float16's resolution at
its mean (or below :data:`MIN_STD`) is only centred.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from memobert_plugin.data.feature_store import STORE_DTYPE, FeatureStore, feature_paths

__all__ = ["StreamStats", "compute_stats", "standardize_store", "standardize_frames", "stats_of", "MIN_STD", "LIMIT"]

logger = logging.getLogger(__name__)

#: below this std (or float16's relative resolution times |mean|) a dimension is treated as constant
MIN_STD = 1e-4
_FLOAT16_RESOLUTION = 2.0 ** -10
#: standardised values are clipped here (a frame 1000 std away from the training mean is not a feature)
LIMIT = 1000.0
_CHUNK_ROWS = 1 << 16


@dataclass
class StreamStats:
    """One stream's per-dimension statistics: ``count`` frames, ``mean``, and the ``std`` divided by.

    ``constant`` lists the dimensions only centred (their std is recorded as 1).
    """

    count: int
    mean: List[float]
    std: List[float]
    constant: List[int]

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` (read as stored: float16 first) standardised, clipped to ±:data:`LIMIT`, in the store dtype."""
        stored = np.asarray(frames).astype(STORE_DTYPE, copy=False).astype(np.float32)
        centred = (stored - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.clip(centred, -LIMIT, LIMIT).astype(STORE_DTYPE)

    def to_json(self) -> dict:
        return {"count": self.count, "mean": self.mean, "std": self.std, "constant": self.constant}

    @classmethod
    def from_json(cls, record: dict) -> "StreamStats":
        return cls(int(record["count"]), list(record["mean"]), list(record["std"]), list(record.get("constant", [])))


def _chunks(store: FeatureStore) -> Iterable[np.ndarray]:
    for start in range(0, len(store.frames), _CHUNK_ROWS):
        yield np.asarray(store.frames[start:start + _CHUNK_ROWS], dtype=np.float64)


def compute_stats(store: FeatureStore) -> StreamStats:
    """Mean and std per dimension of every frame of ``store``, merged chunk by chunk in float64."""
    count, mean, m2 = 0, np.zeros(store.dim), np.zeros(store.dim)
    for chunk in _chunks(store):
        n = len(chunk)
        chunk_mean = chunk.mean(axis=0)
        chunk_m2 = ((chunk - chunk_mean) ** 2).sum(axis=0)
        delta = chunk_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + chunk_m2 + delta ** 2 * (count * n / total)
        count = total
    std = np.sqrt(m2 / count) if count else np.ones(store.dim)
    constant = std < np.maximum(MIN_STD, _FLOAT16_RESOLUTION * np.abs(mean))
    std[constant] = 1.0
    return StreamStats(count, mean.tolist(), std.tolist(), np.flatnonzero(constant).tolist())


def standardize_store(data_dir: str, split: str, stream: str, stats: StreamStats) -> int:
    """Rewrite ``{split}.{stream}.npy`` under ``data_dir`` standardised (chunk by chunk); return the values clipped."""
    store = FeatureStore(data_dir, split, stream)
    if len(stats.mean) != store.dim:
        raise ValueError(f"{store.npy_path}: {store.dim}-d features, but the {stream} statistics are "
                         f"{len(stats.mean)}-d; take them from a split or data dir with the same extractor")
    npy_path = feature_paths(data_dir, split, stream)[0]
    tmp_path = npy_path + ".standardized"
    clipped = 0
    with open(npy_path, "rb") as source, open(tmp_path, "wb") as out:
        version = np.lib.format.read_magic(source)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(source)
        header_size = source.tell()
        source.seek(0)
        out.write(source.read(header_size))  # the same shape and dtype: the header is kept
        for start in range(0, len(store.frames), _CHUNK_ROWS):
            raw = store.frames[start:start + _CHUNK_ROWS]
            standard = stats.apply(raw)
            clipped += int((np.abs(standard) >= LIMIT).sum())
            out.write(np.ascontiguousarray(standard).tobytes())
    del store
    os.replace(tmp_path, npy_path)
    return clipped


def stats_of(extractor: Optional[dict], stream: str) -> Optional[StreamStats]:
    """The statistics a stage's recorded settings hold for ``stream`` (None: stored as extracted)."""
    record = (extractor or {}).get("standardization") or {}
    stream_stats = record.get("streams", {}).get(stream)
    return StreamStats.from_json(stream_stats) if stream_stats else None


def standardize_frames(frames: np.ndarray, stream: str, extractor: Optional[dict]) -> np.ndarray:
    """An extractor's ``frames`` of ``stream`` as the data dir stores them (prediction's path to the model)."""
    stats = stats_of(extractor, stream)
    return np.asarray(frames).astype(STORE_DTYPE) if stats is None else stats.apply(frames)


def describe(stats: Dict[str, StreamStats]) -> str:
    """A log line's worth: frames counted and dimensions only centred, per stream."""
    return ", ".join(f"{s} ({st.count} frames" + (f", {len(st.constant)} constant dims centred only)" if st.constant
                                                   else ")") for s, st in stats.items())


#: ``--feature-stats`` values besides a split name or a data dir
AUTO, NONE = "auto", "none"
#: settings that decide what a stream's dimensions mean: statistics taken from another data dir must agree on them
_DEFINING_SETTINGS = ("extractor", "sha256", "feature_set", "layer", "pool")


def _records_of(entry: dict) -> Dict[str, dict]:
    """``stage -> standardization record`` of one split's entry in dataset.json."""
    return {stage: cfg["standardization"] for stage, cfg in (entry.get("extractors") or {}).items()
            if "standardization" in cfg}


def _recorded(dataset: dict, skip: str = "") -> Tuple[Optional[dict], Dict[str, dict]]:
    """The entry and records of the first split (other than ``skip``) written with statistics (or with none)."""
    for name, entry in dataset.get("splits", {}).items():
        if name != skip and _records_of(entry):
            return entry, _records_of(entry)
    return None, {}


def _is_data_dir(choice: str) -> bool:
    return os.sep in choice or choice.endswith("dataset.json")


@dataclass
class StatsSource:
    """Where a split's statistics come from: computed from the split itself (``records`` None), taken from
    recorded ones (``records``: stage -> record), or none (``origin`` None)."""

    origin: Optional[dict]
    records: Optional[Dict[str, dict]] = None
    settings: Optional[Dict[str, dict]] = None  # the source data dir's extractor settings (another data dir)

    @property
    def computes(self) -> bool:
        return self.origin is not None and self.records is None


def resolve_source(choice: str, split: str, dataset: dict) -> StatsSource:
    """``--feature-stats CHOICE`` for writing ``split`` into the data dir whose dataset.json is ``dataset``.

    ``auto``: the statistics the data dir's other splits were written with, else this split's own (the first
    split written defines them); a split name: that split's (its own when it is ``split``); a data dir (a path
    with a ``/``): that data dir's; ``none``: stored as extracted.
    """
    if choice == NONE:
        return StatsSource(None)
    if _is_data_dir(choice):
        from memobert_plugin.files import read_json

        path = choice if choice.endswith("dataset.json") else os.path.join(choice, "dataset.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--feature-stats {choice}: no {path}; give a data dir memobert-prepare wrote")
        other = read_json(path)
        entry, records = _recorded(other)
        if not records or not any(r.get("streams") for r in records.values()):
            raise ValueError(f"--feature-stats {choice}: {path} records no feature statistics (written with "
                             "--feature-stats none, or by an older memobert); rewrite it or choose another source")
        first = next(iter(records.values()))
        origin = {"data_dir": os.path.abspath(os.path.dirname(path)), "split": first["from"]["split"]}
        return StatsSource(origin, {stage: {**r, "from": origin} for stage, r in records.items()}, entry["extractors"])
    own = {"split": split}
    if choice == split:
        return StatsSource(own)
    if choice == AUTO:
        records = _recorded(dataset, skip=split)[1]
        defined_here = records and next(iter(records.values())).get("from") == own
        return StatsSource(own) if not records or defined_here else StatsSource(records[next(iter(records))]["from"],
                                                                                 records)
    entry = dataset.get("splits", {}).get(choice)
    records = _records_of(entry) if entry else {}
    if not records:
        raise ValueError(f"--feature-stats {choice}: the data dir has no split {choice!r} written with statistics; "
                         f"write {choice} first (memobert-prepare write --split {choice}), or choose another source (a data "
                         f"dir is a path with a '/', e.g. ./{choice})")
    return StatsSource(next(iter(records.values()))["from"], records)


def _check_settings(stage: str, config: dict, source: StatsSource) -> None:
    """Statistics from another data dir fit only features from the same extractor."""
    theirs = (source.settings or {}).get(stage)
    if theirs is None:
        raise ValueError(f"--feature-stats {source.origin['data_dir']}: that data dir has no {stage} features, so no "
                         f"statistics for this split's")
    differs = [k for k in _DEFINING_SETTINGS if config.get(k) != theirs.get(k)]
    if differs:
        detail = "; ".join(f"{k}: {config.get(k)!r} here, {theirs.get(k)!r} there" for k in differs)
        raise ValueError(f"--feature-stats {source.origin['data_dir']}: its {stage} features come from another "
                         f"extractor ({detail}); prepare both with the same one, or use this data dir's own statistics")


def standardize_split(staging: str, split: str, stage_streams: Dict[str, List[str]], configs: Dict[str, dict],
                      source: StatsSource) -> Dict[str, dict]:
    """Standardise the staged input streams of each stage; return ``stage -> standardization record``.

    ``stage_streams``: each stage's input streams; ``configs``: each stage's settings (checked against another
    data dir's).
    """
    out = {}
    for stage, streams in stage_streams.items():
        if source.origin is None:
            out[stage] = {"from": None, "streams": {}}
            continue
        if source.computes:
            stats = {s: compute_stats(FeatureStore(staging, split, s)) for s in streams}
        else:
            if source.settings is not None:
                _check_settings(stage, configs[stage], source)
            recorded = source.records.get(stage, {}).get("streams") or {}
            missing = [s for s in streams if s not in recorded]
            if missing:
                raise ValueError(f"split {split!r}: the statistics of {source.origin} hold no {', '.join(missing)} "
                                 f"features; write that split with them first, or choose --feature-stats")
            stats = {s: StreamStats.from_json(recorded[s]) for s in streams}
        for stream, stream_stats in stats.items():
            clipped = standardize_store(staging, split, stream, stream_stats)
            if clipped:
                logger.warning("%s: %d %s values lay over %g std from the mean of %s and were clipped", split,
                               clipped, stream, LIMIT, source.origin)
        out[stage] = {"from": source.origin, "streams": {s: st.to_json() for s, st in stats.items()}}
        logger.info("%s: %s standardised with the statistics of %s: %s", split, stage, source.origin, describe(stats))
    return out


def stale_splits(dataset: dict, split: str, records: Dict[str, dict]) -> List[str]:
    """The data dir's other splits standardised with earlier statistics of ``split`` than ``records``."""
    stale = []
    for name, entry in dataset.get("splits", {}).items():
        theirs = _records_of(entry)
        if name != split and theirs and next(iter(theirs.values())).get("from") == {"split": split} \
                and theirs != records:
            stale.append(name)
    return stale
