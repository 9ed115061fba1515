"""Emotion prediction from a ``memobert_emotion`` checkpoint or bundle: a Python API and ``memobert-predict``.

From media, with the extractors and settings the model's training data was prepared with
(``memobert-prepare``'s own stages, checked against the bundle's checksums)::

    from memobert_plugin.inference import EmotionPredictor, media_entry
    predictor = EmotionPredictor("model.bundle")            # see memobert_plugin.bundle
    entries = [media_entry("u1", text="i am so glad", audio="u1.wav", video="u1.mp4")]
    probs = predictor.predict_proba(predictor.extract(entries))

From features extracted elsewhere, as a data dir stores them (standardised with the statistics in the
training data's ``dataset.json``; ``prepare.feature_stats.standardize_frames`` turns raw extractor output
into that)::

    probs = predictor.predict_proba([Utterance(text="i am so glad", frames={"acoustic": np.load("u1.npy")})])

Any modality may be missing (no text, no faces, no voice). Frames longer than the
checkpoint's limits are truncated, as in training.
"""

import argparse
import contextlib
import csv
import dataclasses
import os
import pickle
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from fairseq.utils import apply_to_sample
from omegaconf import MissingMandatoryValue, OmegaConf
from tqdm import tqdm

from .bundle import DICT_FILE, MODEL_FILE, ExtractorSettings, is_bundle

from .prepare.feature_stats import standardize_frames
from .data.vocabulary import BertVocabulary
from .checkpoint_policy import load_memobert_checkpoint
from .predict_cli import main  # noqa: F401  the console script, also run as python -m memobert_plugin.inference
from .files import atomic_open
from .streams import input_streams
from .tasks.memobert_emotion import MemobertEmotionConfig, MemobertEmotionTask

__all__ = ["Utterance", "EmotionPredictor", "media_entry", "main"]


@dataclass
class Utterance:
    text: str = ""
    #: input stream (``visual``, ``acoustic``, ...) -> ``[frames, feature dim]``; a stream left out has no frames
    frames: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    id: str = ""
    tokens: Optional[List[int]] = None  # the text's vocabulary ids when already tokenised (used instead of text)
    problems: List[str] = dataclasses.field(default_factory=list)  # why a modality is missing


def media_entry(id: str, text: str = "", audio: str = "", video: str = "", start: Optional[float] = None,
                end: Optional[float] = None):
    """One utterance's media, as a row of a preparation manifest (paths as given)."""
    from .prepare.manifest import Utterance as ManifestUtterance

    return ManifestUtterance(id=id, text=text, audio=audio, video=video, start=start, end=end)


def _task_config(task_options: dict, checkpoint: str) -> MemobertEmotionConfig:
    """The checkpoint's task options over the task's defaults, type-checked before anything is built from them."""
    try:
        names = {f.name for f in dataclasses.fields(MemobertEmotionConfig)}
        default = OmegaConf.structured(MemobertEmotionConfig(seed=0))
        task_cfg = OmegaConf.merge(default, {k: v for k, v in task_options.items() if k in names})
        task_cfg.data  # noqa: B018  (a missing value raises here, not later)
        return task_cfg
    except (ValueError, KeyError, TypeError, AttributeError, MissingMandatoryValue) as err:
        raise ValueError(f"{checkpoint}: its config is not a memobert_emotion one ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]})") from None


