"""A trained emotion model as a self-contained folder, and the feature extractors it was trained with.

``memobert-bundle CKPT --out model.bundle`` writes:

* ``model.pt``: the checkpoint's model weights and configuration (no optimizer state; the task's
  ``data`` option emptied, so nothing points into the training data dir);
* ``dict.txt`` and the tokenizer file the texts were split with (``vocab.txt`` or ``sentencepiece.model``);
* ``bundle.json``: the extractor settings of the data the model was trained on, as ``memobert-prepare``
  recorded them in ``dataset.json``, with the SHA-256 of each extractor checkpoint.

The extractor checkpoints themselves (a wav2vec 2.0 model, a FER DenseNet) stay where they are: a
bundle records their paths as defaults, prediction may be given others, and any extractor whose
checksum or settings differ from the bundle's is refused (:class:`ExtractorMismatch`).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import pickle
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

from .files import atomic_open, read_json, sha256_file, write_json

__all__ = ["BUNDLE_FORMAT", "MODEL_FILE", "ExtractorMismatch", "ExtractorSettings", "save_bundle", "main"]

BUNDLE_FORMAT = "memobert-emotion-bundle"
MODEL_FILE, DICT_FILE, SETTINGS_FILE = "model.pt", "dict.txt", "bundle.json"
_TOKENIZER_FILES = {"wordpiece": "vocab.txt", "sentencepiece": "sentencepiece.model"}
#: the extractor stages a model's features come from, in the order prediction runs them
MEDIA_STAGES = ("acoustic", "visual")


class ExtractorMismatch(ValueError):
    """An extractor given for prediction is not the one the model's training data was prepared with."""


def is_bundle(path: str) -> bool:
    return os.path.isfile(os.path.join(path, SETTINGS_FILE))


class ExtractorSettings:
    """The text tokenizer and media extractors of a model's training data (``stage -> recorded config``)."""

    def __init__(self, extractors: Dict[str, dict], source: str, base_dir: Optional[str] = None):
        if "text" not in extractors:
            raise ValueError(f"{source}: no text extractor recorded")
        self.extractors, self.source = extractors, source
        self.base_dir = base_dir  # where a bundle's own files are; None: paths as recorded

    @classmethod
    def from_data_dir(cls, data_dir: str) -> "ExtractorSettings":
        """The settings ``memobert-prepare`` wrote into ``DATA_DIR/dataset.json`` (the same for every split)."""
        path = os.path.join(data_dir, "dataset.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no dataset.json; give the data dir memobert-prepare wrote")
        splits = read_json(path).get("splits") or {}
        settings = {name: split.get("extractors") or {} for name, split in splits.items()}
        if not settings:
            raise ValueError(f"{path}: no prepared split")
        first = next(iter(settings.values()))
        for name, extractors in settings.items():
            if _comparable(extractors) != _comparable(first):
                raise ValueError(f"{path}: split {name!r} was prepared with other extractors than "
                                 f"{next(iter(settings))!r}; a model cannot say which to use")
        return cls(first, path)

    @classmethod
    def from_bundle(cls, bundle_dir: str) -> "ExtractorSettings":
        path = os.path.join(bundle_dir, SETTINGS_FILE)
        settings = read_json(path)
        if settings.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{path}: not a memobert bundle (format {settings.get('format')!r})")
        return cls(settings["extractors"], path, bundle_dir)

    @property
    def media_stages(self) -> List[str]:
        return [s for s in MEDIA_STAGES if s in self.extractors]

    def tokenizer(self):
        from .prepare.text import Tokenizer

        text = self.extractors["text"]
        path = os.path.join(self.base_dir, text["file"]) if self.base_dir else text["path"]
        if sha256_file(path) != text["sha256"]:
            raise ExtractorMismatch(f"{path}: the tokenizer file changed since the model's data was prepared "
                                    f"(sha256 differs from {self.source}'s)")
        return Tokenizer(text["tokenizer"], path)

    def stage(self, name: str, checkpoint: Optional[str] = None, device: str = "cpu"):
        """The ``name`` stage built with the recorded settings; ``checkpoint`` replaces the recorded model path.

        Raises :class:`ExtractorMismatch` when the stage's checkpoint or a setting differs from the record.
        """
        recorded = self.extractors[name]
        stage_class, options = _stage_options(recorded)
        option = {"acoustic": "--wav2vec2", "visual": "--fer-model"}[name]
        if "checkpoint" in options:
            options["checkpoint"] = checkpoint or recorded["checkpoint"]
            if options["checkpoint"] and not os.path.exists(options["checkpoint"]):
                raise FileNotFoundError(f"{options['checkpoint']}: the {name} extractor's checkpoint is not there; "
                                        f"give the one the model's data was prepared with ({option})")
            options["device"] = device
        elif checkpoint:
            raise ValueError(f"{option}: the model's {name} features come from {recorded['extractor']}, which has "
                             "no checkpoint")
        stage = stage_class(**options)
        now = stage.config()
        differs = [k for k in now if k != "checkpoint" and k in recorded and now[k] != recorded[k]]
        if differs:
            detail = "; ".join(f"{k}: {now[k]!r} here, {recorded[k]!r} in training" for k in differs)
            given = f"{option} {options['checkpoint']}" if "checkpoint" in options else recorded["extractor"]
            raise ExtractorMismatch(
                f"{given}: not the {name} extractor the model was trained with ({detail}; recorded in "
                f"{self.source}). Give the extractor the model's data was prepared with")
        return stage


