"""``memobert_valence``: 3-class valence (negative / neutral / positive) from the 4-class annotations."""

from dataclasses import dataclass, field

from fairseq.tasks import register_task

from memobert_plugin.option_lists import split_list
from memobert_plugin.tasks import MemobertEmotionTask, task_config

__all__ = ["ValenceConfig", "MemobertValenceTask"]


@dataclass
class ValenceConfig(task_config("memobert_emotion")):  # as it is now: with every stream declared so far
    emotion_labels: str = field(default="negative,neutral,positive", metadata={"help": "the valence classes"})
    valence_map: str = field(
        default="anger:negative,sad:negative,frustrated:negative,neutral:neutral,happy:positive,excited:positive",
        metadata={"help": "annotated label -> valence class, comma-separated label:class pairs"},
    )


@register_task("memobert_valence", dataclass=ValenceConfig)
class MemobertValenceTask(MemobertEmotionTask):
    """Everything of memobert_emotion (folds, heads, prompting, WA/UAR); only the classes differ."""

    def __init__(self, cfg: ValenceConfig, vocab):
        self.valence_of = dict(pair.split(":") for pair in split_list(cfg.valence_map))
        super().__init__(cfg, vocab)

    def class_of(self, label: str) -> str:
        return self.valence_of.get(label, label)
