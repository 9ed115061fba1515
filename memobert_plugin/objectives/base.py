"""The pretraining-objective registry and the contract each objective fulfils.

An objective is one self-contained unit: how it masks a batch (one stream only:
conditional masking), the head it scores with, its loss, and its metrics. It sees typed
values only: the collated batch as an :class:`UtteranceBatch`, its masking as a
:class:`MaskedView`, and in its loss its head and the encoder states of its stream at the
masked positions; never the collated key names, the model's arguments or its internals.
The ``memobert_pretrain`` task and criterion only ever talk to this interface, so a new
objective (see ``user_dir/``) is registered from outside the package and needs no edit
here. Its config dataclass's fields become ``memobert_pretrain`` options.
"""

import zlib
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from fairseq import metrics, utils
from fairseq.dataclass import FairseqDataclass
from torch import nn

from memobert_plugin.data.multimodal_dataset import UtteranceBatch
from memobert_plugin.data.objective_batches import MaskedView
from memobert_plugin.data.vocabulary import BertVocabulary

__all__ = [
    "ObjectiveData",
    "ObjectiveLoss",
    "PretrainingObjective",
    "OBJECTIVE_REGISTRY",
    "register_objective",
    "objective_config_classes",
    "on_objective_registered",
    "pad_masks",
]


@dataclass
class ObjectiveData:
    """What an objective may know about the data: the vocabulary and each stream's dim."""

    vocab: BertVocabulary
    stream_dims: Dict[str, int]  # every declared frame stream


@dataclass
class ObjectiveLoss:
    """A batch's summed loss and the number of units (tokens, frames) it sums over."""

    loss_sum: torch.Tensor
    count: int  # from shapes, known on the host
    #: extra metric numerators, e.g. ``correct``: tensors, so the step never waits for the device
    #: (fairseq sums logging outputs as tensors; reduce_metrics reads them after the update)
    sums: Dict[str, torch.Tensor]


class PretrainingObjective:
    """Base class; subclasses set ``modality`` and implement masking, the head's size and the loss."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "text" or an input frame stream: the only one it masks
    target_stream: ClassVar[str] = ""  # the frame stream it predicts at the masked frames, if any (e.g. visual_fer)
    #: scored by the model's masked-LM head (tied to the word embeddings) instead of an MLP head of its own
    uses_lm_head: ClassVar[bool] = False
    config_class: ClassVar[Optional[Type[FairseqDataclass]]] = None
    #: extra logged sums beyond loss_sum/count/nbatches, and the ratios derived from them
    extra_sums: ClassVar[Tuple[str, ...]] = ()
    derived: ClassVar[Dict[str, Tuple[str, str]]] = {}

    def __init__(self, cfg: Any, data: ObjectiveData):
        self.cfg = cfg
        self.data = data
        # a stable per-objective salt so objectives draw different masks for one sample
        self.salt = zlib.crc32(self.name.encode())

    # --- masking --------------------------------------------------------------------
    def can_mask(self, batch: UtteranceBatch) -> bool:
        """Whether some utterance of the batch has frames of the objective's stream (and their targets)."""
        has = batch.frame_lengths[self.modality] > 0
        if self.target_stream:
            has &= batch.frame_lengths[self.target_stream] > 0
        return bool(has.any())

    def mask_batch(self, batch: UtteranceBatch, rngs: Sequence[np.random.Generator]) -> MaskedView:
        """Mask the objective's stream in a collated batch.

        ``rngs[i]`` is utterance i's generator, derived from (seed, epoch, index, salt).
        """
        raise NotImplementedError

    # --- model side -----------------------------------------------------------------
    def head_outputs(self) -> int:
        """Outputs per masked position of the objective's own head (an MLP on its stream's states)."""
        raise NotImplementedError

    def compute_loss(self, head: nn.Module, states: torch.Tensor, view: MaskedView) -> ObjectiveLoss:
        """The loss at the masked positions: ``states`` are the encoder's ``[masked, dim]`` states of the
        objective's stream there, in ``view.positions`` order; ``view.targets`` what to predict."""
        raise NotImplementedError

    # --- metrics --------------------------------------------------------------------
    @classmethod
    def sum_keys(cls) -> List[str]:
        return [f"{cls.name}_{k}" for k in ("loss_sum", "count", "nbatches") + cls.extra_sums]

    @classmethod
    def tensor_sum_keys(cls) -> List[str]:
        """The sums that stay device tensors until ``reduce_metrics`` (the loss and ``extra_sums``)."""
        return [f"{cls.name}_{k}" for k in ("loss_sum",) + cls.extra_sums]

    @classmethod
    def reduce_metrics(cls, logging_outputs: Sequence[Dict[str, Any]]) -> None:
        """Log sums, then ratios derived from the sums: exact over batches and workers."""
        for key in cls.sum_keys():
            metrics.log_scalar_sum(f"_{key}", utils.item(sum(log.get(key, 0) for log in logging_outputs)))
        nbatches = f"_{cls.name}_nbatches"
        metrics.log_derived(f"{cls.name}_nbatches", lambda meters: int(meters[nbatches].sum))
        for metric, (num, den) in {"loss": ("loss_sum", "count"), **cls.derived}.items():
            metrics.log_derived(f"{cls.name}_{metric}", _meters_ratio(f"_{cls.name}_{num}", f"_{cls.name}_{den}"))


