"""A prosody frame stream with its own embedder and span objective, declared from outside ``memobert_plugin``.

Beside text, faces and speech a data dir may hold ``{split}.prosody.npy/.len``: per speech frame
(pooled to 60 ms like the wav2vec 2.0 frames) eGeMAPS-style low-level descriptors: pitch,
loudness, jitter, shimmer, formants, spectral slopes (25 numbers). Declaring the stream is all
the package needs: the collater reads it, ``--prosody-max-frames`` and the model's
``prosody_feature_dim`` exist, the model embeds it with :class:`ProsodyEmbedder` after the
other streams, and ``span_mpfr`` (span-masked prosody frame regression) trains on it. It is
extracted from the audio (``medium``) by :class:`user_dir.prosody_extractor.ProsodyStage`, so
``memobert-predict --user-dir user_dir`` predicts from media with it.
"""

from dataclasses import dataclass, field

import torch
from fairseq.dataclass import FairseqDataclass

from memobert_plugin.models.embedders import FrameEmbedder
from memobert_plugin.objectives import SpanMaskedFrameRegression, register_objective
from memobert_plugin.streams import FrameStream, register_stream

__all__ = ["PROSODY", "ProsodyEmbedder", "ProsodyMaskingConfig", "SpanMPFR"]


class ProsodyEmbedder(FrameEmbedder):
    """Prosody descriptors differ in scale by orders of magnitude (pitch in Hz, loudness near 1, jitter
    near 0.01): each is compressed with sign(x)·log(1+|x|) before the shared projection."""

    def forward(self, frames: torch.Tensor, frame_mask=None) -> torch.Tensor:
        return super().forward(torch.sign(frames) * torch.log1p(frames.abs()), frame_mask)


PROSODY = register_stream(FrameStream(
    "prosody", dim=25, frames="prosody frames (60 ms each)", max_frames=64, embedder=ProsodyEmbedder,
    medium="audio", extractors={"prosody_descriptors": "user_dir.prosody_extractor:ProsodyStage"}))


@dataclass
class ProsodyMaskingConfig(FairseqDataclass):
    prosody_mask_prob: float = field(default=0.15, metadata={"help": "SpanMPFR: fraction of prosody frames masked"})


@register_objective("span_mpfr", ProsodyMaskingConfig)
class SpanMPFR(SpanMaskedFrameRegression):
    """Reconstruct masked prosody frames (their compressed descriptors' raw values) from text, faces,
    speech and the unmasked prosody; spans of ``--frame-mask-span`` frames, as the other span objectives."""

    modality = PROSODY.name

    @property
    def mask_prob(self) -> float:
        return self.cfg.prosody_mask_prob
