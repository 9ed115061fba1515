"""memobert-prepare never keeps a stale result: media fixed in place are redone (only their shards),
metadata edits re-run no extractor, labels are checked, degraded media are reported, and the
output does not depend on --workers."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile

pytest.importorskip("cv2", reason="the extractors need the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the extractors need the 'extract' extra (av)")
pytest.importorskip("opensmile", reason="the egemaps extractor needs the 'extract' extra (opensmile)")

from memobert_plugin.data.feature_store import FeatureStore  # noqa: E402
from memobert_plugin.prepare.stages.opensmile import OpenSmileStage  # noqa: E402
from memobert_plugin.prepare.shards import make_plan, run_stage  # noqa: E402
from prepare_material import pocketsphinx, tiny_fer, tiny_wav2vec2  # noqa: E402,F401
from prepare_material import astronaut_gray, prepare_here, read_tsv, speech_utterances  # noqa: E402
from prepare_material import write_manifest, write_video  # noqa: E402

COLUMNS = ["id", "speaker", "session", "label", "text", "audio", "video"]
LABELS = ["happy", "sad", "neutral", "anger", "neutral", ""]
BAD_SHARD = {"acoustic": 1, "visual": 2}  # shard size 2: u2 (bad.wav) is in shard 1, u4 (face.mp4) in shard 2


@pytest.fixture
def corpus(tmp_path, pocketsphinx):  # noqa: F811
    """Six short real utterances, each with its own copy of the audio (so one can be broken), u4 with a video."""
    root = tmp_path / "corpus"
    root.mkdir()
    speech = [u for u in speech_utterances(pocketsphinx) if u["speaker"] == "cards" or u["id"] == "austen-0880"]
    assert len(speech) == len(LABELS)
    rows = []
    for i, (utterance, label) in enumerate(zip(speech, LABELS)):
        audio = "bad.wav" if i == 2 else f"u{i}.wav"
        shutil.copyfile(utterance["wav"], root / audio)
        rows.append({"id": f"u{i}", "speaker": f"spk{i % 2}", "session": "S1", "label": label,
                     "text": utterance["text"], "audio": audio, "video": "face.mp4" if i == 4 else ""})
    face = astronaut_gray()[20:260, 110:350]
    write_video(str(root / "face.mp4"), [face] * 20)  # 2 s at 10 fps
    shutil.copyfile(root / "bad.wav", root / "good.wav")
    shutil.copyfile(root / "face.mp4", root / "good.mp4")
    return {"root": root, "manifest": write_manifest(str(root / "manifest.tsv"), rows, COLUMNS), "rows": rows}


def _run(corpus, out, minilm_dir, *extra, fer=None, command="all"):
    args = [command, "--manifest", corpus["manifest"], "--out", out, "--shard-size", 2]
    if command == "all":
        args += ["--vocab", f"{minilm_dir}/vocab.txt", "--acoustic-features", "egemaps", "--fps", 10]
        args += ["--fer-model", fer] if fer else []
    error = prepare_here(*args, *extra)
    assert not error, error
    return read_tsv(out / "report.tsv")


def _stamps(out):
    """(stage, file) -> modification time of every shard output under the work dir."""
    work = out / "work" / "train"
    return {(stage, f.name): f.stat().st_mtime_ns for stage in ("text", "acoustic", "visual") if (work / stage).is_dir()
            for f in (work / stage).iterdir() if f.name[:5].isdigit()}


def _redone_shards(before, after):
    """(stage, shard) pairs whose files changed."""
    assert before.keys() == after.keys()
    return sorted({(stage, int(name[:5])) for (stage, name), t in after.items() if before[(stage, name)] != t})


def _frames(out, stream, uid):
    ids = [r["id"] for r in read_tsv(out / "train.meta.tsv")]
    return int(FeatureStore(str(out), "train", stream).lengths[ids.index(uid)])


def _break(path, kind):
    if kind == "missing":
        os.remove(path)
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00not really audio at all" * 10)
    elif kind == "zero-length":
        soundfile.write(str(path), np.zeros(0, np.float32), 16000)
    elif kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # the header still promises the whole recording
    elif kind == "bad-video":
        path.write_bytes(b"\x00" * 64)


BAD_MEDIA = {  # kind -> (file of the corpus, stage, reason, action)
    "missing": ("bad.wav", "acoustic", "missing file: audio", "kept without acoustic"),
    "corrupt": ("bad.wav", "acoustic", "unreadable audio", "kept without acoustic"),
    "zero-length": ("bad.wav", "acoustic", "zero-length audio", "kept without acoustic"),
    "truncated": ("bad.wav", "acoustic", "truncated audio", "kept"),
    "bad-video": ("face.mp4", "visual", "unreadable video", "kept without visual"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MEDIA))
def test_a_file_fixed_in_place_is_redone_and_nothing_else(corpus, minilm_dir, tiny_fer, tmp_path, kind):  # noqa: F811
    name, stage, reason, action = BAD_MEDIA[kind]
    uid, stream = ("u4", "visual") if stage == "visual" else ("u2", "acoustic")
    fer = tiny_fer if stage == "visual" else None
    good = corpus["root"] / ("good.mp4" if stage == "visual" else "good.wav")
    _break(corpus["root"] / name, kind)
    out = tmp_path / "out"
    rows = [(r["id"], r["stage"], r["action"]) for r in _run(corpus, out, minilm_dir, fer=fer) if reason in r["reason"]]
    assert rows == [(uid, stage, action)]
    frames_broken = _frames(out, stream, uid)
    assert (frames_broken > 0) == (kind == "truncated")  # a truncated file keeps the features of what is there

    before = _stamps(out)
    shutil.copyfile(good, corpus["root"] / name)  # fixed in place: same path, same manifest
    report = _run(corpus, out, minilm_dir, fer=fer)
    assert not [r for r in report if r["id"] == uid and r["stage"] == stage]  # the stale row is gone
    assert _frames(out, stream, uid) > frames_broken
    assert _redone_shards(before, _stamps(out)) == [(stage, BAD_SHARD[stage])]


class _Recording(OpenSmileStage):
    """Records which utterances it extracts."""

    def __init__(self):
        super().__init__("egemaps")
        self.extracted = []

    def extract(self, utterance):
        self.extracted.append(utterance.id)
        return super().extract(utterance)


def test_within_a_redone_shard_only_the_changed_utterance_is_extracted(corpus, tmp_path):
    plan = make_plan(corpus["manifest"], str(tmp_path / "work"), shard_size=3)
    first = _Recording()
    run_stage(first, plan)
    assert first.extracted == [r["id"] for r in corpus["rows"]]
    folder = plan.stage_dir("acoustic")
    before = [FeatureStore(folder, "00000", "acoustic")[i].copy() for i in range(3)]
    untouched = os.stat(os.path.join(folder, "00001.acoustic.npy")).st_mtime_ns

    shutil.copyfile(corpus["root"] / "u0.wav", corpus["root"] / "u1.wav")  # u1 now holds u0's recording
    again = _Recording()
    run_stage(again, plan)
    assert again.extracted == ["u1"]  # u0 and u2 are copied from the shard's previous outputs
    after = FeatureStore(folder, "00000", "acoustic")
    assert [after[i].tobytes() for i in (0, 1, 2)] == [before[0].tobytes(), before[0].tobytes(), before[2].tobytes()]
    assert os.stat(os.path.join(folder, "00001.acoustic.npy")).st_mtime_ns == untouched


def test_audio_replaced_with_the_same_size_and_mtime_is_redone(corpus, tmp_path):
    """Issue 24.3: size and mtime can both be restored by hand; the content is what counts."""
    plan = make_plan(corpus["manifest"], str(tmp_path / "work"), shard_size=3)
    run_stage(_Recording(), plan)
    wav = corpus["root"] / "u1.wav"
    before = os.stat(wav)
    wave, rate = soundfile.read(str(wav), dtype="int16")
    soundfile.write(str(wav), wave[::-1].copy(), rate, subtype="PCM_16")  # other audio, the same length
    os.utime(wav, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(wav).st_size, os.stat(wav).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = _Recording()
    run_stage(again, plan)
    assert again.extracted == ["u1"]


def test_unchanged_media_are_hashed_once(corpus, tmp_path, monkeypatch):
    from memobert_plugin import files
    from memobert_plugin.files import sha256_file

    hashed = []
    monkeypatch.setattr(files, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    monkeypatch.setattr(files, "RACY_NS", 0)  # the corpus was just written: count it as settled
    plan = make_plan(corpus["manifest"], str(tmp_path / "work"), shard_size=3)
    run_stage(_Recording(), plan)
    audio = {str(corpus["root"] / r["audio"]) for r in corpus["rows"]}
    assert set(hashed) == audio and len(hashed) == len(audio)  # each recording once, though bad.wav serves one row
    hashed.clear()
    again = _Recording()
    run_stage(again, plan)
    assert hashed == [] and again.extracted == []  # a rerun reads no recording


def test_metadata_edits_rewrite_the_metadata_without_extracting(corpus, minilm_dir, tiny_fer, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    _run(corpus, out, minilm_dir, fer=tiny_fer)
    checksums = json.loads((out / "dataset.json").read_text())["checksums"]
    before = _stamps(out)
    rows = [dict(r) for r in corpus["rows"]]
    rows[3].update(label="sad", speaker="spk9", session="S7")
    write_manifest(corpus["manifest"], rows, COLUMNS)

    _run(corpus, out, minilm_dir, fer=tiny_fer)  # every stage is asked again: none re-extracts
    assert _redone_shards(before, _stamps(out)) == []
    assert read_tsv(out / "train.meta.tsv")[3] == {"id": "u3", "speaker": "spk9", "session": "S7", "label": "sad"}
    after = json.loads((out / "dataset.json").read_text())["checksums"]
    assert {n for n in checksums if checksums[n] != after[n]} == {"train.meta.tsv"}

    rows[3]["label"] = "anger"  # 'write' alone accepts the stages' outputs after a metadata edit
    write_manifest(corpus["manifest"], rows, COLUMNS)
    _run(corpus, out, minilm_dir, command="write")
    assert read_tsv(out / "train.meta.tsv")[3]["label"] == "anger"

    rows[3]["audio"] = "u1.wav"  # an input edit is not metadata: 'write' refuses the stale stage
    write_manifest(corpus["manifest"], rows, COLUMNS)
    error = prepare_here("write", "--manifest", corpus["manifest"], "--out", out)
    assert "the acoustic stage's inputs changed" in error and "1 of 3 shards changed (first: 00001)" in error


def test_labels_outside_the_label_set_are_dropped_with_a_report_row(corpus, minilm_dir, tmp_path, caplog):
    rows = [dict(r) for r in corpus["rows"]]
    rows[1]["label"] = "frustrated"
    rows[5]["label"] = "Happy"
    write_manifest(corpus["manifest"], rows, COLUMNS)
    out = tmp_path / "out"
    report = _run(corpus, out, minilm_dir)
    bad = [(r["id"], r["stage"], r["action"]) for r in report if r["stage"] == "label"]
    assert bad == [("u1", "label", "dropped"), ("u5", "label", "dropped")]
    assert "label 'frustrated' is not one of anger,happy,neutral,sad (--labels)" in report[0]["reason"]
    assert [r["id"] for r in read_tsv(out / "train.meta.tsv")] == ["u0", "u2", "u3", "u4"]
    assert "train: 2 utterances dropped for labels outside anger,happy,neutral,sad" in caplog.text
    assert json.loads((out / "dataset.json").read_text())["splits"]["train"]["bad_labels"] == {"frustrated": 1,
                                                                                               "Happy": 1}

    _run(corpus, out, minilm_dir, "--labels", "none", command="write")  # no check: every label is kept
    assert len(read_tsv(out / "train.meta.tsv")) == 6 and read_tsv(out / "report.tsv") == []
    _run(corpus, out, minilm_dir, "--labels", "frustrated,Happy", command="write")  # another label set
    assert [r["id"] for r in read_tsv(out / "train.meta.tsv")] == ["u1", "u5"]


def test_clipping_at_max_seconds_is_reported_for_audio_and_video(corpus, minilm_dir, tiny_fer, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    report = _run(corpus, out, minilm_dir, "--max-seconds", 1.5, fer=tiny_fer)
    clipped = {(r["id"], r["stage"]): r for r in report if "clipped at --max-seconds 1.5 s" in r["reason"]}
    longer = {u["id"] for u in corpus["rows"] if soundfile.info(str(corpus["root"] / u["audio"])).duration > 1.5}
    assert {uid for uid, stage in clipped if stage == "acoustic"} == longer and longer
    assert ("u4", "visual") in clipped  # the 2 s video
    assert {r["action"] for r in clipped.values()} == {"kept"}
    assert _frames(out, "acoustic", "u4") == 25  # 1.5 s of 10 ms descriptors, pooled by 6
    assert json.loads((out / "dataset.json").read_text())["splits"]["train"]["warnings"] == {
        "acoustic": len(longer), "visual": 1}


@pytest.mark.parametrize("with_video", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_workers_give_byte_identical_output(corpus, minilm_dir, tiny_wav2vec2, tiny_fer, tmp_path,  # noqa: F811
                                            with_video):
    """1 and 2 worker processes: the same bytes (the extractors' float results depend on thread counts)."""
    checksums = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        error = prepare_here("all", "--manifest", corpus["manifest"], "--out", out, "--shard-size", 2,
                             "--vocab", f"{minilm_dir}/vocab.txt", "--wav2vec2", tiny_wav2vec2["fairseq"],
                             *(["--fer-model", tiny_fer, "--fps", 10] if with_video else []),
                             "--workers", workers, "--threads", 2)
        assert not error, error
        checksums[workers] = json.loads((out / "dataset.json").read_text())["checksums"]
    assert "train.acoustic.npy" in checksums[1] and ("train.visual.npy" in checksums[1]) == with_video
    assert checksums[1] == checksums[2]
