"""``memobert_pretrain``: self-supervised pretraining with the registered objectives."""

import json
import logging
import math
import os
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Dict, List

from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from omegaconf import II

from memobert_plugin.conf import MultimodalDataConfig, frame_limit_field
from memobert_plugin.data.objective_batches import ObjectiveBatchesDataset
from memobert_plugin.models.heads import MLPHead
from memobert_plugin.objectives import OBJECTIVE_REGISTRY, ObjectiveData, PretrainingObjective
from memobert_plugin.objectives import objective_config_classes, on_objective_registered
from memobert_plugin.option_lists import split_list
from memobert_plugin.streams import TEXT, with_stream_fields
from memobert_plugin.tasks.multimodal_task import MultimodalTask, task_config

__all__ = ["PretrainBaseConfig", "MemobertPretrainTask", "pretrain_config", "DEFAULT_OBJECTIVES"]

logger = logging.getLogger(__name__)

TASK_NAME = "memobert_pretrain"
#: the paper's four objectives and their sampling ratios (≈ 40/20/20/20)
DEFAULT_OBJECTIVES = {"wwmlm": 0.4, "span_mvfr": 0.2, "span_mvfc_kl": 0.2, "span_mafr": 0.2}


@dataclass
class PretrainBaseConfig(MultimodalDataConfig):
    objectives: str = field(
        default=",".join(DEFAULT_OBJECTIVES),
        metadata={"help": "comma-separated registered objectives to train"},
    )
    objective_ratios: List[float] = field(
        default_factory=lambda: list(DEFAULT_OBJECTIVES.values()),
        metadata={"help": "per objective, e.g. '[0.4,0.2,0.2,0.2]': sampling ratio (sample mode) or loss "
                  "weight (sum mode); 0 disables one"},
    )
    objective_mode: ChoiceEnum(["sample", "sum"]) = field(
        default="sample",
        metadata={"help": "sample: one objective per training batch, drawn by ratio; sum: all, losses weighted and "
                  "summed. Validation always scores every objective"},
    )
    train_subset: str = II("dataset.train_subset")


def _compose_config() -> type:
    """The task's options: the base fields plus every registered objective's config fields."""
    config = make_dataclass("MemobertPretrainConfig", [], bases=(PretrainBaseConfig, *objective_config_classes()))
    return with_stream_fields(config, frame_limit_field)  # and the streams declared since the base was made


def pretrain_config() -> type:
    """The ``memobert_pretrain`` options class as it is now: an objective registered later (an extension's
    ``--user-dir``) adds its fields, so callers ask here rather than keep a class they imported."""
    return task_config(TASK_NAME)


def _check_probabilities(cfg) -> None:
    """Every ``*_prob`` option (the objectives' masking rates, an extension's too) is a probability."""
    for option in fields(pretrain_config()):
        value = getattr(cfg, option.name, None) if option.name.endswith("_prob") else None
        if value is not None and not 0.0 <= value <= 1.0:  # NaN fails too
            raise ValueError(f"--{option.name.replace('_', '-')} {value}: a probability must be within [0, 1]")


def _prepared_without_fer(data_dir: str) -> bool:
    """Whether ``data_dir``'s dataset.json records faces encoded by a vision encoder with no FER model,
    so that ``memobert-prepare`` wrote no ``visual_fer`` stream on purpose (a missing file otherwise)."""
    path = os.path.join(data_dir, "dataset.json")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as handle:
        splits = json.load(handle).get("splits") or {}
    visual = [(split.get("extractors") or {}).get("visual") or {} for split in splits.values()]
    return bool(visual) and all(v.get("encoder") and not v.get("checkpoint") for v in visual)


