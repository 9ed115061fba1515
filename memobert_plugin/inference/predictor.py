"""Emotion prediction from a ``memobert_emotion`` checkpoint or bundle: a Python API and ``memobert-predict``.

From media, with the extractors and settings the model's training data was prepared with
(``memobert-prepare``'s own stages, checked against the bundle's checksums)::

    from memobert_plugin.inference.predictor import EmotionPredictor, media_entry
    predictor = EmotionPredictor("model.bundle")            # see memobert_plugin.inference.bundle
    entries = [media_entry("u1", text="i am so glad", audio="u1.wav", video="u1.mp4")]
    probs = predictor.predict_proba(predictor.extract(entries))

From features extracted elsewhere, as a data dir stores them (standardised with the statistics in the
training data's ``dataset.json``; ``prepare.feature_stats.standardize_frames`` turns raw extractor output
into that)::

    probs = predictor.predict_proba([UtteranceFeatures(text="i am so glad", frames={"acoustic": np.load("u1.npy")})])

Any modality may be missing (no text, no faces, no voice). Frames longer than the
checkpoint's limits are truncated, as in training. The checkpoint may be of ``memobert_emotion`` or of
any task built on it (an extension's label set, imported first: ``--user-dir``); the streams extracted
from media are the declared ones (:mod:`memobert_plugin.streams`) the training data recorded an
extractor for. ``memobert-predict`` writes the predictions format of :mod:`memobert_plugin.predictions_file`.
"""

import argparse
import contextlib
import csv
import dataclasses
import io
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

from memobert_plugin.inference.bundle import (
    DICT_FILE,
    MODEL_FILE,
    ExtractorSettings,
    is_bundle,
    load_emotion_checkpoint,
)

from memobert_plugin.prepare.feature_stats import standardize_frames
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.predictions_file import prediction_columns, prediction_row, unpredicted_row
from memobert_plugin.prepare.report import clean_field, write_tsv
from memobert_plugin.streams import MEDIA, input_streams, media_streams
from memobert_plugin.tasks.multimodal_task import task_config

__all__ = ["UtteranceFeatures", "EmotionPredictor", "media_entry"]

#: what an extractor's message starts with when the media file itself could not be read
_UNREADABLE = ("missing file", "unreadable", "truncated", "zero-length", "no video stream")


@dataclass
class UtteranceFeatures:
    """One utterance as the model reads it: its text and its frames per input stream."""

    text: str = ""
    #: input stream (``visual``, ``acoustic``, ...) -> ``[frames, feature dim]``; a stream left out has no frames
    frames: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    id: str = ""
    tokens: Optional[List[int]] = None  # the text's vocabulary ids when already tokenised (used instead of text)
    problems: List[str] = dataclasses.field(default_factory=list)  # why a modality is missing
    #: media files given for it that are missing or unreadable: it cannot be predicted as asked
    unreadable: List[str] = dataclasses.field(default_factory=list)




def media_entry(id: str, text: str = "", audio: str = "", video: str = "", start: Optional[float] = None,
                end: Optional[float] = None):
    """One utterance's media, as a row of a preparation manifest (paths as given)."""
    from memobert_plugin.prepare.manifest import Utterance as ManifestUtterance

    return ManifestUtterance(id=id, text=text, audio=audio, video=video, start=start, end=end)


def _media_problem(medium: str, path: str) -> Optional[str]:
    """Why a media file given for an utterance cannot be read at all (None: it can be opened)."""
    if not os.path.exists(path):
        return f"{medium}: {path}: no such file"
    if os.path.isfile(path):
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as err:
            return f"{medium}: {path}: cannot be read ({err.strerror})"
    return None


def _task_config(task_name: str, task_options: dict, checkpoint: str):
    """The checkpoint's task options over the task's defaults, type-checked before anything is built from them."""
    config = task_config(task_name)  # as the declarations are now, whatever was imported in which order
    try:
        names = {f.name for f in dataclasses.fields(config)}
        default = OmegaConf.structured(config(seed=0))
        task_cfg = OmegaConf.merge(default, {k: v for k, v in task_options.items() if k in names})
        task_cfg.data  # noqa: B018  (a missing value raises here, not later)
        return task_cfg
    except (ValueError, KeyError, TypeError, AttributeError, MissingMandatoryValue) as err:
        raise ValueError(f"{checkpoint}: its config is not a {task_name} one ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]})") from None


