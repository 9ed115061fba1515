"""What the memobert tasks share: the vocabulary, the feature streams, pretrained initialisation."""

from __future__ import annotations

import glob
import logging
import os
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from fairseq.data import ListDataset, SortDataset, data_utils
from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY, FairseqTask
from omegaconf import open_dict

from memobert_plugin.checkpoints.policy import require_memobert_model
from memobert_plugin.conf import MultimodalDataConfig, frame_limit_field, frame_limits
from memobert_plugin.data.consistency import check_split_files
from memobert_plugin.data.feature_store import FeatureStore, npy_shape
from memobert_plugin.data.given_frames import GivenFrames
from memobert_plugin.data.multimodal_dataset import MultimodalDataset, TextFormat
from memobert_plugin.data.non_finite import report_non_finite
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.models.pretrained import (
    bert_shape,
    load_bert_weights,
    load_memobert_weights,
    memobert_checkpoint_shape,
)
from memobert_plugin.option_ranges import check_range
from memobert_plugin.registered_configs import replace_registered_config
from memobert_plugin.streams import FrameStream, frame_streams, input_streams, on_stream_registered, with_stream_fields

__all__ = ["MultimodalTask", "task_config"]

logger = logging.getLogger(__name__)


class MultimodalTask(FairseqTask):
    """Base of ``memobert_pretrain`` and ``memobert_emotion``."""

    is_memobert = True  # checkpoint_policy.MEMOBERT_MARK: a memobert task, whose checkpoints memobert may build

    cfg: MultimodalDataConfig

    def __init__(self, cfg: MultimodalDataConfig, vocab: BertVocabulary):
        super().__init__(cfg)
        self.vocab = vocab
        self.stream_dims, self.present_streams = self._stream_dims(cfg.data)

    @classmethod
    def current_config(cls, registered: type) -> type:
        """The task's options class as the declarations are now: ``registered`` (fairseq's), with a frame
        limit for every stream declared since (the same class when nothing is missing)."""
        return with_stream_fields(registered, frame_limit_field)

    @classmethod
    def add_args(cls, parser):
        """fairseq's options of the task as the declarations are now, whatever order they were made in."""
        name = next((n for n, task in TASK_REGISTRY.items() if task is cls), None)
        if name in TASK_DATACLASS_REGISTRY:
            task_config(name)
        super().add_args(parser)

    @classmethod
    def option_ranges(cls) -> Dict[str, tuple]:
        """Option -> (low, high[, low_open]) (see :func:`~memobert_plugin.option_ranges.check_range`),
        checked before any file is read; subclasses add theirs."""
        return {"text_max_tokens": (3, None), **{s.limit_option: (1, None) for s in input_streams()}}

    @classmethod
    def setup_task(cls, cfg: MultimodalDataConfig, **kwargs):
        for option, bounds in cls.option_ranges().items():
            value = getattr(cfg, option, None)
            if value is not None:  # an option of an objective that is not registered in this run
                check_range(option, value, *bounds)
        return cls(cfg, cls.load_dictionary(os.path.join(cfg.data, "dict.txt")))

    @classmethod
    def load_dictionary(cls, filename: str) -> BertVocabulary:
        """Used by fairseq-preprocess too (``--task memobert_pretrain``): ids stay BERT's ids."""
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"{filename}: no dictionary; the data dir must hold the dict.txt used to binarize it")
        return BertVocabulary.load(filename)

    @staticmethod
    def _stream_dims(data_dir: str) -> Tuple[Dict[str, int], Set[str]]:
        """Each stream's feature size (its declared one when absent), and which streams the data dir has at all."""
        dims, present = {stream.name: stream.dim for stream in frame_streams()}, set()
        for stream in dims if data_dir else ():  # no data dir: a bundle's task, for prediction
            found = sorted(glob.glob(os.path.join(data_dir, f"*.{stream}.npy")))
            if found:
                shape = npy_shape(found[0])
                if len(shape) != 2:
                    raise ValueError(f"{found[0]}: expected a 2-d frame array, got shape {shape}")
                dims[stream] = int(shape[1])
                present.add(stream)
        return dims, present

    @property
    def source_dictionary(self) -> BertVocabulary:
        return self.vocab

    @property
    def target_dictionary(self) -> BertVocabulary:
        return self.vocab

    def max_positions(self) -> int:
        limits = frame_limits(self.cfg)
        return self.cfg.text_max_tokens + sum(limits[stream.name] for stream in input_streams())

    def text_format(self) -> TextFormat:
        return TextFormat(self.vocab.bos(), self.vocab.eos(), self.cfg.text_max_tokens)

    def load_multimodal(self, split: str) -> MultimodalDataset:
        """The split's text and frame streams, checked against each other and the model dims."""
        path = os.path.join(self.cfg.data, split)
        check_split_files(self.cfg.data, split)
        if os.path.isfile(path + ".bin") and os.path.getsize(path + ".bin") == 0:
            raise ValueError(f"{path}.bin: split {split!r} has no utterances; prepare it with some, "
                             "or train and validate on other splits (--train-subset, --valid-subset)")
        text = data_utils.load_indexed_dataset(path, self.vocab)
        if text is None:
            raise FileNotFoundError(f"split {split!r}: no binarized text at {path}.bin/.idx")
        self._check_token_ids(text, path)
        stores = {s: FeatureStore.open_if_present(self.cfg.data, split, s) for s in self.stream_dims}
        for stream, store in stores.items():
            if store is not None and store.dim != self.stream_dims[stream]:
                raise ValueError(
                    f"{store.npy_path}: {store.dim}-d features, but this data dir's {stream} stream is "
                    f"{self.stream_dims[stream]}-d elsewhere"
                )
        return MultimodalDataset(
            text, self.text_format(), self.vocab.pad(), stores, self.stream_dims, frame_limits(self.cfg), path)

    def build_dataset_for_inference(self, src_tokens: Sequence[Sequence[int]],
                                    frames: Dict[str, Sequence[Optional[np.ndarray]]],
                                    names: Sequence[str]) -> MultimodalDataset:
        """Utterances given in memory as a split's dataset: the same items, limits and batches.

        ``src_tokens``: each utterance's vocabulary ids (no [CLS]/[SEP]); ``frames``: stream ->
        per-utterance ``[frames, dim]`` arrays (``None``: none); ``names`` name utterances in errors.
        The model's feature dims apply, so call it after the model is built.
        """
        text = ListDataset([torch.tensor([*ids, self.vocab.eos()], dtype=torch.long) for ids in src_tokens],
                           sizes=np.array([len(ids) + 1 for ids in src_tokens], dtype=np.int64))
        stores = {stream: GivenFrames(stream, given, self.stream_dims[stream], names) for stream, given in frames.items()}
        return MultimodalDataset(text, self.text_format(), self.vocab.pad(), stores, self.stream_dims,
                                 frame_limits(self.cfg), "the given utterances")

    def _check_token_ids(self, text, path: str) -> None:
        """Every token id must index the dictionary: a shorter dict.txt fails here, not deep in a batch."""
        buffer = getattr(text, "_bin_buffer", None)  # fairseq's mmap dataset: its .bin as one array, read once
        if buffer is None or len(buffer) == 0:
            return
        largest = int(np.frombuffer(buffer, dtype=text._index.dtype).max())
        if largest >= len(self.vocab):
            raise ValueError(
                f"{path}.bin uses token id {largest} but {os.path.join(self.cfg.data, 'dict.txt')} has only "
                f"{len(self.vocab)} entries: the text was binarized with another dictionary; put that dict.txt "
                "beside it, or binarize the text again"
            )

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """fairseq's step, then name the batch if its loss is not finite.

        Checked here, after the backward pass is queued, rather than in the criterion's forward:
        the forward never waits for the device, and fairseq's gradient-norm check waits for it
        right after this anyway.
        """
        loss, sample_size, logging_output = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        report_non_finite(loss, sample, self)
        return loss, sample_size, logging_output

    def describe_utterances(self, indices: List[int]) -> str:
        """How logs name a batch's utterances: by data index (a task that reads utterance ids names those)."""
        return f"(data indices) {indices}"

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, *args, **kwargs):
        # fairseq takes a batch size of 0 or -1 for "no limit": the whole split would be one batch
        for option, value in (("batch_size", max_sentences), ("max_tokens", max_tokens)):
            if value is not None:
                check_range(option, value, 1)
        return super().get_batch_iterator(dataset, max_tokens, max_sentences, *args, **kwargs)

    def shuffled(self, dataset, sizes: np.ndarray):
        """Shuffle (seeded) then sort by length, as fairseq's masked_lm task does.

        The order depends on the seed only, not on the epoch: fairseq loads the training split
        once, at the first epoch of the process, which is a later one when a run resumes; an
        epoch-seeded order would then differ from the uninterrupted run's. fairseq's batch
        iterator reshuffles the batches every epoch (seed + epoch) either way.
        """
        with data_utils.numpy_seed(self.cfg.seed):
            shuffle = np.random.permutation(len(sizes))
        return SortDataset(dataset, sort_order=[shuffle, sizes])

    # --- model ------------------------------------------------------------------------
    def build_model(self, cfg, from_checkpoint: bool = False):
        """Fill feature dims from the data, adopt a pretrained source's shape, load its weights.

        When fairseq rebuilds a model to load a checkpoint into it (``from_checkpoint``),
        the recorded config is used as is and nothing pretrained is read again.
        """
        # fairseq would build any registered model the config (a checkpoint's, when from_checkpoint) names
        require_memobert_model(cfg.get("_name"), "the checkpoint's model config" if from_checkpoint else "--arch")
        with open_dict(cfg):
            if not from_checkpoint:
                self._adopt_pretrained_shape(cfg)
            self._check_feature_dims(cfg, from_checkpoint)
        model = super().build_model(cfg, from_checkpoint)
        self.add_heads(model)
        if not from_checkpoint:
            if cfg.memobert_init:
                load_memobert_weights(model, cfg.memobert_init).log()
            elif cfg.bert_init:
                load_bert_weights(model, cfg.bert_init, self.vocab.symbols).log()
        return model

    def add_heads(self, model) -> None:
        """Subclasses attach their heads to ``model.heads`` (before any weights are loaded)."""

    def _adopt_pretrained_shape(self, cfg) -> None:
        if cfg.memobert_init and cfg.bert_init:
            raise ValueError("give --memobert-init or --bert-init, not both")
        if cfg.memobert_init:
            shape, source = memobert_checkpoint_shape(cfg.memobert_init), cfg.memobert_init
        elif cfg.bert_init:
            shape, source = bert_shape(cfg.bert_init), cfg.bert_init
        else:
            return
        changed = {k: v for k, v in shape.items() if cfg.get(k) not in (v, 0)}
        if changed:
            logger.info("model shape taken from %s: %s", source, changed)
        for key, value in shape.items():
            cfg[key] = value

    def _check_feature_dims(self, cfg, from_checkpoint: bool) -> None:
        for stream, key in ((s.name, s.dim_option) for s in input_streams()):
            if from_checkpoint and not cfg.get(key):
                # a checkpoint from before the stream was declared: the model has no embedder for it
                if stream in self.present_streams:
                    logger.warning("%s: the model was trained without %s frames; they are not read", self.cfg.data, stream)
                continue
            if stream not in self.present_streams:
                # nothing of it to read: the model keeps its size (a new model the default one)
                self.stream_dims[stream] = cfg[key] = cfg.get(key) or self.stream_dims[stream]
                continue
            data_dim = self.stream_dims[stream]
            if not cfg.get(key):
                cfg[key] = data_dim
            elif cfg[key] != data_dim:
                origin = "the checkpoint" if from_checkpoint or cfg.memobert_init else f"--{key.replace('_', '-')}"
                raise ValueError(
                    f"{self.cfg.data}: {stream} features are {data_dim}-d but {origin} expects {cfg[key]}-d; "
                    "extract the features with the same model as the checkpoint's data"
                )


def task_config(name: str) -> type:
    """The options class of the memobert task ``name`` as the declarations are now.

    Streams and objectives declared after a task was registered (an extension's ``--user-dir``, in any
    import order) add options to it, so fairseq's registered class is swapped for a new one: a class
    imported or captured earlier may lack them. Ask here, at use time, never keep one.
    """
    if name not in TASK_DATACLASS_REGISTRY:
        raise ValueError(f"task {name!r} was registered without its options class: "
                         f"register it with @register_task({name!r}, dataclass=...)")
    task, registered = TASK_REGISTRY[name], TASK_DATACLASS_REGISTRY[name]
    config = task.current_config(registered)
    if config is not registered:
        replace_registered_config("task", name, task, config)
    return config


def _add_frame_limit_option(stream: FrameStream) -> None:
    """A stream declared later (an extension's --user-dir) adds its --{stream}-max-frames to every memobert task."""
    for name, task in list(TASK_REGISTRY.items()):
        if issubclass(task, MultimodalTask) and name in TASK_DATACLASS_REGISTRY:
            task_config(name)


on_stream_registered(_add_frame_limit_option)
