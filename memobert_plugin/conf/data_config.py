"""The data options every memobert task has; each input stream adds its ``--{stream}-max-frames``."""

from dataclasses import dataclass, field
from typing import Dict

from fairseq.dataclass import FairseqDataclass
from omegaconf import II, MISSING

from memobert_plugin.streams import FrameStream, frame_streams, with_stream_fields

__all__ = ["MultimodalDataConfig", "frame_limit_field", "frame_limits"]


def frame_limit_field(stream: FrameStream) -> tuple:
    return (stream.limit_option, int,
            field(default=stream.max_frames, metadata={"help": f"most {stream.frames} per utterance; more are truncated"}))


@dataclass
class _DataConfig(FairseqDataclass):
    data: str = field(
        default=MISSING,
        metadata={"help": "data dir: dict.txt, {split}.bin/.idx text, {split}.{stream}.npy/.len frame streams"},
    )
    text_max_tokens: int = field(
        default=30, metadata={"help": "longest text in tokens, [CLS] and [SEP] included; longer is truncated"}
    )
    seed: int = II("common.seed")


MultimodalDataConfig = with_stream_fields(_DataConfig, frame_limit_field, name="MultimodalDataConfig")


def frame_limits(cfg) -> Dict[str, int]:
    """Most frames per utterance of every declared stream; a target stream takes its input stream's limit."""
    limits: Dict[str, int] = {}
    for stream in frame_streams():  # an input stream is declared before its targets
        if not stream.is_input:
            limits[stream.name] = limits[stream.target_of]
            continue
        # options made from a class older than the stream's declaration (one kept from before an extension
        # was imported) could not have set its limit: it is the declared default
        limit = getattr(cfg, stream.limit_option, None)
        limits[stream.name] = stream.max_frames if limit is None else limit
    return limits
