"""Emotion prediction from a ``memobert_emotion`` checkpoint: a Python API and ``memobert-predict``.

    from memobert_plugin.inference import EmotionPredictor, Utterance
    predictor = EmotionPredictor("cv/.../checkpoint_best.pt")
    probs = predictor.predict_proba([Utterance(text="i am so glad", acoustic=np.load("u1.npy"))])

Any modality may be missing (no text, no faces, no voice). Frames longer than the
checkpoint's limits are truncated, as in training.
"""

import argparse
import csv
import dataclasses
import os
import pickle
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from omegaconf import MissingMandatoryValue, OmegaConf

from .data.multimodal_dataset import FrameLimits, collate_utterances
from .data.vocabulary import BertVocabulary
from .checkpoint_policy import load_memobert_checkpoint
from .models.memobert import MemobertConfig, MemobertModel
from .models.pretrained import load_checkpoint_weights
from .tasks.emotion_readout import EmotionReadout
from .tasks.memobert_emotion import MemobertEmotionConfig

__all__ = ["Utterance", "EmotionPredictor", "main"]


@dataclass
class Utterance:
    text: str = ""
    visual: Optional[np.ndarray] = None  # [frames, face feature dim]
    acoustic: Optional[np.ndarray] = None  # [frames, speech feature dim]
    id: str = ""


def _typed(default, options: dict):
    """``options`` over a config dataclass's defaults, type-checked; fields it does not have are left out."""
    names = {f.name for f in dataclasses.fields(default)}
    return OmegaConf.merge(OmegaConf.structured(default), {k: v for k, v in options.items() if k in names})


class EmotionPredictor:
    """Loads the checkpoint (weights-only) and scores utterances with its head."""

    def __init__(self, checkpoint: str, vocab_path: Optional[str] = None, device: str = "cpu"):
        state = load_memobert_checkpoint(checkpoint, task="memobert_emotion")
        cfg = state["cfg"]
        try:  # the config is only data: check its types before anything is built from it
            task_cfg = _typed(MemobertEmotionConfig(seed=0), cfg["task"])
            model_cfg = OmegaConf.to_object(_typed(MemobertConfig(), cfg["model"]))
            data = task_cfg.data
        except (ValueError, KeyError, TypeError, AttributeError, MissingMandatoryValue) as err:
            raise ValueError(f"{checkpoint}: its config is not a memobert_emotion one ({type(err).__name__}: "
                             f"{str(err).splitlines()[0]})") from None
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
        self.limits = FrameLimits(visual=task_cfg.visual_max_frames, acoustic=task_cfg.acoustic_max_frames)
        self.dims = {"visual": model_cfg.visual_feature_dim, "acoustic": model_cfg.acoustic_feature_dim, "visual_fer": 1}

    @property
    def class_names(self) -> List[str]:
        return self.readout.class_names

    def _item(self, index: int, utt: Utterance) -> dict:
        item = {"id": index, "text": self.text_format.build(np.asarray(self.readout.encode(utt.text), dtype=np.int64))}
        for stream in ("visual", "acoustic"):
            frames = getattr(utt, stream)
            frames = np.zeros((0, self.dims[stream]), np.float32) if frames is None else np.asarray(frames, np.float32)
            if frames.ndim != 2 or frames.shape[1] != self.dims[stream]:
                raise ValueError(f"utterance {utt.id or index}: {stream} frames have shape {frames.shape}, "
                                 f"the checkpoint expects [frames, {self.dims[stream]}]")
            if not np.isfinite(frames).all():
                raise ValueError(f"utterance {utt.id or index}: non-finite {stream} features")
            item[stream] = torch.from_numpy(frames[: self.limits.of(stream)])
        item["visual_fer"] = torch.zeros(0, 1)
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
            raise ValueError(f"{path}:1: the header needs an 'id' column (and any of text, visual, acoustic)")
        for line_no, row in enumerate(reader, start=2):
            utt = Utterance(text=row.get("text") or "", id=row["id"])
            for stream in ("visual", "acoustic"):
                if row.get(stream):
                    npy = row[stream] if os.path.isabs(row[stream]) else os.path.join(base, row[stream])
                    if not os.path.isfile(npy):
                        raise FileNotFoundError(f"{path}:{line_no}: {stream} features {npy} do not exist")
                    try:
                        setattr(utt, stream, np.load(npy))
                    except (OSError, ValueError, EOFError) as err:
                        raise ValueError(f"{path}:{line_no}: cannot read {stream} features {npy}: {err}") from None
            utterances.append(utt)
    return utterances


def main(argv=None) -> None:
    """``memobert-predict``: class probabilities for the utterances of a TSV (id, text, visual, acoustic)."""
    parser = argparse.ArgumentParser(prog="memobert-predict", description=main.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a memobert_emotion checkpoint")
    parser.add_argument("--input", required=True, help="TSV with columns id, text, visual, acoustic (.npy paths; may be empty)")
    parser.add_argument("--vocab", default=None, help="dict.txt/vocab.txt (default: the checkpoint's data dir)")
    parser.add_argument("--output", default="-", help="TSV to write (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        predictor = EmotionPredictor(args.checkpoint, args.vocab)
        utterances = _read_inputs(args.input)
        probs = predictor.predict_proba(utterances, args.batch_size)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # bad inputs: the message names the item
        parser.exit(1, f"memobert-predict: error: {err}\n")
    handle = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    handle.write("\t".join(["id", "prediction", *(f"p_{c}" for c in predictor.class_names)]) + "\n")
    for utt, row in zip(utterances, probs):
        cells = [utt.id, predictor.class_names[int(row.argmax())], *(f"{p:.6f}" for p in row)]
        handle.write("\t".join(cells) + "\n")
    if handle is not sys.stdout:
        handle.close()


if __name__ == "__main__":
    main()
