"""The data options every memobert task has."""

from dataclasses import dataclass, field

from fairseq.dataclass import FairseqDataclass
from omegaconf import II, MISSING

__all__ = ["MultimodalDataConfig"]


@dataclass
class MultimodalDataConfig(FairseqDataclass):
    data: str = field(
        default=MISSING,
        metadata={"help": "data dir: dict.txt, {split}.bin/.idx text, {split}.{visual,visual_fer,acoustic}.npy/.len"},
    )
    text_max_tokens: int = field(
        default=30, metadata={"help": "longest text in tokens, [CLS] and [SEP] included; longer is truncated"}
    )
    visual_max_frames: int = field(default=36, metadata={"help": "most face frames per utterance; more are truncated"})
    acoustic_max_frames: int = field(
        default=64, metadata={"help": "most speech frames (60 ms each) per utterance; more are truncated"}
    )
    seed: int = II("common.seed")
