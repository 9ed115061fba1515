"""Swapping the config class fairseq holds for a registered task or model, when options are added later
(an extension's objective or stream, registered under ``--user-dir`` before fairseq parses options)."""

from fairseq.models import MODEL_DATACLASS_REGISTRY
from fairseq.tasks import TASK_DATACLASS_REGISTRY
from hydra.core.config_store import ConfigStore

__all__ = ["replace_registered_config"]

_REGISTRIES = {"task": TASK_DATACLASS_REGISTRY, "model": MODEL_DATACLASS_REGISTRY}


def replace_registered_config(group: str, name: str, cls: type, config: type) -> None:
    """From now on fairseq parses, merges and stores ``name``'s options (``group``: task or model) with ``config``."""
    _REGISTRIES[group][name] = config
    setattr(cls, "__dataclass", config)  # what fairseq's add_args reads
    node = config()
    node._name = name
    ConfigStore.instance().store(name=name, group=group, node=node, provider="fairseq")
