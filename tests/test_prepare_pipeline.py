"""memobert-prepare end to end on real speech: outputs, report, resuming, workers, and training on the result."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("cv2", reason="the extractors need the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the extractors need the 'extract' extra (av)")

from conftest import BIN, PLUGIN_DIR, run_cli, wait_until  # noqa: E402
from memobert_plugin.data.feature_store import FeatureStore  # noqa: E402
from memobert_plugin.prepare.stages.acoustic import AcousticStage  # noqa: E402
from memobert_plugin.files import sha256_file  # noqa: E402
from memobert_plugin.prepare.report import ItemError, read_problems  # noqa: E402
from memobert_plugin.prepare.shards import FrameStage, make_plan, run_stage  # noqa: E402
from prepare_material import FPS, pocketsphinx, speech_utterances, tiny_fer, tiny_wav2vec2  # noqa: E402,F401
from prepare_material import prepare_here, read_tsv, write_manifest, write_two_face_video, write_video  # noqa: E402

PREPARE = [sys.executable, "-m", "memobert_plugin.prepare.cli"]  # the console script's entry point


def _prepare(*args):
    """The console script in a subprocess (the real entry point)."""
    return run_cli([*PREPARE, *map(str, args)])


def _prepare_all_args(corpus, out, minilm_dir, wav2vec2, fer):
    """``memobert-prepare all`` on the corpus with every extractor: the ``prepared`` fixture's run."""
    return ["all", "--manifest", corpus["manifest"], "--out", out, "--vocab", f"{minilm_dir}/vocab.txt",
            "--wav2vec2", wav2vec2["fairseq"], "--fer-model", fer, "--fps", FPS, "--shard-size", 4]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, pocketsphinx):  # noqa: F811
    """Real speech with transcripts, two talking-heads videos, a face folder, and broken items."""
    root = tmp_path_factory.mktemp("corpus")
    rows = [{"id": u["id"], "speaker": u["speaker"], "session": f"S{i % 2}", "label": ("happy", "sad", "")[i % 3],
             "text": u["text"], "audio": u["wav"]} for i, u in enumerate(speech_utterances(pocketsphinx))]
    speech = rows[0]["audio"]
    for side in ("left", "right"):
        voiced = write_two_face_video(str(root / f"{side}.mp4"), str(root / f"{side}.wav"), speech, side == "left")
        rows.append({"id": f"talk-{side}", "speaker": "astronaut", "session": "S9", "label": "neutral",
                     "text": "I am here.", "audio": f"{side}.wav", "video": f"{side}.mp4"})
    (root / "crops").mkdir()
    import cv2

    for i in range(3):
        cv2.imwrite(str(root / "crops" / f"{i}.png"), np.full((64, 64), 60 * i, np.uint8))
    write_video(str(root / "dark.mp4"), [np.zeros((120, 160), np.uint8)] * 4)
    (root / "garbage.wav").write_bytes(b"this is not audio")
    rows += [
        {"id": "crops", "text": "Faces given as crops.", "audio": speech, "video": "crops", "start": 1, "end": 2},
        {"id": "no-text", "text": "  ", "audio": speech},
        {"id": "lost-audio", "text": "where did it go", "audio": "missing.wav"},
        {"id": "garbage-audio", "text": "noise", "audio": "garbage.wav"},
        {"id": "dark", "text": "lights off", "audio": speech, "video": "dark.mp4"},
        {"id": "bad-times", "text": "too soon", "audio": speech, "start": 3, "end": 2},
    ]
    columns = ["id", "speaker", "session", "label", "text", "audio", "video", "start", "end"]
    return {"manifest": write_manifest(str(root / "manifest.tsv"), rows, columns), "rows": rows, "voiced": voiced}


@pytest.fixture(scope="module")
def prepared(corpus, tiny_wav2vec2, tiny_fer, minilm_dir, tmp_path_factory):  # noqa: F811
    """The corpus prepared in one uninterrupted run; tests read it and change only copies of it."""
    out = tmp_path_factory.mktemp("data")
    proc = _prepare(*_prepare_all_args(corpus, out, minilm_dir, tiny_wav2vec2, tiny_fer))
    return {"out": out, "log": proc.stderr}


