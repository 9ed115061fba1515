"""``memobert-prepare``: manifest -> features -> a data dir for ``fairseq-train --task memobert_*``.

Stages (each a subcommand; ``all`` runs them in order):

  manifest       validate the manifest and split it into shards
  sentencepiece  train a sentencepiece model on the split's texts (instead of a BERT vocab.txt)
  text           tokenise the transcripts
  acoustic       speech-encoder (or openSMILE eGeMAPS) features of the audio   (needs the "extract" extra)
  visual         speaker's faces -> ViT/CLIP or DenseNet FER features (needs the "extract" extra)
  write          assemble dict.txt, binarized text, feature stores (standardised),
                 meta.tsv, report.tsv, dataset.json

Every stage resumes where a killed run stopped. See docs/prepare.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import sys
from typing import List, Optional, Tuple

from memobert_plugin.option_lists import split_list
from memobert_plugin.option_ranges import ranged
from memobert_plugin.output_lock import OutputBusyError, output_lock
from memobert_plugin.prepare.manifest import PAPER_LABELS
from memobert_plugin.prepare.report import read_problems
from memobert_plugin.prepare.shards import (
    DEFAULT_SHARD_SIZE,
    ShardPlan,
    StageIncomplete,
    disable_torchaudio,
    make_plan,
    run_stage,
)
from memobert_plugin.prepare.stages.text import TOKENIZERS, TextStage, train_sentencepiece
from memobert_plugin.prepare.media.voice_activity import VAD_METHODS

__all__ = ["main", "build_parser", "parse_arguments"]

logger = logging.getLogger(__name__)

SENTENCEPIECE_MODEL = "sentencepiece.model"
ACOUSTIC_FEATURES = ("wav2vec2", "egemaps")
WAV2VEC2_POOL = 3  # 20 ms wav2vec 2.0 frames -> 60 ms


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="TSV manifest (docs/prepare.md)")
    parser.add_argument("--out", required=True, help="data dir to write (created if missing)")
    parser.add_argument("--split", default="train", help="split name of this manifest (default: train)")
    parser.add_argument("--work-dir", help="where shards and intermediate files go (default: OUT/work/SPLIT)")
    parser.add_argument("--shard-size", type=ranged(int, 1), help=f"utterances per shard (default: as planned before, else "
                                                        f"{DEFAULT_SHARD_SIZE}); changing it redoes every stage")


def _workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=ranged(int, 1), default=1,
                        help="extractor processes, each loading the models once and taking whole shards (default: 1)")
    parser.add_argument("--threads", type=ranged(int, 1), default=1,
                        help="torch threads per extractor process (default: 1). Features depend on this number, "
                             "not on --workers: use --workers to take more cores")


def _shard_set(value: str) -> Tuple[int, int]:
    task, _, tasks = value.partition("/")
    if not (task.isdigit() and tasks.isdigit() and int(task) < int(tasks)):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got {value!r}")
    return int(task), int(tasks)


def _array_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", type=_shard_set, metavar="K/N",
                        help="only shards K, K+N, K+2N, ...: task K (from 0) of an N-task cluster array; a later run "
                             "without --shards records the stage (docs/cluster.md)")


def _text_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="wordpiece")
    parser.add_argument("--vocab", help="BERT vocab.txt (wordpiece), e.g. bert-base-uncased's")
    parser.add_argument("--spm-model", help=f"sentencepiece model (default: OUT/{SENTENCEPIECE_MODEL}, trained "
                                            "on this split's texts when missing)")
    parser.add_argument("--spm-vocab-size", type=ranged(int, 8), default=8000)
    parser.add_argument("--spm-model-type", choices=("unigram", "bpe"), default="unigram")


def _pool(text: str):
    """``--pool``: a number of frames (>= 1), or ``utterance``."""
    return text if text == "utterance" else ranged(int, 1)(text)


def _layers(text: str):
    """``--layer``: layers counted from 1 (one, a range or a list)."""
    from memobert_plugin.prepare.encoders.speech import parse_layers

    try:
        layers = parse_layers(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    for layer in layers or ():
        ranged(int, 1)(str(layer))
    return layers


def _acoustic_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--acoustic-features", choices=ACOUSTIC_FEATURES, default="wav2vec2",
                        help="wav2vec2: a speech encoder (needs --wav2vec2), or egemaps: openSMILE's eGeMAPS "
                             "descriptors, pooled to 60 ms, for users without an encoder (default: wav2vec2)")
    parser.add_argument("--wav2vec2", "--speech-encoder", dest="wav2vec2", metavar="MODEL",
                        help="speech encoder: a transformers model directory (Wav2Vec2, HuBERT, WavLM, data2vec-audio, "
                             "Whisper: its encoder) or a fairseq wav2vec2, hubert or data2vec_audio checkpoint (.pt); "
                             "docs/prepare.md")
    parser.add_argument("--trim-silence", action="store_true",
                        help="cut the silence before the first and after the last voiced sample (see --vad)")
    parser.add_argument("--layer", type=_layers,
                        help="transformer layer to read, counted from 1 (9), or the mean of a range (6-9) or list "
                             "(3,6,9) (default: the last)")
    parser.add_argument("--pool", type=_pool,
                        help="speech-encoder features: average every N 20-ms frames, or 'utterance': one mean "
                             f"frame per utterance (default: {WAV2VEC2_POOL}, 20 -> 60 ms)")


def _visual_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vision-encoder", metavar="DIR",
                        help="transformers ViT or CLIP (vision) model directory: its features of the face crops are "
                             "the visual stream; no FER model needs training (docs/prepare.md)")
    parser.add_argument("--fer-model", help="checkpoint written by memobert-train-fer: the visual stream when no "
                                            "--vision-encoder is given, and the FER+ probabilities (visual_fer) "
                                            "that pretraining's span_mvfc_kl predicts")
    parser.add_argument("--fps", type=ranged(float, 0, low_open=True), default=10.0, help="video frames sampled per second (default: 10)")
    parser.add_argument("--detect-every", type=ranged(int, 1), default=5,
                        help="search whole frames for faces every N sampled frames; frames between two keyframes "
                             "with the same, unmoved faces reuse their boxes (default: 5; 1: search every frame)")


def _extract_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-seconds", type=ranged(float, 0, low_open=True), default=10.0, help="clip audio and video (default: 10 s)")
    parser.add_argument("--device", default="cpu", help="torch device for the extractors (cpu, cuda, cuda:1)")
    parser.add_argument("--vad", choices=VAD_METHODS, default="auto",
                        help="voice activity for the active speaker and --trim-silence: silero (the silero-vad "
                             "package's network), energy (a threshold), auto: silero when installed (default)")


def _label_set(text: str) -> Optional[List[str]]:
    """``--labels``: the comma-separated label set, or None for ``none`` (no check)."""
    if text.strip().lower() == "none":
        return None
    labels = split_list(text)
    if not labels:
        raise argparse.ArgumentTypeError("empty: give the label set, or 'none' for no check")
    return labels


def _write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--require", default="text",
                        help="comma-separated stages an utterance must pass to be kept (text, acoustic, visual; "
                             "default: text). A failure in another stage leaves that modality empty")
    parser.add_argument("--labels", type=_label_set, default=",".join(PAPER_LABELS),
                        help="comma-separated label set; an utterance with another (non-empty) label is dropped "
                             f"and reported. 'none': no check (default: {','.join(PAPER_LABELS)})")
    parser.add_argument("--feature-stats", default="auto", metavar="SOURCE",
                        help="whose per-dimension mean and std standardise the stored acoustic and visual features: "
                             "'auto' (default): those the data dir's other splits were written with, else this "
                             "split's own (write the training split first); a split name: that split's; a data dir "
                             "(a path containing '/', e.g. the pretraining corpus's): that data dir's; 'none': stored "
                             "as extracted (docs/prepare.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memobert-prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sub = {name: commands.add_parser(name, help=help_text) for name, help_text in (
        ("manifest", "validate and shard the manifest"),
        ("sentencepiece", "train a sentencepiece model on the texts"),
        ("text", "tokenise"),
        ("acoustic", "speech encoder features"),
        ("visual", "face features (a vision encoder's or a FER model's)"),
        ("write", "assemble the data dir"),
        ("all", "every stage; acoustic/visual only when their model is given"),
    )}
    for parser_ in sub.values():
        _common(parser_)
    for name in ("acoustic", "visual", "all"):
        _workers(sub[name])
    for name in ("acoustic", "visual"):
        _array_task(sub[name])
    for name in ("sentencepiece", "text", "all"):
        _text_options(sub[name])
    _acoustic_options(sub["acoustic"])
    _acoustic_options(sub["all"])
    _visual_options(sub["visual"])
    _visual_options(sub["all"])
    for name in ("acoustic", "visual", "all"):
        _extract_options(sub[name])
    for name in ("write", "all"):
        _write_options(sub[name])
    return parser


def parse_arguments(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The parsed command line, options that do not go together refused (as argparse does: exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "pool", None) is not None and args.acoustic_features != "wav2vec2":
        parser.error("--pool applies to --acoustic-features wav2vec2; eGeMAPS descriptors are always pooled to 60 ms")
    return args


def _plan(args: argparse.Namespace) -> ShardPlan:
    work_dir = args.work_dir or os.path.join(args.out, "work", args.split)
    return make_plan(args.manifest, work_dir, args.shard_size)


def _entry_texts(plan: ShardPlan):
    for shard in range(plan.num_shards):
        yield from (u.text for u in plan.read_entries(shard))


def _spm_model(args: argparse.Namespace) -> str:
    return args.spm_model or os.path.join(args.out, SENTENCEPIECE_MODEL)


def _text_stage(args: argparse.Namespace, plan: ShardPlan) -> TextStage:
    if args.tokenizer == "wordpiece":
        if not args.vocab:
            raise ValueError("--tokenizer wordpiece needs --vocab (a BERT vocab.txt)")
        return TextStage("wordpiece", args.vocab)
    model = _spm_model(args)
    if not os.path.isfile(model):
        if args.spm_model:
            raise FileNotFoundError(f"--spm-model {model}: no such file")
        _train_sentencepiece(args, plan)
    return TextStage("sentencepiece", model)


def _train_sentencepiece(args: argparse.Namespace, plan: ShardPlan) -> None:
    model = _spm_model(args)
    os.makedirs(os.path.dirname(os.path.abspath(model)), exist_ok=True)
    logger.info("training sentencepiece (%s, %d pieces) on %d texts -> %s", args.spm_model_type,
                args.spm_vocab_size, plan.num_entries, model)
    tokenizer = train_sentencepiece(_entry_texts(plan), model, args.spm_vocab_size, args.spm_model_type)
    logger.info("sentencepiece vocabulary: %d pieces", len(tokenizer.symbols))


def _wants_acoustic(args: argparse.Namespace) -> bool:
    return args.acoustic_features != "wav2vec2" or bool(args.wav2vec2)


def _acoustic_stage(args: argparse.Namespace):
    if args.acoustic_features != "wav2vec2":
        from memobert_plugin.prepare.stages.opensmile import OpenSmileStage

        return OpenSmileStage(args.acoustic_features, args.max_seconds, args.trim_silence, args.vad)
    if not args.wav2vec2:
        raise ValueError("--acoustic-features wav2vec2 needs --wav2vec2/--speech-encoder (a model); without one, "
                         "--acoustic-features egemaps gives openSMILE's speech features")
    from memobert_plugin.prepare.stages.acoustic import AcousticStage

    return AcousticStage(args.wav2vec2, args.layer, args.pool or WAV2VEC2_POOL, args.max_seconds, args.device,
                         args.trim_silence, args.vad)


def _wants_visual(args: argparse.Namespace) -> bool:
    return bool(args.fer_model or args.vision_encoder)


def _visual_stage(args: argparse.Namespace):
    from memobert_plugin.prepare.stages.visual import VisualStage

    if not _wants_visual(args):
        raise ValueError("the visual stage needs --vision-encoder (a ViT or CLIP directory) or --fer-model")
    if not args.fer_model:
        logger.info("no --fer-model: the visual_fer stream (FER+ expression probabilities) is not written, so "
                    "pretraining on this data leaves out span_mvfc_kl")
    return VisualStage(args.fer_model, args.fps, args.max_seconds, args.device, args.vad, args.detect_every,
                       args.vision_encoder)


def _write(args: argparse.Namespace, plan: ShardPlan) -> None:
    from memobert_plugin.prepare.output import write_output

    require = split_list(args.require)
    entry = write_output(plan, args.out, args.split, require, args.labels, args.feature_stats)
    logger.info("%s: %d utterances written to %s, %d dropped, kept without a modality: %s, kept with a warning "
                "(clipped or truncated media): %s; see %s", args.split, entry["utterances"], args.out, entry["dropped"],
                entry["kept_without"] or "none", entry["warnings"] or "none",
                os.path.join(args.out, "report.tsv"))


def run(args: argparse.Namespace) -> None:
    plan = _plan(args)
    command = args.command
    if command == "manifest":
        logger.info("%d utterances in %d shards under %s; %d rows rejected (listed in %s)", plan.num_entries,
                    plan.num_shards, plan.work_dir, len(read_problems(plan.problems_path)), plan.problems_path)
    elif command == "sentencepiece":
        _train_sentencepiece(args, plan)
    elif command == "text":
        run_stage(_text_stage(args, plan), plan)
    elif command in ("acoustic", "visual"):
        stage = _acoustic_stage(args) if command == "acoustic" else _visual_stage(args)
        only = range(args.shards[0], plan.num_shards, args.shards[1]) if args.shards else None
        run_stage(stage, plan, args.workers, args.threads, only)
    elif command == "write":
        _write(args, plan)
    else:  # all
        run_stage(_text_stage(args, plan), plan)
        for wanted, option, make in ((_wants_acoustic(args), "wav2vec2", _acoustic_stage),
                                     (_wants_visual(args), "vision-encoder or --fer-model", _visual_stage)):
            if wanted:
                run_stage(make(args), plan, args.workers, args.threads)
            else:
                logger.info("no --%s: skipping that modality", option)
        _write(args, plan)


@contextlib.contextmanager
def _output_locks(args: argparse.Namespace):
    """One writer per data dir; the tasks of an array (--shards K/N) share it, one task per K."""
    what, shards = "this memobert-prepare output", getattr(args, "shards", None)
    with contextlib.ExitStack() as locks:
        locks.enter_context(output_lock(args.out, what, shared=bool(shards)))
        if shards:
            task, tasks = shards
            locks.enter_context(output_lock(args.out, f"{what}'s shards {task}/{tasks}",
                                            name=f".memobert-shards-{task}-of-{tasks}.lock"))
        yield


def main(argv: Optional[List[str]] = None) -> None:
    disable_torchaudio()
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    args = parse_arguments(argv)
    try:
        with _output_locks(args):
            run(args)
    except ModuleNotFoundError as err:
        sys.exit(f"memobert-prepare: error: {err}; the extractors need: pip install 'memobert[extract]'")
    except (StageIncomplete, ValueError, OSError, pickle.UnpicklingError, OutputBusyError) as err:
        sys.exit(f"memobert-prepare: error: {err}")


if __name__ == "__main__":
    main()
