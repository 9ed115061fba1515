"""Output stage: the finished shards of every stage -> the data dir the memobert tasks read.

Writes ``dict.txt``, ``{split}.bin/.idx``, ``{split}.{stream}.npy/.len`` for each stream
whose stage ran, ``{split}.meta.tsv`` (id, speaker, session, label, and subset if the manifest has it), and updates
``report.tsv`` (every problem of every stage and what was done about it) and
``dataset.json`` (counts, dims, extractors, checksums). An utterance is dropped when it
failed a required stage (by default only ``text``: empty transcripts) or has a label outside
the label set; otherwise it is kept and a failed modality is left empty for it (0 frames),
which the tasks accept. A warning (clipped or truncated media) keeps what was extracted.
Input streams are stored standardised per dimension (:mod:`.feature_stats`).
Metadata come from the current manifest entries, so editing a label, speaker or session only
needs this step. Files are built in the work dir and moved into the data dir together at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter, defaultdict
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from tqdm import tqdm

from memobert_plugin.data.feature_store import FeatureStore, FeatureStoreWriter
from memobert_plugin.data.utterance_meta import META_COLUMNS, SUBSET_COLUMN
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.streams import frame_streams, input_streams
from memobert_plugin.prepare.binarize import TextBinarizer, save_dictionary
from memobert_plugin.prepare.feature_stats import AUTO, resolve_source, stale_splits, standardize_split
from memobert_plugin.files import atomic_open, read_json, sha256_file, write_json
from memobert_plugin.prepare.manifest import PAPER_LABELS
from memobert_plugin.prepare.report import ERROR, Problem, clean_field, read_problems
from memobert_plugin.prepare.shards import ShardPlan, StageIncomplete, stage_record
from memobert_plugin.prepare.stages.text import Tokenizer, read_tokens

__all__ = ["MODALITY_STAGES", "REPORT_COLUMNS", "META_COLUMNS", "LABEL_STAGE", "write_output"]

logger = logging.getLogger(__name__)

#: stages whose failure an utterance may survive, and the streams they write
MODALITY_STAGES = ("text", "acoustic", "visual")
LABEL_STAGE = "label"
REPORT_COLUMNS = ("split", "id", "line", "stage", "reason", "action")
DATASET_FORMAT = "memobert-data/1"


def _install_dictionary(vocab: BertVocabulary, out_dir: str) -> str:
    """Write dict.txt, or check that the one there (from another split) is the same vocabulary."""
    path = os.path.join(out_dir, "dict.txt")
    if os.path.isfile(path):
        existing = BertVocabulary.load(path)
        if existing.symbols != vocab.symbols:
            raise ValueError(
                f"{path} holds another vocabulary ({len(existing)} tokens) than {vocab.source} ({len(vocab)}); "
                "every split of a data dir must use the same one"
            )
        return path
    return save_dictionary(vocab, out_dir)


def _merge_report(out_dir: str, split: str, new_rows_path: str) -> None:
    """Replace this split's rows in report.tsv, keeping the other splits' rows."""
    path = os.path.join(out_dir, "report.tsv")
    with atomic_open(path) as out:
        out.write("\t".join(REPORT_COLUMNS) + "\n")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as old:
                next(old, None)
                out.writelines(line for line in old if line.split("\t", 1)[0] != split)
        with open(new_rows_path, encoding="utf-8") as new:
            shutil.copyfileobj(new, out)


def _check_dims(dataset: dict, streams: Dict[str, int], split: str) -> None:
    for stream, dim in streams.items():
        known = dataset.get("dims", {}).get(stream)
        if known is not None and known != dim:
            other = [s for s, info in dataset.get("splits", {}).items() if stream in info.get("frames", {})]
            raise ValueError(
                f"split {split!r}: {stream} features are {dim}-d but the data dir's other splits {other} have "
                f"{known}-d; extract every split with the same model"
            )


def _records(plan: ShardPlan, require: Sequence[str]) -> Dict[str, dict]:
    records = {}
    for stage in MODALITY_STAGES:
        record = stage_record(plan, stage)
        if record is None and (stage == "text" or stage in require):
            raise StageIncomplete(f"the {stage} stage has not run for {plan.manifest}; run it before 'write'")
        if record is not None:
            records[stage] = record
    return records


def _action(problem: Problem, dropped: bool) -> str:
    if dropped:
        return "dropped"
    if not problem.is_error:
        return "kept"
    return "kept with empty text" if problem.stage == "text" else f"kept without {problem.stage}"


def _label_problem(utterance, labels: Optional[Sequence[str]]) -> Optional[Problem]:
    """A problem for a label outside ``labels`` (None: any label goes; an empty label always does)."""
    if labels is None or not utterance.label or utterance.label in labels:
        return None
    return Problem(utterance.id, utterance.line, LABEL_STAGE,
                   f"label {utterance.label!r} is not one of {','.join(labels)} (--labels); map it to one of them "
                   "in the manifest, or pass --labels with your label set (or none)", ERROR)


def _utterances(plan: ShardPlan, records: Dict[str, dict]) -> Iterator[tuple]:
    """``(utterance, pieces, frames per stream, problems)`` for every entry, one shard in memory at a time."""
    for shard in range(plan.num_shards):
        name = f"{shard:05d}"
        problems: Dict[str, List[Problem]] = defaultdict(list)
        for stage in records:
            for problem in read_problems(os.path.join(plan.stage_dir(stage), name + ".problems.tsv")):
                problems[problem.id].append(problem)
        tokens = read_tokens(os.path.join(plan.stage_dir("text"), name))
        stores = {s: FeatureStore(plan.stage_dir(stage), name, s) for stage, r in records.items() for s in r["streams"]}
        for index, utterance in enumerate(plan.read_entries(shard)):
            frames = {s: store[index] for s, store in stores.items()}
            yield utterance, tokens[index].split(), frames, problems.get(utterance.id, [])
        del stores  # unmap the shard's features before the next


class _SplitFiles:
    """The split's text, streams and meta rows, built under ``staging`` and moved into place together."""

    def __init__(self, staging: str, split: str, vocab: BertVocabulary, streams: Dict[str, int],
                 meta_columns: Sequence[str]):
        os.makedirs(staging, exist_ok=True)
        self.staging, self.split, self.vocab, self.meta_columns = staging, split, vocab, meta_columns
        self.binarizer = TextBinarizer(vocab, os.path.join(staging, split))
        self.writers = {s: FeatureStoreWriter(staging, split, s, d) for s, d in streams.items()}
        self.meta = open(os.path.join(staging, f"{split}.meta.tsv"), "w", encoding="utf-8")
        self.meta.write("\t".join(self.meta_columns) + "\n")
        self.count, self.unknown = 0, 0

    def add(self, utterance, pieces: List[str], frames: Dict[str, object]) -> None:
        self.unknown += pieces.count(self.vocab.unk_word)
        self.binarizer.add(pieces)
        for stream, writer in self.writers.items():
            writer.append(frames[stream], item=utterance.id)
        self.meta.write("\t".join(clean_field(getattr(utterance, c)) for c in self.meta_columns) + "\n")
        self.count += 1

    def finish(self) -> None:
        """Complete every file (still under ``staging``)."""
        self.binarizer.close()
        for writer in self.writers.values():
            writer.close()
        self.meta.close()

    def move_to(self, out_dir: str) -> List[str]:
        """Move the finished files into ``out_dir``; return their names."""
        names = [f"{self.split}.bin", f"{self.split}.idx", f"{self.split}.meta.tsv"]
        names += [f"{self.split}.{s}.{ext}" for s in self.writers for ext in ("npy", "len")]
        for name in names:
            os.replace(os.path.join(self.staging, name), os.path.join(out_dir, name))
        for stream in {s.name for s in frame_streams()} - set(self.writers):  # a modality left out this time
            for ext in ("npy", "len"):
                stale = os.path.join(out_dir, f"{self.split}.{stream}.{ext}")
                if os.path.exists(stale):
                    os.remove(stale)
        return names

    @property
    def unknown_pieces(self) -> int:
        """[UNK] pieces, and pieces missing from the vocabulary (binarized as [UNK])."""
        return self.unknown + self.binarizer.unknown