def _stage_options(recorded: dict) -> Tuple[type, dict]:
    """The stage class and constructor options that reproduce a recorded stage config."""
    from .prepare.acoustic import AcousticStage
    from .prepare.speech_encoders import SPEECH_EXTRACTORS
    from .prepare.vision_encoders import VISION_EXTRACTORS
    from .prepare.visual import VisualStage

    extractor = recorded.get("extractor")
    options = dict(recorded)
    if extractor == "opensmile":
        from .prepare.opensmile_features import OPENSMILE_FEATURE_SETS, OpenSmileStage

        stage_class = OpenSmileStage
        options["feature_set"] = {v: k for k, v in OPENSMILE_FEATURE_SETS.items()}.get(recorded["feature_set"])
    else:
        stage_class = {**dict.fromkeys(SPEECH_EXTRACTORS, AcousticStage),
                       **dict.fromkeys(("densenet_fer",) + VISION_EXTRACTORS, VisualStage)}.get(extractor)
        if stage_class is None:
            raise ValueError(f"unknown extractor {extractor!r} in the model's settings")
    if "voice_activity" in recorded:  # the visual stage's voice activity detector
        options["vad"] = recorded["voice_activity"]
    if "trim_silence" in recorded:  # the speech stages record the detector's name, or False for no trimming
        options["trim_silence"], options["vad"] = bool(recorded["trim_silence"]), recorded["trim_silence"] or "auto"
    parameters = inspect.signature(stage_class).parameters
    return stage_class, {k: v for k, v in options.items() if k in parameters}


def _comparable(extractors: Dict[str, dict]) -> Dict[str, dict]:
    """Settings without machine-specific paths (two splits may have been prepared on different machines)."""
    return {stage: {k: v for k, v in cfg.items() if k not in ("checkpoint", "path")} for stage, cfg in extractors.items()}


def _tokenizer_file(text: dict) -> str:
    return _TOKENIZER_FILES[text["tokenizer"]]


def save_bundle(checkpoint: str, out: str, data_dir: Optional[str] = None) -> str:
    """Write the bundle folder ``out`` (which must not exist) for an emotion ``checkpoint``; return ``out``.

    ``data_dir`` is the training data dir (default: the checkpoint's ``task.data``).
    """
    import torch  # here, not at module level: memobert-bundle --help and the predictor's imports stay light

    from .checkpoint_policy import load_memobert_checkpoint

    state = load_memobert_checkpoint(checkpoint, task="memobert_emotion")  # what prediction will accept
    cfg = copy.deepcopy(state["cfg"])
    task = cfg["task"]
    data_dir = data_dir or task.get("data")
    if not data_dir:
        raise ValueError(f"{checkpoint}: the checkpoint names no data dir; pass --data")
    if os.path.exists(out):
        raise FileExistsError(f"{out}: already exists; give a new folder")
    settings = ExtractorSettings.from_data_dir(data_dir)
    text = settings.extractors["text"]
    if sha256_file(text["path"]) != text["sha256"]:
        raise ExtractorMismatch(f"{text['path']}: the tokenizer file changed since {data_dir} was prepared")
    task["data"] = ""  # nothing in the bundle points into the training data dir
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".bundle-", dir=parent)  # renamed into place when complete
    try:
        with atomic_open(os.path.join(staging, MODEL_FILE), "wb") as handle:
            torch.save({"cfg": cfg, "model": state["model"]}, handle)
        shutil.copyfile(os.path.join(data_dir, DICT_FILE), os.path.join(staging, DICT_FILE))
        shutil.copyfile(text["path"], os.path.join(staging, _tokenizer_file(text)))
        extractors = {**settings.extractors, "text": {**text, "file": _tokenizer_file(text)}}
        extractors["text"].pop("path")
        write_json(os.path.join(staging, SETTINGS_FILE), {
            "format": BUNDLE_FORMAT, "extractors": extractors,
            "sha256": {name: sha256_file(os.path.join(staging, name))
                       for name in (MODEL_FILE, DICT_FILE, _tokenizer_file(text))},
        })
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv=None) -> None:
    """``memobert-bundle``: a memobert_emotion checkpoint and its data's extractor settings as one folder."""
    parser = argparse.ArgumentParser(prog="memobert-bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a memobert_emotion checkpoint (e.g. checkpoint_best.pt)")
    parser.add_argument("--out", required=True, help="the bundle folder to create")
    parser.add_argument("--data", help="the training data dir (default: the checkpoint's task.data)")
    args = parser.parse_args(argv)
    try:
        save_bundle(args.checkpoint, args.out, args.data)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as err:
        parser.exit(1, f"memobert-bundle: error: {err}\n")
    print(f"memobert-bundle: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
