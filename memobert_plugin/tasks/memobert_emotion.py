"""``memobert_emotion``: emotion recognition (4 classes by default), by finetuning or by prompting, per CV fold
(speaker folds, or the corpus's own fixed train/valid/test split)."""

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import List, Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from memobert_plugin.conf import MultimodalDataConfig
from memobert_plugin.data.folds import CV_SCHEMES, LABELLED_SPLIT, FoldSplit, fold_split, stratified_subset
from memobert_plugin.data.labelled_subset import LabelledSubset
from memobert_plugin.data.multimodal_dataset import TextFormat
from memobert_plugin.data.utterance_meta import FIXED_SUBSETS, UtteranceMeta, read_meta
from memobert_plugin.models.emotion_heads import EMOTION_HEAD
from memobert_plugin.tasks.emotion_readout import EmotionReadout
from memobert_plugin.tasks.multimodal_task import MultimodalTask
from memobert_plugin.tasks.predictions import PredictionRecorder

__all__ = ["MemobertEmotionConfig", "MemobertEmotionTask"]

logger = logging.getLogger(__name__)


@dataclass
class MemobertEmotionConfig(MultimodalDataConfig):
    text_max_tokens: int = field(
        default=120, metadata={"help": "longest text in tokens, template included; the utterance is truncated first"}
    )
    corpus_split: str = field(
        default=LABELLED_SPLIT,
        metadata={"help": "the data dir's split holding every labelled utterance, with {split}.meta.tsv"},
    )
    emotion_labels: str = field(
        default="anger,happy,neutral,sad", metadata={"help": "comma-separated class names, as in the meta file"}
    )
    emotion_head: ChoiceEnum(["finetune", "prompt"]) = field(
        default="finetune",
        metadata={"help": "finetune: new classifier on [CLS]; prompt: label words at the template's [MASK]"},
    )
    prompt_template: str = field(
        default="{utterance} i am [MASK] .",
        metadata={"help": "prompt text with one {utterance} slot and one [MASK]; face and voice follow it"},
    )
    prompt_label_words: str = field(
        default="", metadata={"help": "comma-separated word per class for the [MASK] (default: the class names)"}
    )
    fold: int = field(
        default=1,
        metadata={"help": "cross-validation fold: test on the fold-th speaker (1-based); 0: final model, training on "
                  "every speaker but the last by name, which validates (no test set)"},
    )
    cv_scheme: ChoiceEnum(list(CV_SCHEMES)) = field(
        default="auto",
        metadata={"help": "session: validate on the test speaker's session partner (IEMOCAP, MSP-IMPROV); "
                  "speaker: leave one speaker out, validate on the next; fixed: the corpus's own train/valid/test "
                  "split (the meta file's subset column, e.g. MELD), one fold; auto: fixed when the meta file gives "
                  "subsets, else session when sessions pair speakers, else speaker"},
    )
    train_fraction: float = field(
        default=1.0, metadata={"help": "fraction of the fold's training data, stratified by class (low resource)"}
    )
    train_fraction_seed: int = field(default=1, metadata={"help": "seed of the --train-fraction subsample"})
    predictions_path: str = field(
        default="",
        metadata={"help": "fairseq-validate: write each evaluated utterance's id, gold and predicted class and class "
                  "probabilities to this TSV (rank r > 0 of a distributed run writes PATH.rank<r>)"},
    )