class EmotionPredictor:
    """Loads the checkpoint (weights-only) or bundle and scores utterances with its head.

    The model is loaded by fairseq (``load_model_ensemble_and_task``) into the checkpoint's
    ``memobert_emotion`` task, built without its corpus; utterances become that task's dataset
    (``build_dataset_for_inference``). ``extractors``: the training data's extractor settings
    (default: the bundle's, or the ``dataset.json`` of the checkpoint's data dir); ``checkpoints``
    replaces the recorded path of a stage's extractor model (``{"acoustic": wav2vec2, "visual": fer}``),
    which must have the recorded checksum.
    """

    def __init__(self, checkpoint: str, vocab_path: Optional[str] = None, device: str = "cpu",
                 extractors: Optional[ExtractorSettings] = None, checkpoints: Optional[Dict[str, str]] = None):
        from fairseq import checkpoint_utils

        if is_bundle(checkpoint):
            extractors = extractors or ExtractorSettings.from_bundle(checkpoint)
            vocab_path = vocab_path or os.path.join(checkpoint, DICT_FILE)
            checkpoint = os.path.join(checkpoint, MODEL_FILE)
        # refusals (code, foreign configs, another task) before anything is built
        state = load_memobert_checkpoint(checkpoint, task="memobert_emotion")
        task_cfg = _task_config(state["cfg"]["task"], checkpoint)
        self._extractors, self._data_dir = extractors, task_cfg.data
        self._checkpoints, self._stages, self._tokenizer = dict(checkpoints or {}), None, None
        vocab_path = vocab_path or os.path.join(task_cfg.data, "dict.txt")
        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"{vocab_path}: the checkpoint's dictionary is not there; pass --vocab")
        self.vocab = BertVocabulary.load(vocab_path)
        self.task = MemobertEmotionTask(task_cfg, self.vocab)
        state["cfg"] = OmegaConf.create(state["cfg"])  # as fairseq's reader leaves it (checked above: plain data)
        try:  # the state read and checked above: a bundle's holds only the config and the weights
            (self.model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([checkpoint], task=self.task,
                                                                                state=state)
        except ValueError as err:  # a feature dim or tensor shape that does not fit: the message names which
            raise ValueError(f"{checkpoint}: {err}") from None
        self.model.to(device).eval()
        self.device = device

    @property
    def class_names(self) -> List[str]:
        return self.task.class_names

    @property
    def extractors(self) -> ExtractorSettings:
        if self._extractors is None:
            if not self._data_dir:
                raise ValueError("the checkpoint names no data dir: give a bundle, or the data dir (--data)")
            self._extractors = ExtractorSettings.from_data_dir(self._data_dir)
        return self._extractors

    def _media_stages(self) -> dict:
        """The training data's extractor stages, checked against the record and loaded once."""
        if self._stages is None:
            unknown = sorted(set(self._checkpoints) - set(self.extractors.media_stages))
            if unknown:
                raise ValueError(f"the model's data has no {' or '.join(unknown)} features, so no extractor "
                                 f"for them is needed")
            stages = {name: self.extractors.stage(name, self._checkpoints.get(name), self.device)
                      for name in self.extractors.media_stages}
            for stage in stages.values():
                stage.setup()
            self._tokenizer = self.extractors.tokenizer()
            self._stages = stages
        return self._stages

    def extract(self, entries: Sequence, progress: bool = False) -> List[Utterance]:
        """Features of preparation-manifest entries (:func:`media_entry`), from ``memobert-prepare``'s stages.

        A modality that cannot be extracted (no face found, unreadable audio) is left empty and
        named in the utterance's ``problems``, as ``memobert-prepare`` leaves it out of the data.
        """
        from .prepare.report import ItemError

        stages = self._media_stages()
        entries = list(entries)
        out = []
        with contextlib.ExitStack() as batches:
            for stage in stages.values():  # stages that batch (wav2vec 2.0) read ahead through the entries
                if hasattr(stage, "batching"):
                    batches.enter_context(stage.batching([e for e in entries if e.audio]))
            for entry in tqdm(entries, desc="extract", unit="utt", disable=not progress, file=sys.stderr):
                utt = Utterance(text=entry.text, id=entry.id,
                                tokens=[self.vocab.index(p) for p in self._tokenizer.tokenize(entry.text)])
                for name, stage in stages.items():
                    if not getattr(entry, "audio" if name == "acoustic" else "video"):
                        continue
                    try:
                        frames = stage.extract(entry)
                    except ItemError as err:
                        utt.problems.append(f"{name}: {err}")
                        continue
                    # what training read: standardised with the data's statistics, in the stored precision
                    utt.frames[name] = standardize_frames(frames[name], name, self.extractors.extractors[name])
                out.append(utt)
        return out

    @torch.no_grad()
    def predict_proba(self, utterances: Sequence[Utterance], batch_size: int = 32) -> np.ndarray:
        """``[len(utterances), classes]`` probabilities, columns in ``class_names`` order."""
        names = [u.id or str(i) for i, u in enumerate(utterances)]
        streams = list(self.model.frames)  # the input streams the model reads
        for name, utt in zip(names, utterances):
            unknown = sorted(set(utt.frames) - set(streams))
            if unknown:
                raise ValueError(f"utterance {name}: the model reads no {', '.join(unknown)} frames "
                                 f"(its streams: {', '.join(streams)})")
        dataset = self.task.build_dataset_for_inference(
            [self.task.readout.encode(u.text) if u.tokens is None else u.tokens for u in utterances],
            {stream: [u.frames.get(stream) for u in utterances] for stream in streams}, names)
        out = []
        for start in range(0, len(dataset), batch_size):
            batch = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            net_input = apply_to_sample(lambda tensor: tensor.to(self.device), batch["net_input"])
            out.append(torch.softmax(self.task.class_logits(self.model, net_input).float(), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)))


