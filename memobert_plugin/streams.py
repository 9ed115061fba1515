"""The frame streams, declared once.

Beside its text, an utterance has frame streams: ``[frames, dim]`` arrays stored as
``{split}.{stream}.npy/.len``. A stream is either a **model input** (embedded and encoded
beside the text: ``visual``, ``acoustic``) or the per-frame **target of an input stream**
(``visual_fer``: the FER model's soft labels, one row per face frame, read and truncated
with ``visual`` and never encoded). The collater, the frame limits and their
``--{stream}-max-frames`` options, the model's embedders and ``{stream}_feature_dim``
fields, checkpoint shape reading, bundles and prediction from media (which medium, which extractor and
its option) all follow these declarations, as data2vec 2
builds its per-modality encoders from one config. An extension adds a modality with one
:func:`register_stream` call (see ``user_dir/prosody.py``); this module imports nothing of
the package, so every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Callable, Dict, List, Optional, Tuple

__all__ = [
    "FrameStream", "register_stream", "frame_streams", "input_streams", "media_streams", "on_stream_registered",
    "with_stream_fields", "TEXT", "MEDIA",
]

#: the token stream every utterance has; not a frame stream
TEXT = "text"
#: the media an input stream may be extracted from: a preparation manifest's columns
MEDIA = ("audio", "video")


@dataclass(frozen=True)
class FrameStream:
    name: str
    dim: int  # features per frame when the data dir has none of the stream (a new model's size)
    frames: str  # what its frames are, for option help: "face frames"
    max_frames: int = 0  # input streams: default of --{name}-max-frames
    target_of: str = ""  # target streams: the input stream whose frames these rows label
    #: input streams: ``(feature_dim, hidden_dim, max_positions, dropout) -> nn.Module`` embedding
    #: ``forward(frames, frame_mask)``; None: the model's FrameEmbedder
    embedder: Optional[Callable] = None
    #: input streams extracted from media: the manifest column (and prediction option) they come from
    medium: str = ""  # "audio" or "video"; "" for features made elsewhere
    #: the option naming its extractor's checkpoint at prediction (``--wav2vec2``); "" where extractors have none
    extractor_option: str = ""
    #: the extractor name ``memobert-prepare`` records in ``dataset.json`` -> ``"module:StageClass"`` that
    #: reproduces it (built from the recorded settings to extract media at prediction)
    extractors: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_input(self) -> bool:
        return not self.target_of

    @property
    def extractor_dest(self) -> str:
        """The parsed argument of :attr:`extractor_option` (``--fer-model`` -> ``fer_model``)."""
        return self.extractor_option[2:].replace("-", "_")

    @property
    def limit_option(self) -> str:
        """The data config field bounding an input stream's frames per utterance."""
        return f"{self.name}_max_frames"

    @property
    def dim_option(self) -> str:
        """The model config field recording an input stream's feature size."""
        return f"{self.name}_feature_dim"


_STREAMS: Dict[str, FrameStream] = {}
_LISTENERS: List[Callable[[FrameStream], None]] = []


def register_stream(stream: FrameStream) -> FrameStream:
    """Declare a stream; the configs of memobert's model and tasks gain its options."""
    if not stream.name.isidentifier() or stream.name == TEXT or stream.name in _STREAMS:
        raise ValueError(f"stream name {stream.name!r} is taken or not an identifier")
    if stream.dim <= 0:
        raise ValueError(f"stream {stream.name}: dim must be positive, got {stream.dim}")
    if stream.is_input and stream.max_frames <= 0:
        raise ValueError(f"input stream {stream.name}: max_frames must be positive, got {stream.max_frames}")
    if stream.medium not in ("", *MEDIA):
        raise ValueError(f"stream {stream.name}: medium must be one of {MEDIA} or empty, got {stream.medium!r}")
    if (stream.extractors or stream.extractor_option) and not stream.medium:
        raise ValueError(f"stream {stream.name}: an extractor needs the medium it reads ({' or '.join(MEDIA)})")
    if stream.extractor_option and not stream.extractor_option.startswith("--"):
        raise ValueError(f"stream {stream.name}: extractor_option {stream.extractor_option!r} is not an option (--name)")
    if not stream.is_input:
        source = _STREAMS.get(stream.target_of)
        if source is None or not source.is_input:
            raise ValueError(f"target stream {stream.name}: {stream.target_of!r} is not a declared input stream")
        if stream.max_frames or stream.embedder:
            raise ValueError(f"target stream {stream.name} is never encoded: it takes {stream.target_of}'s limit "
                             "and has no embedder")
    _STREAMS[stream.name] = stream
    for listener in _LISTENERS:
        listener(stream)
    return stream


def frame_streams() -> Tuple[FrameStream, ...]:
    """Every declared stream, in declaration order (the order of the packed sequence)."""
    return tuple(_STREAMS.values())


def input_streams() -> Tuple[FrameStream, ...]:
    return tuple(s for s in _STREAMS.values() if s.is_input)


def media_streams() -> Tuple[FrameStream, ...]:
    """The input streams extracted from media (prediction runs their extractors in this order)."""
    return tuple(s for s in input_streams() if s.medium)


def on_stream_registered(callback: Callable[[FrameStream], None]) -> None:
    """Call ``callback(stream)`` after every later declaration (configs add the stream's options)."""
    _LISTENERS.append(callback)


_VISUAL_STAGE, _ACOUSTIC_STAGE = "memobert_plugin.prepare.stages.visual:VisualStage", "memobert_plugin.prepare.stages.acoustic:AcousticStage"
register_stream(FrameStream(  # FER+ DenseNet features, or a ViT / CLIP vision encoder's
    "visual", dim=342, frames="face frames", max_frames=36, medium="video", extractor_option="--fer-model",
    extractors=dict.fromkeys(("densenet_fer", "vit", "clip_vision"), _VISUAL_STAGE)))
register_stream(FrameStream("visual_fer", dim=8, frames="FER+ class probabilities", target_of="visual"))
register_stream(FrameStream(  # a speech encoder (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, Whisper), or openSMILE's
    "acoustic", dim=768, frames="speech frames (60 ms each)", max_frames=64, medium="audio",
    extractor_option="--wav2vec2",  # memobert-prepare also calls it --speech-encoder
    extractors={**dict.fromkeys(("wav2vec2", "hubert", "wavlm", "data2vec_audio", "whisper"), _ACOUSTIC_STAGE),
                "opensmile": "memobert_plugin.prepare.stages.opensmile:OpenSmileStage"}))


def with_stream_fields(config: type, field_of: Callable[[FrameStream], tuple], name: str = "") -> type:
    """``config`` with a field per declared input stream that it lacks (``field_of(stream)`` gives
    ``(name, type, dataclasses.field(...))``): how a config class follows the declarations."""
    have = {f.name for f in fields(config)}
    missing = [f for f in map(field_of, input_streams()) if f[0] not in have]
    if not missing and not name:
        return config
    return make_dataclass(name or config.__name__, missing, bases=(config,))