@register_task(TASK_NAME, dataclass=_compose_config())
class MemobertPretrainTask(MultimodalTask):
    """Pretrains MEmoBERT: each batch is conditionally masked for one objective (or each)."""

    @classmethod
    def current_config(cls, registered: type) -> type:
        """Rebuilt with every registered objective's options when one is missing (then the streams')."""
        have = {f.name for f in fields(registered)}
        if any(f.name not in have for config in objective_config_classes() for f in fields(config)):
            registered = _compose_config()
        return super().current_config(registered)

    @classmethod
    def option_ranges(cls):
        return {**super().option_ranges(), "frame_mask_span": (1, None)}

    def __init__(self, cfg, vocab):
        super().__init__(cfg, vocab)
        names, ratios = split_list(cfg.objectives), list(cfg.objective_ratios)
        if len(names) != len(ratios):
            raise ValueError(f"--objectives lists {len(names)} objectives but --objective-ratios {len(ratios)} ratios")
        unknown = [n for n in names if n not in OBJECTIVE_REGISTRY]
        if unknown:
            raise ValueError(f"unknown objectives {unknown}; registered: {sorted(OBJECTIVE_REGISTRY)} "
                             "(an extension's objectives need its --user-dir)")
        if not all(math.isfinite(r) and r >= 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f"--objective-ratios must be finite and >= 0 with a positive sum, got {ratios}")
        _check_probabilities(cfg)
        if str(cfg.objective_mode) == "sample" and not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
            normalised = ", ".join(f"{n} {r / sum(ratios):.3f}" for n, r in zip(names, ratios))
            logger.warning("--objective-ratios %s sum to %.3g, not 1: objectives are drawn with the normalised ratios %s",
                           ratios, sum(ratios), normalised)
        data = ObjectiveData(vocab=vocab, stream_dims=self.stream_dims)
        self.objectives: Dict[str, PretrainingObjective] = {n: OBJECTIVE_REGISTRY[n](cfg, data) for n in names}
        self.objective_ratios = ratios
        self._check_streams(dict(zip(names, ratios)))

    def _check_streams(self, ratios: Dict[str, float]) -> None:
        """An objective whose modality the data lacks is never drawn (said once); one whose targets
        are missing while its modality is there cannot work at all (an error, not a later crash)."""
        for name, objective in self.objectives.items():
            if ratios[name] <= 0 or objective.modality == TEXT:
                continue
            if objective.modality not in self.present_streams:
                logger.warning("%s: no %s frames in %s, so objective %s is never drawn", self.cfg.data,
                               objective.modality, self.cfg.data, name)
            elif objective.target_stream and objective.target_stream not in self.present_streams:
                if objective.target_stream == "visual_fer" and _prepared_without_fer(self.cfg.data):
                    logger.warning("%s was prepared without the %s stream (no --fer-model), so objective %s is "
                                   "left out", self.cfg.data, objective.target_stream, name)
                    self.objective_ratios[list(self.objectives).index(name)] = 0.0
                    continue
                raise ValueError(
                    f"{self.cfg.data}: objective {name} needs the {objective.target_stream} stream "
                    f"({{split}}.{objective.target_stream}.npy/.len) beside {objective.modality}; "
                    "prepare it or give the objective a ratio of 0"
                )

    def add_heads(self, model) -> None:
        for name, objective in self.objectives.items():
            if not objective.uses_lm_head:
                model.heads[name] = MLPHead(model.hidden_dim, objective.head_outputs())

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        dataset = self.load_multimodal(split)
        training = split == self.cfg.train_subset
        masked = ObjectiveBatchesDataset(
            dataset,
            list(self.objectives.values()),
            self.objective_ratios,
            mode=str(self.cfg.objective_mode) if training else "sum",
            seed=self.cfg.seed,
            fixed_epoch=None if training else 1,
        )
        self.datasets[split] = self.shuffled(masked, dataset.sizes)


def _refresh_config() -> None:
    """An objective registered later (an extension's --user-dir) adds its options to the task."""
    task_config(TASK_NAME)


on_objective_registered(_refresh_config)
