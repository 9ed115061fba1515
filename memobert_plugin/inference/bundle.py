"""A trained emotion model as a self-contained folder, and the feature extractors it was trained with.

``memobert-bundle CKPT --out model.bundle`` writes:

* ``model.pt``: the checkpoint's model weights and configuration (no optimizer state; the task's
  ``data`` option emptied, so nothing points into the training data dir);
* ``dict.txt`` and the tokenizer file the texts were split with (``vocab.txt`` or ``sentencepiece.model``);
* ``bundle.json``: the extractor settings of the data the model was trained on, as ``memobert-prepare``
  recorded them in ``dataset.json``, with the SHA-256 of each extractor checkpoint, and the SHA-256
  of each file of the bundle.

A bundle is checked before use (:func:`read_bundle`): every file it lists must lie inside the folder
(no absolute path, no ``..``, no symbolic link leading out) and have its recorded SHA-256.

The extractor checkpoints themselves (a wav2vec 2.0 model, a FER DenseNet) stay where they are: a
bundle records their paths as defaults, prediction may be given others, and any extractor whose
checksum or settings differ from the bundle's is refused (:class:`ExtractorMismatch`).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import os
import pickle
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from memobert_plugin.files import atomic_open, read_json, sha256_file, write_json
from memobert_plugin.streams import TEXT, FrameStream, input_streams, media_streams

__all__ = ["BUNDLE_FORMAT", "MODEL_FILE", "ExtractorMismatch", "ExtractorSettings", "read_bundle", "save_bundle",
           "load_emotion_checkpoint", "import_user_dir", "main"]

BUNDLE_FORMAT = "memobert-emotion-bundle"
MODEL_FILE, DICT_FILE, SETTINGS_FILE = "model.pt", "dict.txt", "bundle.json"
_TOKENIZER_FILES = {"wordpiece": "vocab.txt", "sentencepiece": "sentencepiece.model"}


class ExtractorMismatch(ValueError):
    """An extractor given for prediction is not the one the model's training data was prepared with."""


def is_bundle(path: str) -> bool:
    return os.path.isfile(os.path.join(path, SETTINGS_FILE))


def _bundle_file(bundle_dir: str, name: Any) -> str:
    """The path of a file ``bundle.json`` lists, refused unless it lies inside the bundle."""
    settings = os.path.join(bundle_dir, SETTINGS_FILE)
    parts = name.replace("\\", "/").split("/") if isinstance(name, str) else []
    if not name or os.path.isabs(name) or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{settings}: {name!r} is not a file inside the bundle (a name relative to its folder, "
                         "without '..')")
    path = os.path.join(bundle_dir, name)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path}: missing from the bundle ({SETTINGS_FILE} lists it)")
    inside = os.path.realpath(bundle_dir) + os.sep
    if not os.path.realpath(path).startswith(inside):
        raise ValueError(f"{path}: a symbolic link leading out of the bundle (to {os.path.realpath(path)})")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a file")
    return path


def read_bundle(bundle_dir: str) -> dict:
    """``bundle.json``, once every file it lists is checked: inside the bundle and with its recorded SHA-256."""
    settings_path = os.path.join(bundle_dir, SETTINGS_FILE)
    settings = read_json(settings_path)
    if not isinstance(settings, dict) or settings.get("format") != BUNDLE_FORMAT:
        found = settings.get("format") if isinstance(settings, dict) else type(settings).__name__
        raise ValueError(f"{settings_path}: not a memobert bundle (format {found!r})")
    recorded, extractors = settings.get("sha256"), settings.get("extractors")
    text = extractors.get(TEXT) if isinstance(extractors, dict) else None
    if not isinstance(recorded, dict) or not isinstance(text, dict):
        raise ValueError(f"{settings_path}: no 'sha256' and 'extractors.text' records; not written by memobert-bundle")
    for name in (MODEL_FILE, DICT_FILE, text.get("file")):
        if name not in recorded:
            raise ValueError(f"{settings_path} records no SHA-256 for {name}; the bundle cannot be checked")
    for name, digest in recorded.items():
        path = _bundle_file(bundle_dir, name)
        if sha256_file(path) != digest:
            raise ValueError(f"{path}: its SHA-256 differs from the one {SETTINGS_FILE} records: the file changed "
                             "since memobert-bundle wrote it; bundle the checkpoint again")
    return settings


