"""The MEmoBERT model: three modality embedders, one shared encoder, BERT's MLM head and pooler.

One sequence per sample, ``[CLS] text [SEP]`` then visual frames then acoustic frames.
Each modality is padded on its own in the batch; the embedded modalities are then packed
left so a sample's sequence has no gaps and the batch is padded only at the end (so
``--max-tokens``, which counts all modalities, bounds the encoder's real work).
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from fairseq.utils import safe_getattr
from torch import nn

from .embedders import FrameEmbedder, TextEmbedder, ModalityEmbedder
from .encoder import TransformerEncoder
from .heads import MaskedLMHead, Pooler

__all__ = ["MemobertConfig", "MemobertModel", "EncoderOutput", "SequenceLayout", "MODALITIES"]

logger = logging.getLogger(__name__)

MODALITIES = ("text", "visual", "acoustic")
_SHAPE_HELP = "architecture default; replaced by the shape of --bert-init / --memobert-init when given"
#: state-dict prefixes of older checkpoints -> today's (applied by ``upgrade_state_dict_named``)
RENAMED_PREFIXES = {"heads.emotion_classifier.": "emotion_heads.emotion."}


@dataclass
class MemobertConfig(FairseqDataclass):
    encoder_layers: int = field(default=12, metadata={"help": "transformer layers; " + _SHAPE_HELP})
    encoder_embed_dim: int = field(default=768, metadata={"help": "hidden size; " + _SHAPE_HELP})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "feed-forward size; " + _SHAPE_HELP})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads; " + _SHAPE_HELP})
    dropout: float = field(default=0.1, metadata={"help": "dropout after embeddings, attention and FFN"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    max_text_positions: int = field(default=512, metadata={"help": "rows of the text position table"})
    max_frame_positions: int = field(
        default=128, metadata={"help": "rows of the visual and of the acoustic position table"}
    )
    visual_feature_dim: int = field(
        default=0, metadata={"help": "raw face feature dim (342 for FER+ DenseNet); 0: read from the data"}
    )
    acoustic_feature_dim: int = field(
        default=0, metadata={"help": "raw speech feature dim (768 for wav2vec 2.0 base); 0: read from the data"}
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


@register_model("memobert", dataclass=MemobertConfig)
class MemobertModel(BaseFairseqModel):
    """Embedders + cross-modality encoder; objective heads live in ``self.heads``, emotion read-outs are
    registered in ``self.emotion_heads`` (:meth:`register_emotion_head`)."""

    def __init__(self, cfg: MemobertConfig, vocab_size: int, padding_idx: int):
        super().__init__()
        self.cfg = cfg
        dim = cfg.encoder_embed_dim
        self.text = TextEmbedder(vocab_size, padding_idx, dim, cfg.max_text_positions, cfg.dropout)
        self.visual = FrameEmbedder(cfg.visual_feature_dim, dim, cfg.max_frame_positions, cfg.dropout)
        self.acoustic = FrameEmbedder(cfg.acoustic_feature_dim, dim, cfg.max_frame_positions, cfg.dropout)
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
        for name in ("visual_feature_dim", "acoustic_feature_dim"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} is unset; the task fills it from the data")
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
        """Older checkpoints' names become today's (as RoBERTa's upgrade does), then fairseq's own upgrades."""
        prefix = f"{name}." if name else ""
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
        return self.text.max_positions + self.visual.max_positions + self.acoustic.max_positions

    def forward(
        self,
        src_tokens: torch.Tensor,
        visual: Optional[torch.Tensor] = None,
        visual_lengths: Optional[torch.Tensor] = None,
        acoustic: Optional[torch.Tensor] = None,
        acoustic_lengths: Optional[torch.Tensor] = None,
        visual_mask: Optional[torch.Tensor] = None,
        acoustic_mask: Optional[torch.Tensor] = None,
    ) -> EncoderOutput:
        """Encode a batch. Frame inputs are ``[B, T, dim]`` with per-sample ``lengths``;
        ``*_mask`` marks frames to hide (zeroed, replaced by the learned mask vector)."""
        pad = self.text.tokens.padding_idx
        parts = [("text", self.text(src_tokens), src_tokens.ne(pad))]
        for name, embedder, frames, lengths, mask in (
            ("visual", self.visual, visual, visual_lengths, visual_mask),
            ("acoustic", self.acoustic, acoustic, acoustic_lengths, acoustic_mask),
        ):
            if frames is not None and frames.shape[1] > 0:
                valid = torch.arange(frames.shape[1], device=frames.device)[None] < lengths[:, None]
                parts.append((name, embedder(frames, mask), valid))
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


@register_model_architecture("memobert", "memobert_base")
def memobert_base(cfg) -> None:
    """BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072."""
    _default_shape(cfg, layers=12, dim=768, ffn=3072, heads=12)


@register_model_architecture("memobert", "memobert_tiny")
def memobert_tiny(cfg) -> None:
    """2 layers, hidden 64: for tests and the CPU quickstart."""
    _default_shape(cfg, layers=2, dim=64, ffn=256, heads=4)
