"""Sharded, resumable, optionally parallel stages.

The manifest is split once into shards of ``shard_size`` utterances (``work/{split}/entries``).
A stage processes shard after shard; each shard's outputs are renamed into place and then a
``.done`` marker records a fingerprint of the stage's settings and of the shard's inputs: the
entry fields the stage reads (never speaker, session or label: ``write`` takes those from the
entries) and the content (SHA-256) of each media file it reads. Each file is hashed once and its
hash remembered under its stat (size, mtime, inode change time): a recording replaced by another
of the same size and mtime is hashed again and redone, an unchanged one is not read.
A killed run, started again, skips every shard whose marker matches and redoes the rest;
changing the manifest's inputs, a media file or a setting (e.g. another checkpoint) redoes the
shards it affects, and a metadata-only edit redoes none. Within a redone shard, a frame stage
copies the outputs of the utterances whose inputs did not change (the marker keeps each
utterance's input digest), so fixing one file re-extracts one utterance.
Workers are processes that each load the models once and take whole shards. Every process
runs the extractors with the same number of torch threads (``threads``), and each utterance is
computed on its own, so the output is byte-identical for any number of workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import sys
from abc import ABC, abstractmethod
from collections import defaultdict
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar, Collection, Dict, Iterator, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from memobert_plugin.data.feature_store import STORE_DTYPE, FeatureStore, FeatureStoreWriter, NonFiniteFeatures
from memobert_plugin.files import DigestCache, atomic_open, file_identity, read_json, sha256_file, write_json
from memobert_plugin.prepare.manifest import META_FIELDS, Utterance, manifest_columns, read_manifest
from memobert_plugin.prepare.report import WARNING, ItemError, Problem, read_problems, write_problems

__all__ = [
    "DEFAULT_SHARD_SIZE", "ShardPlan", "make_plan", "disable_torchaudio", "Stage", "FrameStage", "run_stage", "stage_record", "StageIncomplete",
]

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
DEFAULT_SHARD_SIZE = 256
#: the work dir's cache of media hashes (see :class:`~memobert_plugin.files.DigestCache`)
MEDIA_DIGESTS = "media.sha256.json"


class StageIncomplete(RuntimeError):
    """A stage's outputs are missing, partial, or from another manifest."""


@dataclass
class ShardPlan:
    """Where a split's validated entries are, shard by shard."""

    work_dir: str
    manifest: str
    manifest_sha256: str
    columns: List[str]
    shard_size: int
    shard_sizes: List[int]

    @property
    def num_shards(self) -> int:
        return len(self.shard_sizes)

    @property
    def num_entries(self) -> int:
        return sum(self.shard_sizes)

    @property
    def problems_path(self) -> str:
        """Rows the manifest stage rejected."""
        return os.path.join(self.work_dir, "manifest.problems.tsv")

    def entries_path(self, shard: int) -> str:
        return os.path.join(self.work_dir, "entries", f"{shard:05d}.tsv")

    def read_entries(self, shard: int) -> List[Utterance]:
        with open(self.entries_path(shard), encoding="utf-8", newline="") as handle:
            return [Utterance.from_row(line.rstrip("\n").split("\t")) for line in handle]

    def stage_dir(self, stage: str) -> str:
        return os.path.join(self.work_dir, stage)

    def require_column(self, column: str, stage: str) -> None:
        if column not in self.columns:
            raise ValueError(f"{self.manifest}: the {stage} stage needs the column {column!r} in the header")