def test_every_problem_is_reported_with_its_action(prepared):
    report = {(r["id"], r["stage"]): r for r in read_tsv(prepared["out"] / "report.tsv")}
    expected = {
        ("bad-times", "manifest"): ("end 2.0 s is not after start 3.0 s", "dropped"),
        ("no-text", "text"): ("empty text", "dropped"),
        ("lost-audio", "acoustic"): ("missing file: audio", "kept without acoustic"),
        ("garbage-audio", "acoustic"): ("unreadable audio", "kept without acoustic"),
        ("dark", "visual"): ("no face detected in 4 frames", "kept without visual"),
    }
    for key, (reason, action) in expected.items():
        assert report[key]["reason"].startswith(reason) and report[key]["action"] == action, report[key]
        assert report[key]["split"] == "train" and int(report[key]["line"]) > 1
    # no video for the plain speech rows: reported too, nothing dropped silently
    no_video = {k[0] for k, r in report.items() if r["reason"] == "no video path in the manifest"}
    assert {"austen-0870", "cards-005", "lost-audio", "garbage-audio", "no-text"} <= no_video
    assert set(report) - set(expected) == {(i, "visual") for i in no_video}


def test_outputs_line_up_with_the_kept_utterances(prepared, corpus):
    out = prepared["out"]
    meta = read_tsv(out / "train.meta.tsv")
    kept = [r for r in corpus["rows"] if r["id"] not in ("no-text", "bad-times")]
    assert [m["id"] for m in meta] == [r["id"] for r in kept]
    assert f"train: {len(kept)} utterances written to {out}, 2 dropped" in prepared["log"]
    assert [m["label"] for m in meta] == [r.get("label", "") for r in kept]
    stores = {s: FeatureStore(str(out), "train", s) for s in ("acoustic", "visual", "visual_fer")}
    lengths = {s: dict(zip([m["id"] for m in meta], store.lengths.tolist())) for s, store in stores.items()}
    assert lengths["acoustic"]["lost-audio"] == 0 and lengths["acoustic"]["garbage-audio"] == 0
    assert lengths["acoustic"]["austen-0880"] == 50  # 2.99 s: 149 frames of 20 ms -> 50 of 60 ms
    assert lengths["visual"]["talk-left"] == len(corpus["voiced"]) and lengths["visual"]["crops"] == 3
    assert lengths["visual"]["dark"] == 0 and lengths["visual"]["austen-0880"] == 0
    assert lengths["visual"] == lengths["visual_fer"]
    assert (stores["visual"].dim, stores["visual_fer"].dim, stores["acoustic"].dim) == (27, 8, 32)

    dataset = json.loads((out / "dataset.json").read_text())
    split = dataset["splits"]["train"]
    assert (split["utterances"], split["dropped"]) == (len(kept), 2)
    assert split["kept_without"] == {"acoustic": 2, "visual": len(kept) - 3}
    assert split["frames"] == {s: int(store.lengths.sum()) for s, store in stores.items()}
    assert dataset["dims"] == {"acoustic": 32, "visual": 27, "visual_fer": 8}
    assert split["extractors"]["acoustic"]["format"] == "fairseq" and split["extractors"]["visual"]["classes"] == 8
    assert dataset["checksums"] == {name: sha256_file(str(out / name)) for name in dataset["checksums"]}
    assert len(dataset["checksums"]) == 1 + 3 + 6  # dict, text + meta, 3 streams x 2 files


def test_fairseq_train_runs_on_the_prepared_data(prepared, tmp_path):
    out = prepared["out"]
    proc = run_cli([os.path.join(BIN, "fairseq-train"), str(out),
                    "--user-dir", PLUGIN_DIR, "--task", "memobert_pretrain", "--arch", "memobert_tiny",
                    "--criterion", "memobert_pretrain", "--optimizer", "adam", "--lr", "1e-4",
                    "--objective-mode", "sum", "--max-update", "3", "--batch-size", "8", "--save-dir",
                    str(tmp_path / "ckpt"), "--no-save", "--disable-validation", "--num-workers", "0", "--cpu"],
                   cwd=str(tmp_path))
    assert "num_updates 3" in proc.stderr + proc.stdout
    for objective in ("wwmlm", "span_mafr", "span_mvfr", "span_mvfc_kl"):
        assert f"{objective}_loss" in proc.stderr + proc.stdout