def _check_vocabulary(vocab: BertVocabulary, vocab_path: str, state: dict, checkpoint: str) -> None:
    """The dictionary must have as many entries as the model's text embedding has rows."""
    embedding = state["model"].get("text.tokens.weight")
    if embedding is not None and embedding.shape[0] != len(vocab):
        raise ValueError(f"{vocab_path}: the vocabulary does not match the model's: {len(vocab)} entries, but "
                         f"{checkpoint} embeds {embedding.shape[0]} tokens; give the dict.txt of the model's "
                         "training data (--vocab)")


class EmotionPredictor:
    """Loads the checkpoint (weights-only) or bundle and scores utterances with its head.

    The model is loaded by fairseq (``load_model_ensemble_and_task``) into the checkpoint's
    ``memobert_emotion`` task, built without its corpus; utterances become that task's dataset
    (``build_dataset_for_inference``). ``extractors``: the training data's extractor settings
    (default: the bundle's, or the ``dataset.json`` of the checkpoint's data dir); ``checkpoints``
    replaces the recorded path of a stage's extractor model (``{"acoustic": wav2vec2, "visual": fer}``),
    which must have the recorded checksum. A bundle's files are checked against its recorded SHA-256s
    before anything is read from them.
    """

    def __init__(self, checkpoint: str, vocab_path: Optional[str] = None, device: str = "cpu",
                 extractors: Optional[ExtractorSettings] = None, checkpoints: Optional[Dict[str, str]] = None):
        from fairseq import checkpoint_utils
        from fairseq.tasks import TASK_REGISTRY

        if is_bundle(checkpoint):
            bundled = ExtractorSettings.from_bundle(checkpoint)  # every file checked first
            extractors = extractors or bundled
            vocab_path = vocab_path or os.path.join(checkpoint, DICT_FILE)
            checkpoint = os.path.join(checkpoint, MODEL_FILE)
        # refusals (code, foreign configs, another task) before anything is built
        state, task_name = load_emotion_checkpoint(checkpoint)
        task_cfg = _task_config(task_name, state["cfg"]["task"], checkpoint)
        self._extractors, self._data_dir = extractors, task_cfg.data
        self._checkpoints, self._stages, self._tokenizer = dict(checkpoints or {}), None, None
        vocab_path = vocab_path or os.path.join(task_cfg.data, "dict.txt")
        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"{vocab_path}: the checkpoint's dictionary is not there; pass --vocab")
        self.vocab = BertVocabulary.load(vocab_path)
        _check_vocabulary(self.vocab, vocab_path, state, checkpoint)
        self.task = TASK_REGISTRY[task_name](task_cfg, self.vocab)
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

    def extract(self, entries: Sequence, progress: bool = False) -> List[UtteranceFeatures]:
        """Features of preparation-manifest entries (:func:`media_entry`), from ``memobert-prepare``'s stages.

        A modality that cannot be extracted (no face found) is left empty and named in the utterance's
        ``problems``, as ``memobert-prepare`` leaves it out of the data. A media file that is missing or
        cannot be read is named in ``unreadable``: :meth:`predict_proba` refuses such an utterance.
        """
        from memobert_plugin.prepare.report import ItemError

        stages = self._media_stages()
        medium = {stream.name: stream.medium for stream in media_streams()}
        entries = list(entries)
        given = [{m: getattr(e, m) for m in MEDIA if getattr(e, m, "")} for e in entries]
        unreadable = [[p for p in (_media_problem(m, path) for m, path in files.items()) if p] for files in given]
        out = []
        with contextlib.ExitStack() as batches:
            for name, stage in stages.items():  # stages that batch (wav2vec 2.0) read ahead through the entries
                if hasattr(stage, "batching"):
                    batches.enter_context(stage.batching([e for e, files, bad in zip(entries, given, unreadable)
                                                          if medium[name] in files and not bad]))
            for entry, files, bad in tqdm(zip(entries, given, unreadable), total=len(entries), desc="extract",
                                          unit="utt", disable=not progress, file=sys.stderr):
                utt = UtteranceFeatures(text=entry.text, id=entry.id, unreadable=list(bad),
                                        tokens=[self.vocab.index(p) for p in self._tokenizer.tokenize(entry.text)])
                utt.problems += [f"{m}: not used: the model's training data has no features extracted from {m}"
                                 for m in files if m not in {medium[name] for name in stages}]
                for name, stage in stages.items():
                    if medium[name] not in files or utt.unreadable:
                        continue
                    try:
                        frames = stage.extract(entry)
                    except ItemError as err:
                        (utt.unreadable if str(err).startswith(_UNREADABLE) else utt.problems).append(f"{name}: {err}")
                        continue
                    # what training read: standardised with the data's statistics, in the stored precision
                    utt.frames[name] = standardize_frames(frames[name], name, self.extractors.extractors[name])
                out.append(utt)
        return out

    @torch.no_grad()
    def predict_proba(self, utterances: Sequence[UtteranceFeatures], batch_size: int = 32) -> np.ndarray:
        """``[len(utterances), classes]`` probabilities, columns in ``class_names`` order.

        Frames are read at the precision training read them (the feature store's); values that do not
        survive it, and scores that are not finite, are refused with the utterance named.
        """
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size}: must be at least 1")
        names = [u.id or str(i) for i, u in enumerate(utterances)]
        streams = list(self.model.frames)  # the input streams the model reads
        for name, utt in zip(names, utterances):
            unknown = sorted(set(utt.frames) - set(streams))
            if unknown:
                raise ValueError(f"utterance {name}: the model reads no {', '.join(unknown)} frames "
                                 f"(its streams: {', '.join(streams)})")
            if utt.unreadable:
                raise ValueError(f"utterance {name}: {'; '.join(utt.unreadable)}")
        dataset = self.task.build_dataset_for_inference(
            [self.task.readout.encode(u.text) if u.tokens is None else u.tokens for u in utterances],
            {stream: [u.frames.get(stream) for u in utterances] for stream in streams}, names)
        out = []
        for start in range(0, len(dataset), batch_size):
            batch = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            net_input = apply_to_sample(lambda tensor: tensor.to(self.device), batch["net_input"])
            out.append(torch.softmax(self.task.class_logits(self.model, net_input).float(), -1).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.class_names)))
        bad = [name for name, row in zip(names, probs) if not np.isfinite(row).all()]
        if bad:
            raise ValueError(f"utterance {bad[0]}: the model's scores are not finite ({len(bad)} of {len(names)} "
                             "utterances; are the checkpoint's weights finite?)")
        return probs