def _read_inputs(path: str) -> List[Utterance]:
    base = os.path.dirname(os.path.abspath(path))
    utterances = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            columns = ", ".join(["text"] + [s.name for s in input_streams()])
            raise ValueError(f"{path}:1: the header needs an 'id' column (and any of {columns})")
        for line_no, row in enumerate(reader, start=2):
            utt = Utterance(text=row.get("text") or "", id=row["id"])
            for stream in (s.name for s in input_streams()):
                if row.get(stream):
                    npy = row[stream] if os.path.isabs(row[stream]) else os.path.join(base, row[stream])
                    if not os.path.isfile(npy):
                        raise FileNotFoundError(f"{path}:{line_no}: {stream} features {npy} do not exist")
                    try:
                        utt.frames[stream] = np.load(npy)
                    except (OSError, ValueError, EOFError) as err:
                        raise ValueError(f"{path}:{line_no}: cannot read {stream} features {npy}: {err}") from None
            utterances.append(utt)
    return utterances


def _read_media(args: argparse.Namespace) -> list:
    """The utterances to extract: the --manifest's rows, or the one utterance of --audio/--video/--text."""
    from .prepare.manifest import read_manifest
    from .prepare.report import Problem

    if not args.manifest:
        return [media_entry(args.id, args.text or "", os.path.abspath(args.audio) if args.audio else "",
                            os.path.abspath(args.video) if args.video else "", args.start, args.end)]
    entries = list(read_manifest(args.manifest))
    bad = [e for e in entries if isinstance(e, Problem)]
    if bad:
        raise ValueError("; ".join(f"{args.manifest}:{p.line}: {p.id}: {p.reason}" for p in bad[:5])
                         + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "") + ": fix these rows")
    return entries


def predict_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Run ``memobert-predict`` on its parsed arguments (:mod:`memobert_plugin.predict_cli` parses them)."""
    media = args.input is None
    try:
        extractors = ExtractorSettings.from_data_dir(args.data) if args.data else None
        checkpoints = {k: v for k, v in (("acoustic", args.wav2vec2), ("visual", args.fer_model)) if v}
        predictor = EmotionPredictor(args.checkpoint, args.vocab, args.device, extractors, checkpoints)
        if media:
            utterances = predictor.extract(_read_media(args), progress=not args.no_progress)
        else:
            utterances = _read_inputs(args.input)
        probs = predictor.predict_proba(utterances, args.batch_size)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # bad inputs: the message names the item
        parser.exit(1, f"memobert-predict: error: {err}\n")
    for utt in utterances:
        for problem in utt.problems:
            print(f"memobert-predict: warning: {utt.id}: {problem}; predicted without it", file=sys.stderr)
    lines = ["\t".join(["id", "prediction", *(f"p_{c}" for c in predictor.class_names)])]
    for utt, row in zip(utterances, probs):
        lines.append("\t".join([utt.id, predictor.class_names[int(row.argmax())], *(f"{p:.6f}" for p in row)]))
    if args.output == "-":
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        with atomic_open(args.output) as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