def test_rewrite_with_required_audio_and_a_second_split(prepared, corpus, minilm_dir, tmp_path):
    out = shutil.copytree(prepared["out"], tmp_path / "out")  # keep the fixture's intact
    assert prepare_here("write", "--manifest", corpus["manifest"], "--out", out, "--require", "text,acoustic") == ""
    meta = [m["id"] for m in read_tsv(out / "train.meta.tsv")]
    assert "lost-audio" not in meta and "garbage-audio" not in meta and "dark" in meta
    report = read_tsv(out / "report.tsv")
    assert [r["action"] for r in report if r["id"] == "lost-audio"] == ["dropped", "dropped"]  # acoustic + visual
    assert len(report) == len({(r["id"], r["stage"]) for r in report})  # rows replaced, not duplicated

    valid = write_manifest(str(tmp_path / "valid.tsv"), [{"id": "v1", "text": "five five"}, {"id": "v2", "text": ""}])
    vocab = f"{minilm_dir}/vocab.txt"
    assert prepare_here("all", "--manifest", valid, "--out", out, "--split", "valid", "--vocab", vocab) == ""
    report = read_tsv(out / "report.tsv")
    assert {r["split"] for r in report} == {"train", "valid"} and sum(r["split"] == "valid" for r in report) == 1
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["splits"]["valid"]["utterances"] == 1 and "train.bin" in dataset["checksums"]

    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nfive\n")
    error = prepare_here("all", "--manifest", valid, "--out", out, "--split", "valid", "--vocab", other_vocab,
                          "--work-dir", tmp_path / "work")
    assert "dict.txt holds another vocabulary (30522 tokens) than" in error


def test_stale_stage_and_bad_input_are_clear_errors(prepared, corpus, tmp_path):
    changed = tmp_path / "changed.tsv"
    changed.write_text(open(corpus["manifest"], encoding="utf-8").read() + "extra\tx\tS\t\tmore\t\t\t\t\n")
    work = shutil.copytree(prepared["out"] / "work" / "train", tmp_path / "work")  # keep the fixture's intact
    error = prepare_here("write", "--manifest", changed, "--out", tmp_path / "out", "--work-dir", work)
    assert "the text stage's inputs changed since it ran on" in error
    assert "(1 of 5 shards changed (first: 00004)" in error
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\twav\nu\thello\tu.wav\n")
    error = prepare_here("all", "--manifest", bad, "--out", tmp_path / "x", "--vocab", "v.txt")
    assert "bad.tsv:1: bad header" in error and "unknown columns ['wav']" in error
    error = prepare_here("text", "--manifest", changed, "--out", tmp_path / "y", "--vocab", tmp_path / "none.txt")
    assert error.startswith("memobert-prepare: error:") and "none.txt: no such BERT vocab.txt" in error


class _Interrupted(Exception):
    pass


class _Counting(AcousticStage):
    """Counts extractions; with ``stop_after`` it dies like a killed run after that many."""

    def __init__(self, checkpoint, stop_after=None, **kwargs):
        super().__init__(checkpoint, **kwargs)
        self.stop_after, self.calls = stop_after, 0

    def extract(self, utterance):
        if self.calls == self.stop_after:
            raise _Interrupted()
        self.calls += 1
        return super().extract(utterance)