def _stream(name: str, source: str) -> FrameStream:
    declared = {s.name: s for s in input_streams()}
    if name not in declared:
        raise ValueError(f"{source}: the model's data has {name!r} features, but no such stream is declared here; "
                         "give the --user-dir of the extension that declares it")
    return declared[name]


def load_emotion_checkpoint(path: str) -> Tuple[dict, str]:
    """A checkpoint of ``memobert_emotion`` or a task built on it (an extension's label set), loaded
    weights-only and checked; returns the state and the task's registered name."""
    from fairseq.tasks import TASK_REGISTRY

    from memobert_plugin.checkpoints.policy import load_memobert_checkpoint
    from memobert_plugin.tasks.memobert_emotion import MemobertEmotionTask

    state = load_memobert_checkpoint(path)
    name = state["cfg"]["task"].get("_name")
    if not issubclass(TASK_REGISTRY[name], MemobertEmotionTask):
        emotion = sorted(n for n, task in TASK_REGISTRY.items() if issubclass(task, MemobertEmotionTask))
        raise ValueError(f"{path}: a {name} checkpoint; this needs a memobert_emotion one (or of a task built on it: "
                         f"{', '.join(emotion)})")
    return state, name


def import_user_dir(path: Optional[str]) -> None:
    """Import an extension (``--user-dir``) as fairseq does, so that its tasks and streams are declared."""
    if path:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"--user-dir {path}: no such folder")
        from fairseq.utils import import_user_module

        import_user_module(argparse.Namespace(user_dir=path))


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
        """The settings of a bundle, its files checked (:func:`read_bundle`)."""
        return cls(read_bundle(bundle_dir)["extractors"], os.path.join(bundle_dir, SETTINGS_FILE), bundle_dir)

    @property
    def media_stages(self) -> List[str]:
        """The streams whose recorded extractors prediction runs on media, in declaration order."""
        for name in self.extractors:
            if name != TEXT:
                _stream(name, self.source)  # a recorded extractor of an undeclared stream is never skipped
        return [s.name for s in media_streams() if s.name in self.extractors]

    def tokenizer(self):
        from memobert_plugin.prepare.stages.text import Tokenizer

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
        recorded, stream = self.extractors[name], _stream(name, self.source)
        stage_class, options = _stage_options(stream, recorded)
        option = stream.extractor_option or f"the {name} extractor"
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


def _stage_options(stream: FrameStream, recorded: dict) -> Tuple[type, dict]:
    """The stage class the stream declares for a recorded extractor, and the constructor options that reproduce it."""
    extractor = recorded.get("extractor")
    if extractor not in stream.extractors:
        raise ValueError(f"unknown {stream.name} extractor {extractor!r} in the model's settings (the stream declares "
                         f"{', '.join(stream.extractors) or 'none'})")
    module, class_name = stream.extractors[extractor].split(":")
    stage_class = getattr(importlib.import_module(module), class_name)
    # a stage whose record differs from its constructor's options says how to translate it
    options = dict(getattr(stage_class, "options_from_record", dict)(recorded))
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

    state, _ = load_emotion_checkpoint(checkpoint)  # what prediction will accept
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
        read_bundle(staging)  # nothing is written that prediction would refuse
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
    parser.add_argument("--user-dir", help="the extension the model was trained with (fairseq-train's --user-dir)")
    args = parser.parse_args(argv)
    try:
        import_user_dir(args.user_dir)
        save_bundle(args.checkpoint, args.out, args.data)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as err:
        parser.exit(1, f"memobert-bundle: error: {err}\n")
    print(f"memobert-bundle: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
