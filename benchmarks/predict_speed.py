"""Prediction speed on this CPU: load time, seconds per second of media (cold and warm), and what memobert-serve saves.

Setup (not timed; kept in ``--work`` and reused): a real recording assembled from pocketsphinx's speech and
espeak-ng voices with scikit-image's astronaut on screen (``tests/recording_material.py``), long (22 pieces,
about 130 s) and short (4 pieces, about 34 s), as a WAV and as an MPEG-4 video with that sound track;
extractors of realistic size with random weights (wav2vec 2.0 base, DenseNet-BC-100 FER); the pieces
prepared with them, an emotion model (``--arch``) trained for one update, and its bundle.

Timed, each in a fresh process where it says cold:

* cold CLI: ``memobert-predict --model B --text hi`` (interpreter start, imports, model and extractor loading:
  the fixed cost of every call), and ``--media`` on each clip; per second of media = the slope between the
  short and the long clip, so the fixed cost cancels;
* load breakdown (one fresh process): imports, the model, the extractor stages, the voice-activity detector;
* warm: the same process predicts each clip twice; the second timing is warm;
* where the time goes: cProfile of a warm prediction of the long video, grouped by stage;
* server: ``memobert-serve`` start-up, then ``--requests`` predictions of the short clip over HTTP, against
  as many separate cold CLI calls.

The machine may be shared: the load average is printed at the start and the end; compare ratios from
one run, not figures across runs. Run: ``python benchmarks/predict_speed.py [--work DIR] [--arch memobert_base]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "benchmarks")]
sys.modules["torchaudio"] = None  # as memobert-prepare does: transformers must not import it

PREDICT = [sys.executable, "-m", "memobert_plugin.inference.cli"]
CLIPS = ("short.wav", "long.wav", "short.mp4", "long.mp4")
#: profiled functions, as (the file's folder/name, function) -> the stage they are
_STAGES = {
    ("inference/timeline.py", "speech_segments"): "find speech (silero-vad over the recording)",
    ("corpora/videos.py", "extract_audio_track"): "decode the video's sound track",
    ("media/audio.py", "read_audio"): "read audio spans",
    ("encoders/speech.py", "batch"): "wav2vec 2.0 (acoustic features)",
    ("media/faces.py", "video_frames"): "decode video frames",
    ("media/faces.py", "detect_faces"): "face detection and following (with decoding)",
    ("media/voice_activity.py", "voiced"): "voice activity at video frames (active speaker)",
    ("fer/model.py", "__call__"): "FER DenseNet (visual features)",
    ("inference/predictor.py", "predict_proba"): "the emotion model",
}


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def _timed_run(args: List[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=_env())
    if proc.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def build(work: str, arch: str) -> Dict[str, object]:
    """The media, extractors, prepared data and bundle (reused when ``work`` already holds them)."""
    import shutil

    import soundfile

    done = os.path.join(work, "setup.json")
    if os.path.isfile(done):
        with open(done) as handle:
            return json.load(handle)
    os.makedirs(work, exist_ok=True)
    import torch

    from prepare import _default_vocab, _write_wav2vec2
    from prepare_material import write_manifest
    from recording_material import long_recording

    from memobert_plugin.prepare.cli import main as prepare
    from memobert_plugin.prepare.fer.model import DenseNetFER, save_fer_checkpoint

    pocketsphinx = "/usr/share/pocketsphinx/test/data"
    clips, pieces = {}, None
    for name, count in (("long", None), ("short", 4)):
        folder = os.path.join(work, name)
        os.makedirs(folder, exist_ok=True)
        recording = long_recording(folder, pocketsphinx, pieces=count)
        for ext, key in (("wav", "wav"), ("mp4", "video")):
            clips[f"{name}.{ext}"] = shutil.copy(recording[key], os.path.join(work, f"{name}.{ext}"))
        pieces = pieces or recording["pieces"]
    durations = {name: soundfile.info(clips[name.replace("mp4", "wav")]).duration for name in CLIPS}
    w2v, fer = os.path.join(work, "wav2vec2_base.pt"), os.path.join(work, "fer.pt")
    _write_wav2vec2(w2v)
    torch.manual_seed(0)
    save_fer_checkpoint(fer, DenseNetFER())
    labels = ("anger", "happy", "neutral", "sad")
    rows = [{"id": f"p{i}", "speaker": f"s{i % 3}", "label": labels[i % 4], "text": p["text"], "audio": clips["long.wav"],
             "video": clips["long.mp4"], "start": round(p["start"], 3), "end": round(p["end"], 3)}
            for i, p in enumerate(pieces)]
    manifest = write_manifest(os.path.join(work, "manifest.tsv"), rows)
    data = os.path.join(work, "data")
    try:
        prepare(["all", "--manifest", manifest, "--out", data, "--split", "all", "--vocab", _default_vocab(),
                 "--wav2vec2", w2v, "--fer-model", fer])
    except SystemExit as stop:
        if stop.code:
            sys.exit(f"memobert-prepare failed: {stop.code}")
    bin_dir = os.path.dirname(sys.executable)
    _timed_run([f"{bin_dir}/fairseq-train", data, "--user-dir", os.path.join(REPO, "memobert_plugin"), "--task",
                "memobert_emotion", "--criterion", "memobert_emotion", "--arch", arch, "--fold", "1", "--optimizer",
                "adam", "--lr", "1e-4", "--max-update", "1", "--batch-size", "8", "--num-workers", "0", "--cpu",
                "--disable-validation", "--save-dir", os.path.join(work, "ckpt"), "--no-epoch-checkpoints"])
    bundle = os.path.join(work, "model.bundle")
    _timed_run([sys.executable, "-m", "memobert_plugin.inference.bundle", os.path.join(work, "ckpt", "checkpoint_last.pt"),
                "--out", bundle])
    setup = {"bundle": bundle, "clips": clips, "durations": durations, "arch": arch}
    with open(done, "w") as handle:
        json.dump(setup, handle)
    return setup


def child(setup: dict) -> dict:
    """In this (fresh) process: the load breakdown, cold-in-process and warm predictions, a profile."""
    marks = {}
    start = time.perf_counter()
    from memobert_plugin.inference.predictor import EmotionPredictor  # torch, fairseq, the plugin

    marks["imports"] = time.perf_counter() - start
    from memobert_plugin.prepare.media.voice_activity import load_voice_activity
    from memobert_plugin.inference.timeline import predict_recording

    start = time.perf_counter()
    predictor = EmotionPredictor(setup["bundle"])
    marks["model"] = time.perf_counter() - start
    start = time.perf_counter()
    predictor.extract([])
    marks["extractors"] = time.perf_counter() - start
    start = time.perf_counter()
    vad = load_voice_activity("auto")
    marks["voice activity detector"] = time.perf_counter() - start
    runs = {}
    for name in CLIPS:
        path = setup["clips"][name]
        media = {"video": path} if name.endswith(".mp4") else {"audio": path}
        times = []
        for _ in range(2):
            start = time.perf_counter()
            predict_recording(predictor, vad=vad, warn=lambda message: None, **media)
            times.append(time.perf_counter() - start)
        runs[name] = times
    profile = cProfile.Profile()
    profile.enable()
    predict_recording(predictor, video=setup["clips"]["long.mp4"], vad=vad, warn=lambda message: None)
    profile.disable()
    stats = pstats.Stats(profile)
    total = max(row[3] for row in stats.stats.values())
    stages = {}
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        stage = _STAGES.get(("/".join(filename.split(os.sep)[-2:]), function))
        if stage:
            stages[stage] = stages.get(stage, 0.0) + cumulative
    return {"load": marks, "runs": runs, "profile_total": total, "profile": stages}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hour_of_audio(setup: dict, hours: float) -> str:
    """long.wav played over and over for ``hours``, written block by block (16-bit)."""
    import soundfile

    path = os.path.join(os.path.dirname(setup["clips"]["long.wav"]), f"hour{hours:g}.wav")
    if not os.path.isfile(path):
        wave, rate = soundfile.read(setup["clips"]["long.wav"], dtype="float32")
        with soundfile.SoundFile(path + ".tmp", "w", rate, 1, "PCM_16", format="WAV") as out:
            for _ in range(int(hours * 3600 * rate) // len(wave) + 1):
                out.write(wave)
        os.replace(path + ".tmp", path)
    return path


def memory_child(setup: dict, what: str, path: str) -> dict:
    """Peak memory of finding speech in ``path`` (``speech``), or of its whole timeline (``timeline``)."""
    from memobert_plugin.inference.predictor import EmotionPredictor
    from memobert_plugin.prepare.media.voice_activity import load_voice_activity
    from memobert_plugin.inference.timeline import predict_recording, speech_segments

    vad = load_voice_activity("auto")
    predictor = EmotionPredictor(setup["bundle"]) if what == "timeline" else None
    if predictor:
        predictor.extract([])
    before = _peak_rss_mb()
    start = time.perf_counter()
    if what == "speech":
        count = len(speech_segments(path, vad, 10.0))
    else:
        count = len(predict_recording(predictor, audio=path, vad=vad, warn=lambda message: None))
    return {"segments": count, "seconds": time.perf_counter() - start, "rss_before_mb": before,
            "peak_rss_mb": _peak_rss_mb()}


def memory(setup: dict, hours: float) -> None:
    """Peak RSS of finding speech in long.wav and in ``hours`` of audio, and of long.wav's and short.wav's timelines."""
    import soundfile

    runs = [("speech", setup["clips"]["long.wav"]), ("speech", hour_of_audio(setup, hours)),
            ("timeline", setup["clips"]["short.wav"]), ("timeline", setup["clips"]["long.wav"])]
    print("\n== memory: peak RSS per fresh process (the audio is read 5 minutes at a time) ==")
    for what, path in runs:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--work", os.path.dirname(setup["bundle"]),
                               "--memory-child", what, path], capture_output=True, text=True, env=_env())
        if proc.returncode:
            sys.exit(f"the memory run failed:\n{proc.stderr[-3000:]}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        minutes = soundfile.info(path).duration / 60
        print(f"{what:>8} {minutes:6.1f} min of audio: {got['segments']:5d} segments in {got['seconds']:6.1f} s; "
              f"peak RSS {got['peak_rss_mb']:6.0f} MB ({got['rss_before_mb']:.0f} MB before)")


def serve_requests(setup: dict, requests: int) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "memobert_plugin.inference.serve", "--model", setup["bundle"], "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
    try:
        start = time.perf_counter()
        line = proc.stdout.readline()
        if "listening on" not in line:
            sys.exit(f"memobert-serve did not start: {line}")
        startup = time.perf_counter() - start
        address = line.split("listening on ")[1].strip()
        times = []
        for _ in range(requests):
            body = json.dumps({"path": setup["clips"]["short.wav"]}).encode()
            request = urllib.request.Request(address + "predict", body, {"Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=600) as response:
                json.loads(response.read())
            times.append(time.perf_counter() - start)
        return {"startup": startup, "requests": times}
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "memobert-predict-speed"),
                        help="where the setup is written and reused")
    parser.add_argument("--arch", default="memobert_base", help="the emotion model's architecture")
    parser.add_argument("--requests", type=int, default=3, help="server requests (and separate CLI calls) compared")
    parser.add_argument("--hours", type=float, default=1.0, help="length of the long recording searched for speech")
    parser.add_argument("--what", choices=("all", "speed", "memory"), default="all")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup = build(args.work, args.arch)
    if args.child:
        print(json.dumps(child(setup)))
        return
    if args.memory_child:
        print(json.dumps(memory_child(setup, *args.memory_child)))
        return
    if args.what in ("all", "memory"):
        print(f"load average at start: {os.getloadavg()}")
        memory(setup, args.hours)
        if args.what == "memory":
            return
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs; emotion model {setup['arch']}, "
          "wav2vec 2.0 base and DenseNet-BC-100 FER (random weights)")
    dur = setup["durations"]
    print("clips: " + ", ".join(f"{name} {dur[name]:.1f} s" for name in CLIPS))
    cold = {"text only": _timed_run([*PREDICT, "--model", setup["bundle"], "--text", "hi", "--no-progress"])}
    for name in CLIPS:
        cold[name] = _timed_run([*PREDICT, "--model", setup["bundle"], "--media", setup["clips"][name], "--no-progress"])
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--work", args.work, "--child"],
                          capture_output=True, text=True, env=_env())
    if proc.returncode:
        sys.exit(f"the in-process timing failed:\n{proc.stderr[-3000:]}")
    inside = json.loads(proc.stdout.strip().splitlines()[-1])
    server = serve_requests(setup, args.requests)
    separate = [_timed_run([*PREDICT, "--model", setup["bundle"], "--media", setup["clips"]["short.wav"],
                            "--no-progress"]) for _ in range(args.requests)]

    print("\n== cold: one memobert-predict call each (fresh interpreter) ==")
    for name, seconds in cold.items():
        print(f"{name:>10}: {seconds:7.1f} s")
    print("\n== load, in one fresh process ==")
    for name, seconds in inside["load"].items():
        print(f"{name:>24}: {seconds:6.1f} s")
    print(f"{'total':>24}: {sum(inside['load'].values()):6.1f} s")
    print("\n== seconds of computing per second of media (slope long - short; fixed costs cancel) ==")
    for kind in ("wav", "mp4"):
        span = dur[f"long.{kind}"] - dur[f"short.{kind}"]
        slope_cold = (cold[f"long.{kind}"] - cold[f"short.{kind}"]) / span
        first = (inside["runs"][f"long.{kind}"][0] - inside["runs"][f"short.{kind}"][0]) / span
        warm = (inside["runs"][f"long.{kind}"][1] - inside["runs"][f"short.{kind}"][1]) / span
        label = "audio only" if kind == "wav" else "audio+video"
        print(f"{label:>12}: cold CLI {slope_cold:.3f}, first in-process call {first:.3f}, warm {warm:.3f} "
              f"(warm long clip: {inside['runs'][f'long.{kind}'][1]:.1f} s for {dur[f'long.{kind}']:.0f} s, "
              f"{inside['runs'][f'long.{kind}'][1] / dur[f'long.{kind}']:.3f} s/s)")
    print(f"\n== where the time goes: warm prediction of long.mp4, {inside['profile_total']:.1f} s (cProfile; "
          "stages may nest) ==")
    for stage, seconds in sorted(inside["profile"].items(), key=lambda item: -item[1]):
        print(f"{stage:>48}: {seconds:6.1f} s  {seconds / inside['profile_total']:5.0%}")
    print(f"\n== server vs separate calls: {args.requests} x short.wav ({dur['short.wav']:.0f} s) ==")
    calls, requests = sum(separate), sum(server["requests"])
    print(f"separate memobert-predict calls: {calls:6.1f} s ({', '.join(f'{t:.1f}' for t in separate)})")
    print(f"memobert-serve start-up: {server['startup']:6.1f} s, then requests: {requests:6.1f} s "
          f"({', '.join(f'{t:.1f}' for t in server['requests'])})")
    print(f"saved: {calls - requests:.1f} s after start-up ({calls / requests:.1f}x), "
          f"{calls - requests - server['startup']:.1f} s including it")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
