"""``python -m memobert_plugin.prepare.corpora``: build the manifest(s) of a corpus and report what was left out.

Writes ``OUT/manifest.tsv`` (iemocap, msp_improv, meld, crema_d, ravdess; meld's with each
utterance's official subset) or ``OUT/train.tsv`` + ``OUT/valid.tsv`` (videos), ``OUT/audio/``
where the sound is decoded from videos (videos, meld, ravdess), and ``OUT/manifest_report.tsv``:
every utterance excluded (a label outside the classes, a recording type not asked for, an empty
cue, a song, a missing or unreadable clip) or incomplete (no transcript, a missing media file),
with the file and line it comes from.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from typing import Dict, List, Optional

from memobert_plugin.data.utterance_meta import FIXED_SUBSETS
from memobert_plugin.option_lists import split_list
from memobert_plugin.prepare.corpora.common import CorpusReport, ManifestRow, label_summary, write_manifest
from memobert_plugin.prepare.corpora.crema_d import build_crema_d
from memobert_plugin.prepare.corpora.iemocap import build_iemocap
from memobert_plugin.prepare.corpora.meld import TARGETS, build_meld
from memobert_plugin.prepare.corpora.msp_improv import RECORDING_TYPES, build_msp_improv
from memobert_plugin.prepare.corpora.ravdess import build_ravdess
from memobert_plugin.prepare.corpora.videos import build_video_corpus

PROG = "python -m memobert_plugin.prepare.corpora"
REPORT_NAME = "manifest_report.tsv"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    corpora = parser.add_subparsers(dest="corpus", required=True)
    iemocap = corpora.add_parser("iemocap", help="IEMOCAP_full_release, 4 classes (excited merged into happy)")
    iemocap.add_argument("--root", required=True, help="the IEMOCAP_full_release folder (Session1 .. Session5)")
    msp = corpora.add_parser("msp_improv", help="MSP-IMPROV, 4 classes, texts from --transcripts")
    msp.add_argument("--root", required=True, help="the MSP-IMPROV folder (Evalution.txt, Audio/, Video/)")
    msp.add_argument("--transcripts", required=True, help="TSV with columns id and text (e.g. an ASR's output)")
    msp.add_argument("--types", default="S",
                     help=f"comma-separated recording types to keep, from {','.join(RECORDING_TYPES)} (default: S, "
                          "the paper's 3819-utterance setup; all four give the 7798 four-class utterances)")
    videos = corpora.add_parser("videos", help="a folder of videos with same-name .srt subtitles (pretraining)")
    videos.add_argument("--root", required=True, help="folder of <name>.mp4|.mkv|.avi with <name>.srt")
    videos.add_argument("--valid-fraction", type=float, default=0.05,
                        help="fraction of the videos held out as the valid split (default: 0.05, at least one)")
    meld = corpora.add_parser("meld", help="MELD.Raw, its train/dev/test split, 7 emotions (or 3 sentiments)")
    meld.add_argument("--root", required=True,
                      help="the MELD.Raw folder (*_sent_emo.csv, train_splits/, dev_splits_complete/, "
                           "output_repeated_splits_test/)")
    meld.add_argument("--target", choices=sorted(TARGETS), default="emotion",
                      help="the label: emotion (7 classes, default) or sentiment (negative, neutral, positive)")
    crema = corpora.add_parser("crema_d", help="CREMA-D, 6 classes, the sentence from the file name")
    crema.add_argument("--root", required=True, help="the CREMA-D folder (AudioWAV/, VideoFlash/ or VideoMP4/)")
    ravdess = corpora.add_parser("ravdess", help="RAVDESS speech, 8 classes, the statement from the file name")
    ravdess.add_argument("--root", required=True, help="the folder of Actor_01 .. Actor_24 (audio and/or video files)")
    for sub in (iemocap, msp, videos, meld, crema, ravdess):
        sub.add_argument("--out", required=True, help=f"folder for the manifest(s) and {REPORT_NAME}")
    return parser


def _build(args: argparse.Namespace, report: CorpusReport) -> Dict[str, List[ManifestRow]]:
    if args.corpus == "iemocap":
        return {"manifest": build_iemocap(args.root, report)}
    if args.corpus == "msp_improv":
        types = split_list(args.types)
        return {"manifest": build_msp_improv(args.root, args.transcripts, report, types)}
    if args.corpus == "meld":
        return {"manifest": build_meld(args.root, os.path.join(args.out, "audio"), report, args.target)}
    if args.corpus == "crema_d":
        return {"manifest": build_crema_d(args.root, report)}
    if args.corpus == "ravdess":
        return {"manifest": build_ravdess(args.root, os.path.join(args.out, "audio"), report)}
    return build_video_corpus(args.root, os.path.join(args.out, "audio"), report, args.valid_fraction)


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    args = _parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    report = CorpusReport()
    try:
        splits = _build(args, report)
    except ValueError as err:  # a LayoutError, or an option out of range
        sys.exit(f"{PROG} {args.corpus}: error: {err}")
    report_path = os.path.join(args.out, REPORT_NAME)
    report.write(report_path)
    for name, rows in splits.items():
        if not rows:
            sys.exit(f"{PROG} {args.corpus}: error: no utterance for {name}; see {report_path}")
        path = os.path.join(args.out, f"{name}.tsv")
        write_manifest(path, rows)
        labels = label_summary(rows)
        subsets = Counter(r.subset for r in rows if r.subset)
        print(f"{args.corpus}: {path}: {len(rows)} utterances, {len({r.speaker for r in rows})} speakers"
              + (f"; {labels}" if labels else "")
              + (f"; subsets {', '.join(f'{name} {subsets[name]}' for name in FIXED_SUBSETS)}" if subsets else ""))
    for line in report.summary():
        print(f"  {line}")
    print(f"every excluded or incomplete utterance, with its file and line: {report_path}")


if __name__ == "__main__":
    main()