def make_plan(manifest: str, work_dir: str, shard_size: Optional[int] = None) -> ShardPlan:
    """Validate the manifest and write its shards, unless the same manifest is already planned.

    ``shard_size`` None keeps the existing plan's size (:data:`DEFAULT_SHARD_SIZE` for a new plan).
    """
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"shard size must be >= 1, got {shard_size}")
    columns = manifest_columns(manifest)
    plan_path = os.path.join(work_dir, "plan.json")
    digest = sha256_file(manifest)
    previous = ShardPlan(**read_json(plan_path)) if os.path.isfile(plan_path) else None
    if shard_size is None:
        shard_size = previous.shard_size if previous else DEFAULT_SHARD_SIZE
    if previous and previous.manifest_sha256 == digest and previous.shard_size == shard_size:
        return previous
    os.makedirs(os.path.join(work_dir, "entries"), exist_ok=True)
    sizes: List[int] = []
    problems: List[Problem] = []
    pending: List[Utterance] = []

    def flush() -> None:
        with atomic_open(os.path.join(work_dir, "entries", f"{len(sizes):05d}.tsv")) as out:
            out.write("".join("\t".join(u.to_row()) + "\n" for u in pending))
        sizes.append(len(pending))
        pending.clear()

    rows = read_manifest(manifest)
    for row in rows:
        if isinstance(row, Problem):
            problems.append(row)
            continue
        pending.append(row)
        if len(pending) == shard_size:
            flush()
    if pending:
        flush()
    plan = ShardPlan(work_dir, os.path.abspath(manifest), digest, columns, shard_size, sizes)
    write_problems(plan.problems_path, problems)
    write_json(plan_path, asdict(plan))
    logger.info("%s: %d utterances in %d shards, %d rows rejected", manifest, plan.num_entries, plan.num_shards,
                len(problems))
    return plan


class Stage(ABC):
    """One step from entries to per-shard outputs. Picklable: loaded models are not sent to workers."""

    name: ClassVar[str]
    #: whether ``--workers`` applies (False where starting worker processes costs more than the work)
    parallel: ClassVar[bool] = True
    #: the entry fields the outputs depend on (``id`` and ``line`` name the utterance in problem rows)
    inputs: ClassVar[Tuple[str, ...]] = tuple(f.name for f in fields(Utterance) if f.name not in META_FIELDS)
    #: the entry fields holding media paths whose files the outputs depend on
    media: ClassVar[Tuple[str, ...]] = ()

    def config(self) -> dict:
        """Every setting the outputs depend on (fingerprinted for resuming; shown in dataset.json)."""
        return {}

    def summary(self) -> dict:
        """:meth:`config` plus what loading the models revealed (dims, layers), for dataset.json."""
        return self.config()

    def setup(self) -> None:
        """Load models; called once in each process that runs shards."""

    def check_plan(self, plan: ShardPlan) -> None:
        """Raise before any work if the manifest lacks what the stage needs."""

    @abstractmethod
    def run_shard(self, entries: List[Utterance], prefix: str, advance: Progress,
                  reuse: Optional[Dict[int, int]] = None) -> List[Problem]:
        """Write the outputs of one shard under ``prefix`` (atomically); return its problems.

        ``reuse`` maps an entry's index to its index in the outputs now under ``prefix``, made with the
        same settings from the same inputs: a stage may copy those instead of recomputing them.
        """

    def __getstate__(self) -> dict:
        # loaded models (underscored attributes) are not shipped to workers: each loads its own
        return {k: None if k.startswith("_") else v for k, v in self.__dict__.items()}


