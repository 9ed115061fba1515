"""The MEmoBERT model: a text embedder and one embedder per input stream, one shared encoder, BERT's MLM head and pooler.

One sequence per sample, ``[CLS] text [SEP]`` then each input stream's frames in declaration
order (visual, acoustic, then any an extension declares; see ``memobert_plugin/streams.py``).
Each modality is padded on its own in the batch; the embedded modalities are then packed
left so a sample's sequence has no gaps and the batch is padded only at the end (so
``--max-tokens``, which counts all modalities, bounds the encoder's real work).
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.models import MODEL_DATACLASS_REGISTRY, BaseFairseqModel, register_model, register_model_architecture
from fairseq.utils import safe_getattr
from torch import nn

from memobert_plugin.registered_configs import replace_registered_config
from memobert_plugin.streams import TEXT, FrameStream, input_streams, on_stream_registered, with_stream_fields
from memobert_plugin.models.embedders import FrameEmbedder, TextEmbedder, ModalityEmbedder
from memobert_plugin.models.encoder import TransformerEncoder
from memobert_plugin.models.heads import MaskedLMHead, Pooler

__all__ = ["MemobertConfig", "MemobertModel", "EncoderOutput", "SequenceLayout", "upgrade_embedder_names"]

logger = logging.getLogger(__name__)

#: frame embedders' names before they were kept by stream in ``frames`` (checkpoints saved before are upgraded)
_LEGACY_EMBEDDERS = ("visual", "acoustic")
_SHAPE_HELP = "architecture default; replaced by the shape of --bert-init / --memobert-init when given"
#: state-dict prefixes of older checkpoints -> today's (applied by ``upgrade_state_dict_named``)
RENAMED_PREFIXES = {"heads.emotion_classifier.": "emotion_heads.emotion."}


def _feature_dim_field(stream: FrameStream) -> tuple:
    return (stream.dim_option, int, field(
        default=0, metadata={"help": f"raw features per {stream.name} frame ({stream.dim} by default); 0: read from the data"}))


@dataclass
class _ModelConfig(FairseqDataclass):
    encoder_layers: int = field(default=12, metadata={"help": "transformer layers; " + _SHAPE_HELP})
    encoder_embed_dim: int = field(default=768, metadata={"help": "hidden size; " + _SHAPE_HELP})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "feed-forward size; " + _SHAPE_HELP})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads; " + _SHAPE_HELP})
    dropout: float = field(default=0.1, metadata={"help": "dropout after embeddings, attention and FFN"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    max_text_positions: int = field(default=512, metadata={"help": "rows of the text position table"})
    max_frame_positions: int = field(
        default=128, metadata={"help": "rows of each input stream's position table"}
    )
    bert_init: str = field(
        default="",
        metadata={"help": "Hugging Face BERT directory (config.json, model.safetensors or "
                  "pytorch_model.bin, vocab.txt) to initialise the text embedder, encoder and heads from"},
    )
    memobert_init: str = field(
        default="",
        metadata={"help": "memobert_pretrain checkpoint to initialise from (Pretrain+Finetune / Pretrain+Prompt)"},
    )


#: a ``{stream}_feature_dim`` field per input stream declared when the package is imported
MemobertConfig = with_stream_fields(_ModelConfig, _feature_dim_field, name="MemobertConfig")


@dataclass
class SequenceLayout:
    """Where each modality sits in the packed sequence."""

    packed_index: torch.Tensor  # [B, sum of modality lengths]: position of each unpacked slot
    spans: Dict[str, Tuple[int, int]]  # modality -> (start, length) in the unpacked concatenation

    def modality_states(self, hidden: torch.Tensor, modality: str) -> torch.Tensor:
        """``[B, T_modality, dim]`` states of one modality; padded slots hold arbitrary rows."""
        start, length = self.spans[modality]
        index = self.packed_index[:, start : start + length]
        return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))


class EncoderOutput(NamedTuple):
    """A tuple whose first item is a tensor, as torch's module backward hooks need (fairseq's
    NanDetector sets them on every module when a step's gradients are not finite)."""

    hidden: torch.Tensor  # [B, L, dim] packed
    padding_mask: torch.Tensor  # [B, L], True at padding
    layout: SequenceLayout


