"""``--optimizer memobert_adam``: fairseq's Adam, optionally without weight decay on biases and LayerNorm.

BERT and UNITER (hence MEmoBERT's authors) decay every weight matrix but no bias and no
LayerNorm parameter. fairseq 0.12's trainer hands the optimizer one flat list of tensors,
without names, so the split is by shape: every parameter of at most one dimension (the biases,
LayerNorm gains and the frame embedders' learned mask vectors) goes to a group without decay.
"""

from dataclasses import dataclass, field

from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

__all__ = ["MemobertAdam", "MemobertAdamConfig", "decay_groups"]


@dataclass
class MemobertAdamConfig(FairseqAdamConfig):
    decay_norm_and_bias: bool = field(
        default=False,
        metadata={"help": "also apply --weight-decay to biases and LayerNorm (1-d) parameters; BERT and the authors "
                  "exclude them, as this optimizer does by default"},
    )


def decay_groups(params, decay_norm_and_bias: bool):
    """Parameter groups: all of ``params`` decayed, or the ones of at most one dimension apart with no decay."""
    params = list(params)
    if decay_norm_and_bias:
        return params
    matrices = [p for p in params if p.dim() > 1]
    vectors = [p for p in params if p.dim() <= 1]
    return [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}]


@register_optimizer("memobert_adam", dataclass=MemobertAdamConfig)
class MemobertAdam(FairseqAdam):
    def __init__(self, cfg: MemobertAdamConfig, params):
        super().__init__(cfg, decay_groups(params, cfg.decay_norm_and_bias))