class FrameStage(Stage):
    """A stage whose outputs are frame streams in the feature-store format.

    :meth:`extract` reports a degraded but kept result (media cut short or clipped) with :meth:`warn`.
    """

    _warnings: Optional[List[str]] = None

    @property
    @abstractmethod
    def streams(self) -> Dict[str, int]:
        """Stream name -> feature dim (known after ``setup``)."""

    @abstractmethod
    def extract(self, utterance: Utterance) -> Dict[str, np.ndarray]:
        """Frames per stream for one utterance; raises :class:`ItemError` when it cannot."""

    def warn(self, reason: str) -> None:
        """A report row (severity ``warning``) for the utterance being extracted; its frames are kept.

        Outside :meth:`run_shard` (extract called directly, e.g. for prediction) the reason is logged.
        """
        if self._warnings is None:
            logger.warning("%s: %s", self.name, reason)
        else:
            self._warnings.append(reason)

    def run_shard(self, entries: List[Utterance], prefix: str, advance: Progress,
                  reuse: Optional[Dict[int, int]] = None) -> List[Problem]:
        folder, shard = os.path.split(prefix)
        reuse = reuse or {}
        previous = {s: FeatureStore(folder, shard, s) for s in self.streams} if reuse else {}
        previous_problems: Dict[str, List[Problem]] = defaultdict(list)
        for problem in read_problems(prefix + ".problems.tsv") if reuse else []:
            previous_problems[problem.id].append(problem)
        # the new files are written under temporary names: the previous ones stay readable until close()
        writers = {s: FeatureStoreWriter(folder, shard, s, dim) for s, dim in self.streams.items()}
        problems = []
        try:
            for index, utterance in enumerate(entries):
                item = f"{utterance.id} (manifest line {utterance.line})"
                if index in reuse:
                    for stream, writer in writers.items():
                        writer.append(previous[stream][reuse[index]], item=item)
                    problems += previous_problems[utterance.id]
                    advance(1)
                    continue
                self._warnings = []
                try:
                    frames = self.extract(utterance)
                    try:  # every stream is checked before any is appended: the stores stay row-aligned
                        frames = {s: writer.cast(frames[s], item) for s, writer in writers.items()}
                    except NonFiniteFeatures:
                        raise ItemError("NaN or Inf in the features (or values beyond float16's range)") from None
                except ItemError as err:
                    problems.append(Problem(utterance.id, utterance.line, self.name, str(err)))
                    frames = {s: np.zeros((0, dim), dtype=STORE_DTYPE) for s, dim in self.streams.items()}
                else:
                    problems += [Problem(utterance.id, utterance.line, self.name, w, WARNING) for w in self._warnings]
                self._warnings = None
                for stream, writer in writers.items():
                    writer.append(frames[stream], item=item)
                advance(1)
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        for writer in writers.values():
            writer.close()
        return problems