@register_task("memobert_emotion", dataclass=MemobertEmotionConfig)
class MemobertEmotionTask(MultimodalTask):
    """Train on a fold's training speakers, select on its validation speaker, test on the held-out one.

    ``--valid-subset valid`` (the default) picks checkpoint_best on the validation speaker;
    ``fairseq-validate --valid-subset test`` scores the test speaker afterwards.
    """

    cfg: MemobertEmotionConfig

    @classmethod
    def option_ranges(cls):
        # a train fraction of 0 is a zero-shot fold's test (memobert-cv --fractions 0); training refuses it
        return {**super().option_ranges(), "fold": (0, None), "train_fraction": (0, 1)}

    def __init__(self, cfg: MemobertEmotionConfig, vocab):
        super().__init__(cfg, vocab)
        self.readout = EmotionReadout(cfg, vocab)
        self.class_names = self.readout.class_names
        self._corpus = None

    # the labelled corpus is read when a split is loaded: a task built to predict (memobert-predict) has none
    @property
    def _meta_path(self) -> str:
        return os.path.join(self.cfg.data, f"{self.cfg.corpus_split}.meta.tsv")

    @cached_property
    def meta(self) -> List[UtteranceMeta]:
        return read_meta(self._meta_path)

    @cached_property
    def labels(self) -> List[int]:
        """Each corpus row's class id."""
        index = {name: i for i, name in enumerate(self.class_names)}
        ids = []
        for line_no, row in enumerate(self.meta, start=2):
            name = self.class_of(row.label)
            if name not in index:
                raise ValueError(
                    f"{self._meta_path}:{line_no}: utterance {row.id!r} has label {row.label!r}, not one of "
                    f"{self.class_names} (--emotion-labels); map or remove such utterances when preparing the data"
                )
            ids.append(index[name])
        return ids

    @cached_property
    def fold(self) -> FoldSplit:
        fold = fold_split(self.meta, self.cfg.fold, str(self.cfg.cv_scheme))
        held_out = ("the corpus's own split" if fold.scheme == "fixed"
                    else f"test speaker {fold.test_speaker}, validation {','.join(fold.valid_speakers)}")
        logger.info("fold %d (%s): %s, %d/%d/%d utterances", fold.fold, fold.scheme, held_out,
                    len(fold.train), len(fold.valid), len(fold.test))
        return fold

    @cached_property
    def predictions(self) -> Optional[PredictionRecorder]:
        if not self.cfg.predictions_path:
            return None
        return PredictionRecorder(self.cfg.predictions_path, self.class_names, [row.id for row in self.meta],
                                  evaluated={*self.fold.valid.tolist(), *self.fold.test.tolist()})

    def class_of(self, label: str) -> str:
        """The class an annotated label belongs to; a task with another label set overrides this."""
        return label

    def describe_utterances(self, indices: List[int]) -> str:
        return f"{[self.meta[i].id for i in indices]} (ids in {self.cfg.corpus_split}.meta.tsv)"

    def text_format(self) -> TextFormat:
        return self.readout.text_format()

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        if split not in FIXED_SUBSETS:
            raise ValueError(f"memobert_emotion subsets are {FIXED_SUBSETS} of fold {self.cfg.fold}, not {split!r}")
        if self._corpus is None:
            self._corpus = self.load_multimodal(self.cfg.corpus_split)
            if len(self._corpus) != len(self.meta):
                raise ValueError(
                    f"{self.cfg.data}: {self.cfg.corpus_split}.meta.tsv has {len(self.meta)} rows but the split has "
                    f"{len(self._corpus)} utterances"
                )
        indices = self.fold.subset(split)
        if split == "train":
            indices = stratified_subset(indices, self.labels, self.cfg.train_fraction, self.cfg.train_fraction_seed)
        dataset = LabelledSubset(self._corpus, indices, self.labels)
        logger.info("fold %d %s: %d utterances", self.cfg.fold, split, len(dataset))
        self.datasets[split] = self.shuffled(dataset, dataset.sizes)

    def add_heads(self, model) -> None:
        model.register_emotion_head(EMOTION_HEAD, self.readout.build_head(model.hidden_dim))

    def class_logits(self, model, net_input) -> torch.Tensor:
        """``[batch, classes]`` scores for a collated batch's ``net_input``."""
        return model.emotion_logits(net_input, EMOTION_HEAD)

    def record_predictions(self, sample, logits: torch.Tensor) -> None:
        """Called by the criterion with each batch's scores; kept only for evaluation passes (no gradients)."""
        if self.predictions is not None and not torch.is_grad_enabled():
            self.predictions.record(sample["id"], sample["target"], logits.detach())

    def begin_valid_epoch(self, epoch, model) -> None:
        super().begin_valid_epoch(epoch, model)
        if self.predictions is not None:  # fairseq-train's next validation: its predictions replace the last one's
            self.predictions.start_pass()

    def reduce_metrics(self, logging_outputs, criterion) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        if self.predictions is not None:  # after an evaluated batch (fairseq-train) or subset (fairseq-validate)
            self.predictions.flush()
