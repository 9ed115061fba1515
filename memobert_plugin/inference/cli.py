"""``memobert-predict``'s command line, parsed without importing torch or fairseq, so that ``--help`` and
argument errors answer at once; the predictor (:mod:`memobert_plugin.inference.predictor`) is imported only to predict.

The options naming extractor checkpoints (``--wav2vec2``, ``--fer-model``, an extension's) come from the
stream declarations (:mod:`memobert_plugin.streams`); ``--user-dir`` imports an extension first, so that its
streams and tasks are declared."""

import argparse
import os

from memobert_plugin.streams import media_streams

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """``memobert-predict``: class probabilities for utterances given as media (a preparation manifest, or
    --audio/--video/--text) or as feature files (--input)."""
    parser = argparse.ArgumentParser(prog="memobert-predict", description=build_parser.__doc__)
    parser.add_argument("--checkpoint", "--model", dest="checkpoint", required=True,
                        help="a memobert_emotion checkpoint (or of a task built on it), or a bundle folder written "
                             "by memobert-bundle")
    parser.add_argument("--user-dir", help="the extension the model was trained with (fairseq-train's --user-dir)")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--manifest", help="a memobert-prepare manifest (id, text, and any of audio, video, start, "
                                           "end); features are extracted as for the model's training data")
    inputs.add_argument("--input", help="TSV with columns id, text and one per input stream (.npy paths; may be empty)")
    parser.add_argument("--audio", help="one utterance's audio file (with --video, --text, --start, --end)")
    parser.add_argument("--video", help="one utterance's video file or face-crop folder (with --audio, --text)")
    parser.add_argument("--text", help="the utterance's transcript (with --audio/--video, or alone)")
    parser.add_argument("--start", type=float, help="seconds into --audio/--video where the utterance starts")
    parser.add_argument("--end", type=float, help="seconds into --audio/--video where the utterance ends")
    parser.add_argument("--id", default="input", help="the single utterance's id in the output (default: input)")
    for stream in media_streams():
        if stream.extractor_option:
            parser.add_argument(stream.extractor_option, dest=stream.extractor_dest,
                                help=f"the checkpoint of the {stream.name} features' extractor (default: the path "
                                     "recorded at preparation); refused unless it is the one the model's data was "
                                     "prepared with")
    parser.add_argument("--data", help="the training data dir whose extractor settings apply (default: the "
                                       "bundle's, or the checkpoint's task.data)")
    parser.add_argument("--vocab", default=None, help="dict.txt/vocab.txt (default: the bundle's or the checkpoint's data dir)")
    parser.add_argument("--output", default="-", help="TSV to write (default: stdout); its format is "
                                                      "fairseq-validate --predictions-path's")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="torch device for the model and extractors (cpu, cuda, cuda:1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    timeline = parser.add_argument_group("timelines (recordings of any length, one prediction per speech segment; "
                                         "see memobert_plugin.inference.timeline)")
    timeline.add_argument("--media", help="an audio or video recording of any length, or a folder of them (with "
                                          "same-named .srt/.vtt/.tsv transcripts)")
    timeline.add_argument("--timeline", action="store_true", help="segment --audio/--video into speech segments "
                                                                  "instead of predicting them as one utterance")
    timeline.add_argument("--transcript", help="the recording's timed transcript: .srt, .vtt, or .tsv with columns "
                                               "start, end, text (seconds)")
    timeline.add_argument("--format", choices=("tsv", "csv", "json", "jsonl"),
                          help="output format (default: by --output's extension, else tsv)")
    timeline.add_argument("--plot", help="a PNG of the probabilities over time")
    return parser


def _is_timeline(args: argparse.Namespace) -> bool:
    return bool(args.media or args.timeline or args.transcript or args.format or args.plot)


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Every argument that can be judged without the model, judged before it is loaded."""
    if _is_timeline(args):
        if args.manifest or args.input or args.text is not None or args.start is not None or args.end is not None:
            parser.error("a timeline (--media, --timeline, --transcript, --format, --plot) takes a whole recording: "
                         "no --manifest, --input, --text, --start or --end")
        if bool(args.media) == bool(args.audio or args.video):
            parser.error("a timeline needs --media, or --audio/--video (not both)")
    else:
        single = args.audio or args.video or args.text is not None
        if (args.manifest or args.input) and single or not (args.manifest or args.input or single):
            parser.error("give --manifest, --input, or one utterance's --audio/--video/--text")
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: must be at least 1")
    for option in ("start", "end"):
        value = getattr(args, option)
        if value is not None and not value >= 0:  # NaN fails too
            parser.error(f"--{option} {value}: must be >= 0 (seconds)")
    if args.start is not None and args.end is not None and not args.start < args.end:
        parser.error(f"--start {args.start} is not before --end {args.end}")
    for option in ("audio", "video", "media", "transcript"):
        path = getattr(args, option)
        if path and not os.path.exists(path):
            parser.exit(1, f"memobert-predict: error: --{option} {path}: no such file\n")


def main(argv=None) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--user-dir")
    known, _ = pre.parse_known_args(argv)
    if known.user_dir:  # its streams add extractor options: imported before the full parse
        from memobert_plugin.inference.bundle import import_user_dir

        try:
            import_user_dir(known.user_dir)
        except (OSError, ImportError) as err:
            pre.exit(1, f"memobert-predict: error: {err}\n")
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    if _is_timeline(args):
        from memobert_plugin.inference.timeline import timeline_command  # torch, fairseq and the model: only once there is work

        timeline_command(args, parser)
        return
    from memobert_plugin.inference.predictor import predict_command  # torch, fairseq and the model: only once there is work

    predict_command(args, parser)


if __name__ == "__main__":
    main()
