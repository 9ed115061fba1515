"""Emotion prediction from a ``memobert_emotion`` checkpoint or bundle: a Python API and ``memobert-predict``.

From media, with the extractors and settings the model's training data was prepared with
(``memobert-prepare``'s own stages, checked against the bundle's checksums)::

    from memobert_plugin.inference import EmotionPredictor, media_entry
    predictor = EmotionPredictor("model.bundle")            # see memobert_plugin.bundle
    entries = [media_entry("u1", text="i am so glad", audio="u1.wav", video="u1.mp4")]
    probs = predictor.predict_proba(predictor.extract(entries))

From features extracted elsewhere::

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
from omegaconf import MissingMandatoryValue, OmegaConf
from tqdm import tqdm

from .bundle import DICT_FILE, MODEL_FILE, ExtractorSettings, is_bundle

from .data.feature_store import STORE_DTYPE
from .conf import frame_limits
from .data.multimodal_dataset import collate_utterances
from .data.vocabulary import BertVocabulary
from .checkpoint_policy import load_memobert_checkpoint
from .models.memobert import MemobertConfig, MemobertModel
from .models.pretrained import load_checkpoint_weights
from .predict_cli import main  # noqa: F401  the console script, also run as python -m memobert_plugin.inference
from .prepare.files import atomic_open
from .tasks.emotion_readout import EmotionReadout
from .streams import input_streams
from .tasks.memobert_emotion import MemobertEmotionConfig

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


def _typed(default, options: dict):
    """``options`` over a config dataclass's defaults, type-checked; fields it does not have are left out."""
    names = {f.name for f in dataclasses.fields(default)}
    return OmegaConf.merge(OmegaConf.structured(default), {k: v for k, v in options.items() if k in names})


class EmotionPredictor:
    """Loads the checkpoint (weights-only) or bundle and scores utterances with its head.

    ``extractors``: the training data's extractor settings (default: the bundle's, or the
    ``dataset.json`` of the checkpoint's data dir); ``checkpoints`` replaces the recorded path of a
    stage's extractor model (``{"acoustic": wav2vec2, "visual": fer}``), which must have the recorded checksum.
    """

    def __init__(self, checkpoint: str, vocab_path: Optional[str] = None, device: str = "cpu",
                 extractors: Optional[ExtractorSettings] = None, checkpoints: Optional[Dict[str, str]] = None):
        if is_bundle(checkpoint):
            extractors = extractors or ExtractorSettings.from_bundle(checkpoint)
            vocab_path = vocab_path or os.path.join(checkpoint, DICT_FILE)
            checkpoint = os.path.join(checkpoint, MODEL_FILE)
        state = load_memobert_checkpoint(checkpoint, task="memobert_emotion")
        cfg = state["cfg"]
        try:  # the config is only data: check its types before anything is built from it
            task_cfg = _typed(MemobertEmotionConfig(seed=0), cfg["task"])
            model_cfg = OmegaConf.to_object(_typed(MemobertConfig(), cfg["model"]))
            data = task_cfg.data
        except (ValueError, KeyError, TypeError, AttributeError, MissingMandatoryValue) as err:
            raise ValueError(f"{checkpoint}: its config is not a memobert_emotion one ({type(err).__name__}: "
                             f"{str(err).splitlines()[0]})") from None
        self._extractors, self._data_dir = extractors, data
        self._checkpoints, self._stages, self._tokenizer = dict(checkpoints or {}), None, None
        vocab_path = vocab_path or os.path.join(data, "dict.txt")
        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"{vocab_path}: the checkpoint's dictionary is not there; pass --vocab")
        self.vocab = BertVocabulary.load(vocab_path)
        self.readout = EmotionReadout(task_cfg, self.vocab)
        self.model = MemobertModel(model_cfg, len(self.vocab), self.vocab.pad())
        self.readout.add_heads(self.model)
        load_checkpoint_weights(self.model, state["model"], checkpoint, strict=True)
        self.model.to(device).eval()
        self.device = device
        self.text_format = self.readout.text_format()
        self.limits = frame_limits(task_cfg)
        self.dims = {s.name: getattr(model_cfg, s.dim_option, 0) for s in input_streams()}
        self.dims = {stream: dim for stream, dim in self.dims.items() if dim}  # the streams the model reads

    @property
    def class_names(self) -> List[str]:
        return self.readout.class_names

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
                    utt.frames[name] = frames[name].astype(STORE_DTYPE)  # what training read: the stored precision
                out.append(utt)
        return out

    def _item(self, index: int, utt: Utterance) -> dict:
        tokens = self.readout.encode(utt.text) if utt.tokens is None else utt.tokens
        item = {"id": index, "text": self.text_format.build(np.asarray(tokens, dtype=np.int64))}
        unknown = sorted(set(utt.frames) - set(self.dims))
        if unknown:
            raise ValueError(f"utterance {utt.id or index}: the model reads no {', '.join(unknown)} frames "
                             f"(its streams: {', '.join(self.dims)})")
        for stream in self.dims:
            frames = utt.frames.get(stream)
            frames = np.zeros((0, self.dims[stream]), np.float32) if frames is None else np.asarray(frames, np.float32)
            if frames.ndim != 2 or frames.shape[1] != self.dims[stream]:
                raise ValueError(f"utterance {utt.id or index}: {stream} frames have shape {frames.shape}, "
                                 f"the checkpoint expects [frames, {self.dims[stream]}]")
            if not np.isfinite(frames).all():
                raise ValueError(f"utterance {utt.id or index}: non-finite {stream} features")
            item[stream] = torch.from_numpy(frames[: self.limits[stream]])
        return item

    @torch.no_grad()
    def predict_proba(self, utterances: Sequence[Utterance], batch_size: int = 32) -> np.ndarray:
        """``[len(utterances), classes]`` probabilities, columns in ``class_names`` order."""
        out = []
        for start in range(0, len(utterances), batch_size):
            items = [self._item(start + i, u) for i, u in enumerate(utterances[start : start + batch_size])]
            net_input = collate_utterances(items, self.vocab.pad(), self.dims)["net_input"]
            net_input = {k: v.to(self.device) for k, v in net_input.items()}
            out.append(torch.softmax(self.readout.class_logits(self.model, net_input).float(), -1).cpu().numpy())
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