def _init_bert_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        module.weight.data[module.padding_idx].zero_()
    if isinstance(module, ModalityEmbedder):
        module.type_embedding.data.normal_(mean=0.0, std=0.02)
    if isinstance(module, FrameEmbedder):
        module.mask_embedding.data.normal_(mean=0.0, std=0.02)


def upgrade_embedder_names(state_dict: Dict[str, torch.Tensor], prefix: str = "") -> None:
    """Rename, in place, a checkpoint's ``visual.*``/``acoustic.*`` embedder tensors (saved before the
    stream registry) to ``frames.visual.*``/``frames.acoustic.*``, as RoBERTa upgrades old names."""
    for stream in _LEGACY_EMBEDDERS:
        old = f"{prefix}{stream}."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[f"{prefix}frames.{key[len(prefix):]}"] = state_dict.pop(key)


@register_model("memobert", dataclass=MemobertConfig)
class MemobertModel(BaseFairseqModel):
    """Embedders + cross-modality encoder; objective heads live in ``self.heads``, emotion read-outs are
    registered in ``self.emotion_heads`` (:meth:`register_emotion_head`).

    ``frames`` holds an embedder per input stream whose feature dim the config records; a
    config from before a stream was declared (an older checkpoint's) has none for it.
    """

    is_memobert = True  # checkpoint_policy.MEMOBERT_MARK: a memobert model, which memobert tasks may build

    def __init__(self, cfg: MemobertConfig, vocab_size: int, padding_idx: int):
        super().__init__()
        self.cfg = cfg
        dim = cfg.encoder_embed_dim
        self.text = TextEmbedder(vocab_size, padding_idx, dim, cfg.max_text_positions, cfg.dropout)
        self.frames = nn.ModuleDict({
            stream.name: (stream.embedder or FrameEmbedder)(
                safe_getattr(cfg, stream.dim_option), dim, cfg.max_frame_positions, cfg.dropout)
            for stream in input_streams() if safe_getattr(cfg, stream.dim_option, 0)
        })
        self.encoder = TransformerEncoder(
            cfg.encoder_layers, dim, cfg.encoder_ffn_embed_dim, cfg.encoder_attention_heads,
            cfg.dropout, cfg.attention_dropout,
        )
        self.lm_head = MaskedLMHead(dim, self.text.tokens)
        self.pooler = Pooler(dim)
        self.heads = nn.ModuleDict()
        self.emotion_heads = nn.ModuleDict()
        self.apply(_init_bert_weights)

    @classmethod
    def build_model(cls, cfg: MemobertConfig, task) -> "MemobertModel":
        if not any(safe_getattr(cfg, stream.dim_option, 0) for stream in input_streams()):
            options = ", ".join(f"--{stream.dim_option.replace('_', '-')}" for stream in input_streams())
            raise ValueError(f"none of {options} is set; the task fills them from the data")
        return cls(cfg, len(task.source_dictionary), task.source_dictionary.pad())

    @property
    def hidden_dim(self) -> int:
        return self.cfg.encoder_embed_dim

    def register_emotion_head(self, name: str, head: nn.Module) -> None:
        """Attach an emotion read-out (:mod:`.emotion_heads`) under ``name``, as RoBERTa registers its
        classification heads; the task does it before any weights are loaded."""
        self.emotion_heads[name] = head

    def emotion_logits(self, net_input: Dict[str, torch.Tensor], head: str) -> torch.Tensor:
        """``[batch, classes]`` scores of the registered emotion head ``head`` for a collated ``net_input``."""
        return self.emotion_heads[head](self(**net_input), net_input["src_tokens"], self)

    def upgrade_state_dict_named(self, state_dict: Dict[str, torch.Tensor], name: str) -> None:
        """Older checkpoints' names become today's (as RoBERTa's upgrade does): the frame embedders saved
        before the stream registry (``visual.*``, ``acoustic.*``: now ``frames.*``) and the emotion
        classifier saved before it was a registered head; then fairseq's own upgrades."""
        prefix = f"{name}." if name else ""
        upgrade_embedder_names(state_dict, prefix)
        for old, new in RENAMED_PREFIXES.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super().upgrade_state_dict_named(state_dict, name)

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading (upgrade, prune, torch's), after naming any tensor whose shape differs from ours."""
        self.upgrade_state_dict(state_dict)
        ours = self.state_dict()
        for key, value in state_dict.items():
            if key in ours and (not isinstance(value, torch.Tensor) or ours[key].shape != value.shape):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"{key} has shape {shape} there but {tuple(ours[key].shape)} in the model its config describes; "
                    "were the features extracted with another model, or is the checkpoint from another run?"
                )
        return super().load_state_dict(state_dict, strict, model_cfg, args)

    def max_positions(self) -> Optional[int]:
        return self.text.max_positions + sum(embedder.max_positions for embedder in self.frames.values())

    def forward(
        self,
        src_tokens: torch.Tensor,
        frames: Optional[Dict[str, torch.Tensor]] = None,
        frame_lengths: Optional[Dict[str, torch.Tensor]] = None,
        frame_masks: Optional[Dict[str, torch.Tensor]] = None,
    ) -> EncoderOutput:
        """Encode a batch. ``frames[stream]`` is ``[B, T, dim]`` with per-sample ``frame_lengths[stream]``;
        ``frame_masks[stream]`` marks frames to hide (zeroed, replaced by the learned mask vector).
        A stream may be absent; streams the model has no embedder for are not read."""
        pad = self.text.tokens.padding_idx
        frames, frame_lengths, frame_masks = frames or {}, frame_lengths or {}, frame_masks or {}
        parts = [(TEXT, self.text(src_tokens), src_tokens.ne(pad))]
        for name, embedder in self.frames.items():
            stream = frames.get(name)
            if stream is not None and stream.shape[1] > 0:
                valid = torch.arange(stream.shape[1], device=stream.device)[None] < frame_lengths[name][:, None]
                parts.append((name, embedder(stream, frame_masks.get(name)), valid))
        x, padding_mask, layout, padded = self._pack(parts)
        # a batch of equal lengths attends without a mask (the fused kernels that take none apply)
        return EncoderOutput(self.encoder(x, padding_mask if padded else None), padding_mask, layout)

    @staticmethod
    def _pack(parts) -> Tuple[torch.Tensor, torch.Tensor, SequenceLayout, bool]:
        spans, start = {}, 0
        for name, emb, _ in parts:
            spans[name] = (start, emb.shape[1])
            start += emb.shape[1]
        full = torch.cat([emb for _, emb, _ in parts], dim=1)
        valid = torch.cat([v for _, _, v in parts], dim=1)
        lengths = valid.sum(1)
        shortest, packed_len = lengths.aminmax()  # one device-to-host copy for both
        shortest, packed_len = int(shortest), int(packed_len)
        # a stable sort of "is padding" moves each sample's real slots to the front, in order
        order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, :packed_len]
        x = full.gather(1, order[..., None].expand(-1, -1, full.shape[-1]))
        padding_mask = torch.arange(packed_len, device=x.device)[None] >= lengths[:, None]
        packed_index = (valid.cumsum(1) - 1).clamp(min=0)
        return x, padding_mask, SequenceLayout(packed_index, spans), shortest < packed_len


def _default_shape(cfg, layers: int, dim: int, ffn: int, heads: int) -> None:
    """Set the shape fields the command line left unset."""
    for name, value in (("encoder_layers", layers), ("encoder_embed_dim", dim),
                        ("encoder_ffn_embed_dim", ffn), ("encoder_attention_heads", heads)):
        setattr(cfg, name, safe_getattr(cfg, name, value))


def _add_feature_dim_option(stream: FrameStream) -> None:
    """A stream declared later (an extension's --user-dir) adds its feature-dim field to the model config."""
    config = with_stream_fields(MODEL_DATACLASS_REGISTRY["memobert"], _feature_dim_field)
    replace_registered_config("model", "memobert", MemobertModel, config)


on_stream_registered(_add_feature_dim_option)


@register_model_architecture("memobert", "memobert_base")
def memobert_base(cfg) -> None:
    """BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072."""
    _default_shape(cfg, layers=12, dim=768, ffn=3072, heads=12)


@register_model_architecture("memobert", "memobert_tiny")
def memobert_tiny(cfg) -> None:
    """2 layers, hidden 64: for tests and the CPU quickstart."""
    _default_shape(cfg, layers=2, dim=64, ffn=256, heads=4)