def _meters_ratio(num: str, den: str) -> Callable:
    """The logged ratio of two summed meters (NaN when the denominator is 0), as fairseq derives a metric."""
    def derive(meters) -> float:
        total = meters[den].sum
        return round(meters[num].sum / total, 4) if total > 0 else float("nan")

    return derive


def pad_masks(masks: Sequence[np.ndarray], width: int) -> torch.Tensor:
    """Stack per-sample boolean masks, padded with False to ``width``."""
    out = torch.zeros(len(masks), width, dtype=torch.bool)
    for row, mask in enumerate(masks):
        out[row, : len(mask)] = torch.from_numpy(mask)
    return out


OBJECTIVE_REGISTRY: Dict[str, Type[PretrainingObjective]] = {}
_CONFIG_CLASSES: List[Type[FairseqDataclass]] = []
_LISTENERS: List[Callable[[], None]] = []


def register_objective(name: str, config: Optional[Type[FairseqDataclass]] = None):
    """Class decorator: ``@register_objective("span_mafc", SpanMafcConfig)``.

    Config fields join the ``memobert_pretrain`` options; a field name that another
    objective's config already uses is refused here rather than silently merged.
    """

    def wrap(cls: Type[PretrainingObjective]) -> Type[PretrainingObjective]:
        if name in OBJECTIVE_REGISTRY:
            raise ValueError(f"objective {name!r} is already registered by {OBJECTIVE_REGISTRY[name].__module__}")
        if not issubclass(cls, PretrainingObjective):
            raise TypeError(f"objective {name!r}: {cls.__name__} must subclass PretrainingObjective")
        cls.name, cls.config_class = name, config
        if config is not None and config not in _CONFIG_CLASSES:
            taken = {f.name: c.__name__ for c in _CONFIG_CLASSES for f in fields(c)}
            clashes = sorted(f.name for f in fields(config) if f.name in taken and not f.name.startswith("_"))
            if clashes:
                raise ValueError(f"objective {name!r}: config fields {clashes} are already defined by {[taken[c] for c in clashes]}")
            _CONFIG_CLASSES.append(config)
        OBJECTIVE_REGISTRY[name] = cls
        for listener in _LISTENERS:
            listener()
        return cls

    return wrap


def objective_config_classes() -> List[Type[FairseqDataclass]]:
    return list(_CONFIG_CLASSES)


def on_objective_registered(callback: Callable[[], None]) -> None:
    """Call ``callback`` after every later registration (the task rebuilds its config)."""
    _LISTENERS.append(callback)
