"""Launcher configuration: YAML files checked against dataclass schemas, with ``key=value`` overrides."""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["Resources", "PretrainConfig", "FoldOptions", "CVConfig", "CONFIG_DIR", "config_path", "load_config", "ConfigError", "waits",
           "PrepareConfig", "option_flags"]

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")


def config_path(name_or_path: str) -> str:
    """A YAML file as given, or the packaged ``CONFIG_DIR/<name>.yaml`` for a bare name."""
    if os.path.isfile(name_or_path) or os.sep in name_or_path or name_or_path.endswith(".yaml"):
        return name_or_path
    packaged = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
    if not os.path.isfile(packaged):
        names = sorted(f[: -len(".yaml")] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
        raise ConfigError(f"--config {name_or_path}: no such file, nor a packaged configuration ({', '.join(names)})")
    return packaged
CLUSTERS = ("slurm", "local")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


@dataclass
class Resources:
    """What one job (or one array task) asks the scheduler for."""

    nodes: int = 1
    gpus_per_node: int = 0  # 0: train on CPU (gloo between processes)
    tasks_per_node: Optional[int] = None  # one process per task; default: one per GPU, 1 on CPU
    cpus_per_task: int = 4  # also the number of torch threads of each task
    mem_gb: float = 16
    timeout_min: int = 60
    partition: Optional[str] = None
    constraint: Optional[str] = None
    signal_delay_s: int = 120  # USR2 this long before the time limit: the job requeues itself
    max_timeouts: int = 10  # requeues after a time-out before giving up (preemptions do not count)
    additional: Dict[str, Any] = field(default_factory=dict)  # more sbatch options, e.g. {account: x, qos: y}

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or max(self.gpus_per_node, 1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks


@dataclass
class PretrainConfig:
    """``memobert-launch pretrain``: one fairseq-train run of memobert_pretrain over nodes x tasks."""

    cluster: str = "slurm"
    data: str = MISSING  # data-bin directory with train and valid splits
    save_dir: str = MISSING  # checkpoints; a rerun or requeued job resumes from its checkpoint_last.pt
    log_dir: Optional[str] = None  # submitit's scripts and logs; default <save_dir>/submitit
    name: str = "memobert-pretrain"
    distributed_port: Optional[int] = None  # default: derived from the job id, so each job gets its own
    wait: Optional[bool] = None  # block until the job ends; default: yes on local, no on Slurm
    resources: Resources = field(default_factory=Resources)
    fairseq: Dict[str, Any] = field(default_factory=dict)  # fairseq-train options: lr: 5e-5 → --lr 5e-5
    extra_args: List[str] = field(default_factory=list)  # further fairseq-train arguments, verbatim


@dataclass
class FoldOptions:
    """Per-fold training options, as in ``memobert-cv run`` (FoldJob's fields)."""

    arch: str = "memobert_base"
    lr: Optional[float] = None  # None: 5e-5 on full data, 3e-5 on a fraction
    max_epoch: int = 15
    batch_size: int = 32
    keep_checkpoints: bool = False
    extra_train_args: List[str] = field(default_factory=list)


@dataclass
class CVConfig:
    """``memobert-launch cv`` / ``collect``: a cross-validation sweep as a job array, and its tables."""

    cluster: str = "slurm"
    out: str = MISSING  # sweep directory: one subdirectory per fold job, then results.md / .csv
    corpora: Dict[str, str] = MISSING  # name: labelled data dir (with all.meta.tsv)
    settings: List[str] = field(default_factory=lambda: ["direct", "bert_direct", "pretrain_finetune", "pretrain_prompt"])
    folds: str = "all"  # 'all', '1,2,5' or '1-4'
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    fractions: List[float] = field(default_factory=lambda: [1.0])
    pretrained: Dict[str, str] = field(default_factory=dict)  # label: memobert_pretrain checkpoint
    bert_init: str = ""  # Hugging Face BERT directory for bert_direct
    job: FoldOptions = field(default_factory=FoldOptions)
    array_parallelism: int = 16  # fold jobs running at once
    log_dir: Optional[str] = None  # default <out>/submitit
    name: str = "memobert-cv"
    wait: Optional[bool] = None  # block until the sweep ends; default: yes on local, no on Slurm
    resources: Resources = field(default_factory=Resources)


@dataclass
class PrepareConfig:
    """``memobert-launch prepare``: memobert-prepare with its acoustic and visual stages as a job array."""

    cluster: str = "slurm"
    manifest: str = MISSING  # memobert-prepare --manifest
    out: str = MISSING  # the data dir (--out); work files under <out>/work/<split> unless prepare.work_dir is set
    split: str = "train"
    stages: List[str] = field(default_factory=lambda: ["acoustic", "visual"])  # run as arrays, in this order
    tasks: int = 4  # array tasks per stage, each taking every tasks-th shard
    array_parallelism: int = 16  # tasks running at once
    prepare: Dict[str, Any] = field(default_factory=dict)  # memobert-prepare options: vocab, wav2vec2, fer_model, ...
    log_dir: Optional[str] = None  # default <out>/submitit
    name: str = "memobert-prepare"
    wait: Optional[bool] = None  # block until the write step ends; default: yes on local, no on Slurm
    resources: Resources = field(default_factory=Resources)


T = TypeVar("T")


def option_flags(options: Mapping[str, Any], section: str) -> List[str]:
    """A command's options from the ``section`` block: ``{lr: 5e-5, no_epoch_checkpoints: true, bert_init: null}``
    → ``--lr 5e-05 --no-epoch-checkpoints``."""
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is None or value is False:
            continue
        elif isinstance(value, (list, tuple, dict)):
            raise ConfigError(f"{section}.{key}: give a single value (write lists as the command does, e.g. '1,2')")
        else:
            argv += [flag, str(value)]
    return argv


def waits(config) -> bool:
    """Whether the launcher blocks until its jobs end: as configured, else on the local executor only."""
    return config.wait if config.wait is not None else config.cluster == "local"


def load_config(schema: Type[T], path: Optional[str], overrides: Sequence[str] = (), cluster: Optional[str] = None) -> T:
    """The schema's defaults, then the YAML file, then ``key=value`` overrides, then ``--cluster``.

    Unknown keys, wrong types and missing required values raise ConfigError naming the key.
    """
    try:
        merged = OmegaConf.structured(schema)
        if path:
            if not os.path.isfile(path):
                raise ConfigError(f"config file {path} does not exist")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        if cluster:
            merged.cluster = cluster
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"missing required value(s): {', '.join(missing)} (set them in the YAML or as key=value)")
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path or 'configuration'}: {exc}") from None
    _check(config)
    return config


def _check(config) -> None:
    if config.cluster not in CLUSTERS:
        raise ConfigError(f"cluster must be one of {CLUSTERS}, got {config.cluster!r}")
    res = config.resources
    if res.gpus_per_node and res.tasks != res.gpus_per_node:
        raise ConfigError(
            f"resources.tasks_per_node={res.tasks_per_node} with gpus_per_node={res.gpus_per_node}: "
            "run one task per GPU (leave tasks_per_node unset)"
        )
    if config.cluster == "local" and res.nodes != 1:
        raise ConfigError(f"the local executor runs on this machine only: resources.nodes must be 1, got {res.nodes}")
    if res.signal_delay_s >= res.timeout_min * 60:
        raise ConfigError(
            f"resources.signal_delay_s={res.signal_delay_s} is not shorter than timeout_min={res.timeout_min} minutes"
        )