def test_a_killed_stage_resumes_from_finished_shards(corpus, tiny_wav2vec2, tmp_path):  # noqa: F811
    plan = make_plan(corpus["manifest"], str(tmp_path / "work"), shard_size=4)
    assert plan.shard_sizes == [4, 4, 4, 4, 1]
    with pytest.raises(_Interrupted):
        run_stage(_Counting(tiny_wav2vec2["fairseq"], stop_after=6), plan)
    folder = plan.stage_dir("acoustic")
    assert sorted(f for f in os.listdir(folder) if f.endswith(".done")) == ["00000.done"]
    assert not [f for f in os.listdir(folder) if "partial" in f or f.endswith(".tmp")]  # nothing half-written
    resumed = _Counting(tiny_wav2vec2["fairseq"])
    run_stage(resumed, plan)
    assert resumed.calls == plan.num_entries - 4  # shard 0 was not redone

    clean = make_plan(corpus["manifest"], str(tmp_path / "clean"), shard_size=4)
    # in 2 worker processes, from the Hugging Face copy of the same weights
    run_stage(AcousticStage(tiny_wav2vec2["huggingface"]), clean, workers=2)
    for shard in range(plan.num_shards):  # the same up to float rounding (thread counts and kernels differ)
        resumed_store = FeatureStore(folder, f"{shard:05d}", "acoustic")
        clean_store = FeatureStore(clean.stage_dir("acoustic"), f"{shard:05d}", "acoustic")
        assert resumed_store.lengths.tolist() == clean_store.lengths.tolist()
        assert np.allclose(resumed_store.frames, clean_store.frames, atol=2e-3, rtol=2e-3)
    changed = _Counting(tiny_wav2vec2["fairseq"], pool=2)  # another setting: every shard is redone
    run_stage(changed, plan)
    assert changed.calls == plan.num_entries


class _Flaky(FrameStage):
    """Finite features, except NaN for one utterance and float16 overflow for another."""

    name = "flaky"
    streams = {"flaky": 2}

    def extract(self, utterance):
        if utterance.id == "cards-002":
            raise ItemError("decoder hiccup")
        value = {"cards-003": np.nan, "cards-004": 1e6}.get(utterance.id, 1.0)
        return {"flaky": np.full((3, 2), value)}


def test_nan_and_overflowing_features_are_reported_not_stored(corpus, tmp_path):
    plan = make_plan(corpus["manifest"], str(tmp_path / "work"), shard_size=100)
    run_stage(_Flaky(), plan)
    problems = {p.id: p.reason for p in read_problems(os.path.join(plan.stage_dir("flaky"), "00000.problems.tsv"))}
    assert problems == {"cards-002": "decoder hiccup",
                        "cards-003": "NaN or Inf in the features (or values beyond float16's range)",
                        "cards-004": "NaN or Inf in the features (or values beyond float16's range)"}
    store = FeatureStore(plan.stage_dir("flaky"), "00000", "flaky")
    ids = [u.id for u in plan.read_entries(0)]
    assert [store.lengths[ids.index(i)] for i in problems] == [0, 0, 0] and store.lengths.sum() == 3 * (len(ids) - 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 semantics")
def test_kill_9_during_preparation_resumes_to_the_uninterrupted_output(prepared, corpus, tiny_wav2vec2, tiny_fer,  # noqa: F811
                                                                      minilm_dir, tmp_path):
    """``kill -9`` in the middle of the acoustic stage; the rerun redoes only unfinished shards and
    writes byte for byte what the uninterrupted run (the ``prepared`` fixture) wrote."""
    out = tmp_path / "killed"
    args = _prepare_all_args(corpus, out, minilm_dir, tiny_wav2vec2, tiny_fer)
    acoustic = out / "work" / "train" / "acoustic"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([*PREPARE, *map(str, args)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until((acoustic / "00000.done").exists, proc, tmp_path / "killed.log", timeout=300,
                       what="the first acoustic shard", interval=0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = sorted(f.name for f in acoustic.iterdir() if f.name.endswith(".done"))
    assert 1 <= len(done_at_kill) < 5 and not (acoustic / "complete.json").exists()  # killed mid-stage
    assert not (out / "dataset.json").exists()

    rerun = _prepare(*args)
    assert f"acoustic: {len(done_at_kill)} of 5 shards already done, resuming" in rerun.stderr
    written = json.loads((out / "dataset.json").read_text())["checksums"]
    assert written == json.loads((prepared["out"] / "dataset.json").read_text())["checksums"]
    assert (out / "report.tsv").read_text() == (prepared["out"] / "report.tsv").read_text()