def _read_inputs(path: str) -> List[UtteranceFeatures]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = content.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line_no}: not UTF-8 text (byte {content[err.start]:#x}); save the file as UTF-8") from None
    utterances = []
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    if not reader.fieldnames or "id" not in reader.fieldnames:
        columns = ", ".join(["text"] + [s.name for s in input_streams()])
        raise ValueError(f"{path}:1: the header needs an 'id' column (and any of {columns})")
    for line_no, row in enumerate(reader, start=2):
        utt = UtteranceFeatures(text=row.get("text") or "", id=row["id"])
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
    from memobert_plugin.prepare.manifest import read_manifest
    from memobert_plugin.prepare.report import Problem

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
    """Run ``memobert-predict`` on its parsed arguments (:mod:`memobert_plugin.inference.cli` parses them).

    Every utterance asked for gets a row: predicted, or (a manifest row whose media file is missing or
    unreadable) with the reason in its ``problems`` column. A single utterance's unreadable file is an error.
    """
    media = args.input is None
    try:
        extractors = ExtractorSettings.from_data_dir(args.data) if args.data else None
        checkpoints = {s.name: getattr(args, s.extractor_dest) for s in media_streams()
                       if s.extractor_option and getattr(args, s.extractor_dest, None)}
        predictor = EmotionPredictor(args.checkpoint, args.vocab, args.device, extractors, checkpoints)
        utterances = predictor.extract(_read_media(args), not args.no_progress) if media else _read_inputs(args.input)
        unreadable = [u for u in utterances if u.unreadable]
        if unreadable and not args.manifest:
            raise ValueError("; ".join(unreadable[0].unreadable))
        probs = iter(predictor.predict_proba([u for u in utterances if not u.unreadable], args.batch_size))
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # bad inputs: the message names the item
        parser.exit(1, f"memobert-predict: error: {err}\n")
    classes = predictor.class_names
    rows = []
    for utt in utterances:
        for problem in utt.problems:
            print(f"memobert-predict: warning: {utt.id}: {problem}; predicted without it", file=sys.stderr)
        if utt.unreadable:
            rows.append(unpredicted_row(utt.id, "", classes, utt.unreadable))
        else:
            row = next(probs)
            rows.append(prediction_row(utt.id, "", classes[int(row.argmax())], row, utt.problems))
    if unreadable:
        print(f"memobert-predict: warning: {len(unreadable)} of {len(utterances)} utterances not predicted: a media "
              "file could not be read (named in their rows' problems column)", file=sys.stderr)
    if args.output == "-":
        lines = [prediction_columns(classes), *rows]
        sys.stdout.write("".join("\t".join(clean_field(cell) for cell in line) + "\n" for line in lines))
    else:
        write_tsv(args.output, prediction_columns(classes), rows)