def _settings(stage: Stage) -> str:
    """The stage's part of every shard fingerprint (computed once a run: config() may hash a large checkpoint)."""
    return json.dumps(stage.config(), sort_keys=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _utterance_inputs(plan: ShardPlan, shard: int, inputs: Tuple[str, ...], media: Tuple[str, ...],
                      identities: Dict[str, str], contents: DigestCache) -> List[str]:
    """Per entry of the shard: a digest of its ``inputs`` fields and of the identity of its ``media`` files.

    ``identities`` caches each path's identity for the run (one recording may serve many utterances);
    ``contents`` remembers media hashes across runs.
    """
    digests = []
    for utterance in plan.read_entries(shard):
        cells = [str(getattr(utterance, f)) for f in inputs]
        for path in (getattr(utterance, m) for m in media):
            if path and path not in identities:
                identities[path] = file_identity(path, contents)
            cells.append(identities.get(path, ""))
        digests.append(_sha256("\t".join(cells)))
    return digests


def _all_utterance_inputs(plan: ShardPlan, inputs: Tuple[str, ...], media: Tuple[str, ...],
                          shards: Optional[Collection[int]] = None) -> Dict[int, List[str]]:
    """:func:`_utterance_inputs` of ``shards`` (default: all); the media hashes are remembered in the work dir."""
    identities: Dict[str, str] = {}
    contents = DigestCache(os.path.join(plan.work_dir, MEDIA_DIGESTS))
    try:
        return {s: _utterance_inputs(plan, s, inputs, media, identities, contents)
                for s in (range(plan.num_shards) if shards is None else shards)}
    finally:
        contents.save()


def _shard_inputs(utterance_inputs: List[str]) -> str:
    return _sha256("\n".join(utterance_inputs))


@dataclass(frozen=True)
class _ShardJob:
    """One shard to (re)do: the fingerprint its marker will hold, and what lets it reuse unchanged utterances."""

    shard: int
    fingerprint: str
    settings: str  # digest of the stage's settings
    utterances: List[str]  # each entry's input digest


def _done_path(plan: ShardPlan, stage: str, shard: int) -> str:
    return os.path.join(plan.stage_dir(stage), f"{shard:05d}.done")


def _marker(plan: ShardPlan, stage: Stage, shard: int) -> dict:
    path = _done_path(plan, stage.name, shard)
    return read_json(path) if os.path.isfile(path) else {}


def _run_one(stage: Stage, plan: ShardPlan, job: _ShardJob, advance: Progress) -> int:
    """Run one shard and mark it done (with the fingerprint taken before the run, as :func:`run_stage` checked it).

    The utterances whose inputs the previous marker lists, under the same settings, are passed on for reuse.
    The marker goes first: a run killed part-way leaves outputs that no marker describes, and none are reused.
    """
    path = _done_path(plan, stage.name, job.shard)
    previous = _marker(plan, stage, job.shard)
    if previous:
        os.remove(path)
    reuse = {}
    if previous.get("settings") == job.settings:
        where = {digest: index for index, digest in enumerate(previous.get("utterances", []))}
        reuse = {index: where[digest] for index, digest in enumerate(job.utterances) if digest in where}
    prefix = os.path.join(plan.stage_dir(stage.name), f"{job.shard:05d}")
    problems = stage.run_shard(plan.read_entries(job.shard), prefix, advance, reuse)
    write_problems(prefix + ".problems.tsv", problems)
    write_json(path, {"fingerprint": job.fingerprint, "settings": job.settings, "utterances": job.utterances})
    return job.shard


# --- worker processes -------------------------------------------------------------------
_worker_stage: Optional[Stage] = None
_worker_progress: Optional[multiprocessing.Queue] = None


def disable_torchaudio() -> None:
    """Make ``import torchaudio`` fail cleanly in this (preparation) process.

    Preparation never uses torchaudio, but transformers imports it when installed, and a
    torchaudio built for another torch then breaks loading Hugging Face wav2vec 2.0 models.
    """
    sys.modules.setdefault("torchaudio", None)


def _set_threads(threads: int) -> int:
    """Give torch and OpenCV (when a stage loaded it) ``threads`` threads in this process; return torch's old count.

    Float results depend on the thread count (reductions are split differently), so every process
    that extracts uses the same count, whatever the number of workers.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)
    return previous


@contextlib.contextmanager
def _extractor_threads(threads: int) -> Iterator[None]:
    previous = _set_threads(threads)
    try:
        yield
    finally:
        _set_threads(previous)


def _init_worker(stage: Stage, progress: multiprocessing.Queue, threads: int) -> None:
    global _worker_stage, _worker_progress
    disable_torchaudio()
    stage.setup()
    _set_threads(threads)
    _worker_stage, _worker_progress = stage, progress


def _worker_run(plan: ShardPlan, job: _ShardJob) -> int:
    return _run_one(_worker_stage, plan, job, _worker_progress.put)


def _run_parallel(stage: Stage, plan: ShardPlan, todo: List[_ShardJob], workers: int, threads: int,
                  bar: tqdm) -> None:
    """Run the shards of ``todo`` in ``workers`` processes of ``threads`` threads."""
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools in a bad state
    progress = context.Queue()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(stage, progress, threads)) as pool:
        pending = {pool.submit(_worker_run, plan, job) for job in todo}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # re-raise a worker's error here
                while True:
                    try:
                        bar.update(progress.get_nowait())
                    except queue.Empty:
                        break
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_stage(stage: Stage, plan: ShardPlan, workers: int = 1, threads: int = 1,
              only: Optional[Collection[int]] = None) -> Optional[dict]:
    """Run ``stage`` on every unfinished shard of ``plan``; return its record (see :func:`stage_record`).

    ``workers`` processes (or this one) each run the extractors with ``threads`` torch threads.
    ``only``: just those shards (one task of a cluster array); no record then (None): a later run
    over the whole plan finds them done and writes it.
    """
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be >= 1, got {workers} and {threads}")
    stage.check_plan(plan)
    folder = plan.stage_dir(stage.name)
    os.makedirs(folder, exist_ok=True)
    complete = os.path.join(folder, "complete.json")
    if os.path.exists(complete):
        with contextlib.suppress(FileNotFoundError):  # array tasks may race to it
            os.remove(complete)  # the stage is being (re)run: its old record no longer holds
    stage.setup()  # in this process too: bad settings or checkpoints fail before any worker starts
    streams = dict(getattr(stage, "streams", {}))
    # the settings and each shard's fingerprint are computed once here, never in the workers: config() may
    # hash a large checkpoint, and workers receive the stage without its cached checksum (see __getstate__)
    # the extractors' float results depend on the thread count (not on the workers)
    settings = _sha256(_settings(stage) + (f"\nthreads={threads}" if stage.parallel else ""))
    # an array task (only) reads the media of its own shards
    utterance_inputs = _all_utterance_inputs(plan, stage.inputs, stage.media,
                                             None if only is None else [s for s in only if s < plan.num_shards])
    shard_inputs = {s: _shard_inputs(digests) for s, digests in utterance_inputs.items()}
    selected = [_ShardJob(s, _sha256(f"{settings}\n{shard_inputs[s]}"), settings, utterance_inputs[s])
                for s in sorted(utterance_inputs)]
    todo = [job for job in selected if _marker(plan, stage, job.shard).get("fingerprint") != job.fingerprint]
    skipped = len(selected) - len(todo)
    if skipped:
        logger.info("%s: %d of %d shards already done, resuming", stage.name, skipped, len(selected))
    total = sum(plan.shard_sizes[job.shard] for job in todo)
    with tqdm(total=total, desc=f"{stage.name}", unit="utt", dynamic_ncols=True) as bar:
        if stage.parallel and workers > 1 and len(todo) > 1:
            _run_parallel(stage, plan, todo, min(workers, len(todo)), threads, bar)
        elif todo:
            with _extractor_threads(threads) if stage.parallel else contextlib.nullcontext():
                for job in todo:
                    _run_one(stage, plan, job, bar.update)
    if only is not None:
        return None
    problems = sum(len(read_problems(os.path.join(folder, f"{s:05d}.problems.tsv"))) for s in range(plan.num_shards))
    inputs = {"fields": list(stage.inputs), "media": list(stage.media), "shards": list(shard_inputs.values())}
    record = {"inputs": inputs, "config": stage.summary(), "streams": streams, "problems": problems}
    if stage.parallel:
        record["threads"] = threads
    write_json(complete, record)
    return record


def stage_record(plan: ShardPlan, stage: str) -> Optional[dict]:
    """A finished stage's record; None if it never ran; :class:`StageIncomplete` if unfinished or stale."""
    folder = plan.stage_dir(stage)
    if not os.path.isdir(folder):
        return None
    complete = os.path.join(folder, "complete.json")
    leave_out = f"or delete {folder} to leave the {stage} stage out"
    if not os.path.isfile(complete):
        raise StageIncomplete(f"the {stage} stage did not finish for {plan.manifest}: run it again (it resumes), "
                              + leave_out)
    record = read_json(complete)
    inputs = record.get("inputs")
    if inputs is None:
        raise StageIncomplete(f"the {stage} stage's outputs for {plan.manifest} were made by an older memobert that "
                              "did not record its media files: run it again, " + leave_out)
    now = [_shard_inputs(d) for d in _all_utterance_inputs(plan, tuple(inputs["fields"]), tuple(inputs["media"])).values()]
    if now != inputs["shards"]:
        changed = [s for s in range(len(now)) if s >= len(inputs["shards"]) or now[s] != inputs["shards"][s]]
        what = ("the shard size changed" if len(now) != len(inputs["shards"]) else
                f"{len(changed)} of {len(now)} shards changed (first: {changed[0]:05d})")
        raise StageIncomplete(
            f"the {stage} stage's inputs changed since it ran on {plan.manifest} ({what}: manifest fields "
            f"{', '.join(inputs['fields'])} or the {' and '.join(inputs['media']) or 'media'} files): run it "
            f"again (only the changed shards are redone), " + leave_out)
    return record