def write_output(plan: ShardPlan, out_dir: str, split: str, require: Iterable[str] = ("text",),
                 labels: Optional[Sequence[str]] = PAPER_LABELS, feature_stats: str = AUTO) -> dict:
    """Assemble the split's data files from finished stages; return its entry in dataset.json.

    Utterances labelled outside ``labels`` (None: no check) are dropped, each with a report row.
    Input streams are standardised with the statistics ``feature_stats`` names (:func:`resolve_source`).
    """
    require = tuple(require)
    invalid = [s for s in require if s not in MODALITY_STAGES]
    if invalid:
        raise ValueError(f"cannot require {invalid}; choose from {MODALITY_STAGES}")
    records = _records(plan, require)
    text = records["text"]["config"]
    vocab = Tokenizer(text["tokenizer"], text["path"]).vocab
    streams = {s: d for r in records.values() for s, d in r["streams"].items()}
    dataset_path = os.path.join(out_dir, "dataset.json")
    dataset = read_json(dataset_path) if os.path.isfile(dataset_path) else {"format": DATASET_FORMAT}
    _check_dims(dataset, streams, split)
    source = resolve_source(feature_stats, split, dataset)  # a bad source stops before any work
    os.makedirs(out_dir, exist_ok=True)
    _install_dictionary(vocab, out_dir)

    # the corpus's fixed split is carried where the manifest gives one
    meta_columns = META_COLUMNS + ((SUBSET_COLUMN,) if SUBSET_COLUMN in plan.columns else ())
    files = _SplitFiles(os.path.join(plan.work_dir, "output"), split, vocab, streams, meta_columns)
    report_path = os.path.join(files.staging, "report.rows")
    rejected = read_problems(plan.problems_path)
    dropped, kept_without, bad_labels, warned = len(rejected), defaultdict(int), Counter(), Counter()
    with open(report_path, "w", encoding="utf-8") as report:

        def report_row(problem: Problem, action: str) -> None:
            cells = (split, problem.id, problem.line, problem.stage, problem.reason, action)
            report.write("\t".join(clean_field(c) for c in cells) + "\n")

        for problem in rejected:
            report_row(problem, "dropped")
        for utterance, pieces, frames, failed in tqdm(_utterances(plan, records), total=plan.num_entries,
                                                      desc="write", unit="utt", dynamic_ncols=True):
            label_problem = _label_problem(utterance, labels)
            if label_problem:
                failed = [*failed, label_problem]
                bad_labels[utterance.label] += 1
            drop = label_problem is not None or any(p.stage in require and p.is_error for p in failed)
            for problem in failed:
                report_row(problem, _action(problem, drop))
                kept_without[problem.stage] += not drop and problem.is_error
                warned[problem.stage] += not drop and not problem.is_error
            if drop:
                dropped += 1
            else:
                files.add(utterance, pieces, frames)
    if bad_labels:
        logger.warning("%s: %d utterances dropped for labels outside %s (--labels): %s; see report.tsv", split,
                       sum(bad_labels.values()), ",".join(labels),
                       ", ".join(f"{label!r} x{n}" for label, n in bad_labels.most_common()))
    files.finish()
    inputs = {s.name for s in input_streams()}
    stage_streams = {stage: [s for s in r["streams"] if s in inputs] for stage, r in records.items()}
    standardization = standardize_split(files.staging, split, {k: v for k, v in stage_streams.items() if v},
                                        {stage: r["config"] for stage, r in records.items()}, source)
    names = files.move_to(out_dir)
    _merge_report(out_dir, split, report_path)
    os.remove(report_path)

    entry = {
        "manifest": plan.manifest,
        "manifest_sha256": plan.manifest_sha256,
        "utterances": files.count,
        "dropped": dropped,
        "kept_without": {stage: n for stage, n in kept_without.items() if n},
        "warnings": {stage: n for stage, n in warned.items() if n},
        "required": list(require),
        "labels": None if labels is None else list(labels),
        "bad_labels": dict(bad_labels),
        "unknown_tokens": files.unknown_pieces,
        "frames": {s: int(FeatureStore(out_dir, split, s).lengths.sum()) for s in streams},
        "extractors": {stage: {**r["config"], **({"standardization": standardization[stage]}
                                                 if stage in standardization else {})}
                       for stage, r in records.items()},
    }
    stale = stale_splits(dataset, split, standardization)
    if stale:
        logger.warning("%s: split(s) %s were standardised with earlier statistics of %s: rewrite them "
                       "(memobert-prepare write --split ...; their stages are done)", split, ", ".join(stale), split)
    dataset.setdefault("dims", {}).update(streams)
    dataset.setdefault("splits", {})[split] = entry
    checksums = dataset.setdefault("checksums", {})
    for name in [name for name in checksums if name.startswith(f"{split}.")]:
        del checksums[name]
    for name in ["dict.txt", *names]:
        checksums[name] = sha256_file(os.path.join(out_dir, name))
    write_json(dataset_path, dataset)
    return entry
