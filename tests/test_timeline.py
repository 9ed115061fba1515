"""Recordings of any length -> an emotion timeline (memobert_plugin.inference.timeline, memobert-predict --media/--timeline):
transcripts, text alignment, chunked speech search, folders, output formats; end to end on a 2-minute recording
of real speech and a real face."""

import csv
import io
import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import run_cli
from memobert_plugin.inference import timeline
from memobert_plugin.inference.cli import main as predict_main
from memobert_plugin.prepare.corpora.videos import Cue
from memobert_plugin.inference.transcripts import read_transcript

PREDICT = [sys.executable, "-m", "memobert_plugin.inference.cli"]
CLASSES = ("anger", "happy")
RECORDS = [
    {"file": "a.mp4", "start": 0.5, "end": 2.25, "text": "so, \"glad\"\there", "label": "happy",
     "probabilities": {"anger": 0.25, "happy": 0.75}, "notes": ""},
    {"file": "a.mp4", "start": 3.0, "end": 4.0, "text": "", "label": "anger",
     "probabilities": {"anger": 0.5, "happy": 0.5}, "notes": "visual: no face detected; predicted without it"},
]


def test_srt_vtt_and_tsv_transcripts_give_the_same_cues(tmp_path):
    (tmp_path / "t.srt").write_text("1\n00:00:01,500 --> 00:00:03,000\n<i>Hello</i> there\n\n"
                                    "2\n00:01:00,000 --> 00:01:02,250\nsecond\ncue\n", encoding="utf-8")
    (tmp_path / "t.vtt").write_text("WEBVTT\n\nNOTE a comment\nspanning lines\n\nfirst\n00:01.500 --> 00:03.000 "
                                    "align:start\n<v Ann>Hello</v> there\n\n01:00.000 --> 01:02.250\nsecond\ncue\n",
                                    encoding="utf-8")
    (tmp_path / "t.tsv").write_text("start\tend\ttext\n1.5\t3\tHello there\n60\t62.25\tsecond cue\n", encoding="utf-8")
    expected = [(1.5, 3.0, "Hello there"), (60.0, 62.25, "second cue")]
    for ext in ("srt", "vtt", "tsv"):
        assert [(c.start, c.end, c.text) for c in read_transcript(str(tmp_path / f"t.{ext}"))] == expected, ext
    (tmp_path / "bad.vtt").write_text("WEBVTT\n\n00:01.500 -> 00:03.000\nHello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.vtt:4: expected a cue timing"):
        read_transcript(str(tmp_path / "bad.vtt"))
    (tmp_path / "bad.tsv").write_text("start\tend\ttext\n1.5\tsoon\tHello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2: start and end must be seconds"):
        read_transcript(str(tmp_path / "bad.tsv"))
    (tmp_path / "back.tsv").write_text("start\tend\ttext\n3\t1\tHello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"back.tsv:2: a cue must end after it starts"):
        read_transcript(str(tmp_path / "back.tsv"))


def test_words_go_to_the_segment_their_time_overlaps_most():
    segments = [(0.0, 2.0), (3.0, 5.0), (10.0, 11.0)]
    # spread over 1-4 s: "one two" inside the first segment, "three" and "four" in the pause (the nearer
    # segment takes each), "five six" inside the second
    cues = [Cue(1, 1.0, 4.0, "one two three four five six"),
            Cue(2, 5.5, 6.0, "lost"),  # in a pause between speech: overlaps no segment
            Cue(3, 9.0, 10.5, "early late")]  # "early" falls before the segment: still the cue's segment
    texts, unused = timeline.align_text(segments, cues)
    assert texts == ["one two three", "four five six", "early late"] and unused == 1
    # a word whose time overlaps two segments goes to the one it overlaps more
    assert timeline.align_text([(0.0, 2.1), (2.2, 5.0)], [Cue(1, 0.0, 3.0, "x y z")]) == (["x y", "z"], 0)


class _ThresholdVoice:
    """Voice wherever the 10-ms window's peak exceeds 0.1: independent of where a chunk starts."""

    def segments(self, wave):
        peaks = np.abs(wave[: len(wave) // 160 * 160]).reshape(-1, 160).max(axis=1) > 0.1
        edges = np.flatnonzero(np.diff(np.concatenate([[0], peaks.astype(int), [0]])))
        return [(int(a) * 160, int(b) * 160) for a, b in zip(edges[::2], edges[1::2])]


def test_speech_is_found_chunk_by_chunk_and_joined_across_chunks(tmp_path, monkeypatch):
    import soundfile

    rate = 16000
    wave = np.zeros(40 * rate, np.float32)
    for start, end in ((1.0, 3.0), (5.5, 9.5), (12.0, 34.5)):  # the third crosses chunk ends and is 22.5 s long
        wave[int(start * rate): int(end * rate)] = 0.5
    soundfile.write(tmp_path / "a.wav", wave, rate)
    monkeypatch.setattr(timeline, "CHUNK_SECONDS", 4.0)  # the first two are cut by chunk ends too
    found = timeline.speech_segments(str(tmp_path / "a.wav"), _ThresholdVoice(), max_seconds=10.0)
    assert np.allclose(found, [(1, 3), (5.5, 9.5), (12, 19.5), (19.5, 27), (27, 34.5)], atol=0.011)


def test_records_are_the_same_in_every_format(tmp_path):
    for fmt in timeline.FORMATS:
        path = str(tmp_path / f"out.{fmt}")
        timeline.write_records(RECORDS, CLASSES, path, timeline.output_format(path))
        text = open(path, encoding="utf-8").read()
        if fmt == "json":
            back = json.loads(text)
        elif fmt == "jsonl":
            back = [json.loads(line) for line in text.splitlines()]
        else:
            rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",",
                                       quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL))
            assert list(rows[0]) == ["file", "start", "end", "text", "label", "p_anger", "p_happy", "notes"]
            back = [{"file": r["file"], "start": float(r["start"]), "end": float(r["end"]), "text": r["text"],
                     "label": r["label"], "probabilities": {c: float(r[f"p_{c}"]) for c in CLASSES},
                     "notes": r["notes"]} for r in rows]
        expected = [dict(r, text=r["text"].replace("\t", " ")) if fmt == "tsv" else r for r in RECORDS]
        assert back == expected, fmt
    assert timeline.output_format("-") == "tsv" and timeline.output_format("x.json", "csv") == "csv"
    with pytest.raises(ValueError, match=r"out.txt: cannot tell the format from .txt"):
        timeline.output_format("out.txt")


def test_a_folder_pairs_same_named_media_and_transcripts(tmp_path):
    for name in ("talk.mp4", "talk.wav", "talk.srt", "memo.flac", "orphan.vtt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    recordings, ignored = timeline.recordings_in_folder(str(tmp_path))
    assert [(os.path.basename(r.audio), os.path.basename(r.video), os.path.basename(r.transcript))
            for r in recordings] == [("memo.flac", "", ""), ("talk.wav", "talk.mp4", "talk.srt")]
    assert [os.path.basename(p) for p in ignored] == ["notes.txt", "orphan.vtt"]
    (tmp_path / "talk.vtt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"two transcript files named talk: talk.srt and talk.vtt"):
        timeline.recordings_in_folder(str(tmp_path))


@pytest.mark.parametrize("argv, message", [
    (["--media", "a.wav", "--text", "hi"], "a timeline (--media, --timeline, --transcript, --format, --plot) "
                                           "takes a whole recording"),
    (["--plot", "t.png"], "a timeline needs --media, or --audio/--video (not both)"),
    (["--media", "a.wav", "--audio", "b.wav"], "a timeline needs --media, or --audio/--video (not both)"),
])
def test_timeline_arguments_are_checked_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        predict_main(["--model", "m.bundle", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


# --- end to end, on a real recording (slow) ---------------------------------------------------------------------

from prepare_material import pocketsphinx, tiny_fer, tiny_wav2vec2  # noqa: E402,F401
from test_predict_media import media, trained  # noqa: E402,F401  the tiny bundle trained on real media


@pytest.fixture(scope="module")
def recording(tmp_path_factory, pocketsphinx):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from recording_material import long_recording

    return long_recording(str(tmp_path_factory.mktemp("recording")), pocketsphinx, dark=(5,))


def _overlapping(pieces, start, end):
    return [i for i, p in enumerate(pieces) if p["start"] < end and p["end"] > start]


@pytest.mark.slow
def test_a_long_video_becomes_a_timeline_of_its_speech(trained, recording, tmp_path):
    out, plot = tmp_path / "timeline.json", tmp_path / "timeline.png"
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--media", recording["video"], "--transcript",
                    recording["srt"], "--output", out, "--plot", plot])
    records = json.loads(out.read_text())
    pieces = recording["pieces"]
    assert recording["duration"] > 120
    # every segment lies in one piece of speech, and every piece has segments: none across the 3-s pauses
    owners = [_overlapping(pieces, r["start"], r["end"]) for r in records]
    assert all(len(o) == 1 for o in owners), [r for r, o in zip(records, owners) if len(o) != 1]
    assert sorted({o[0] for o in owners}) == list(range(len(pieces)))
    # the transcript's words, each in the segment of its piece, none lost or repeated
    for i, piece in enumerate(pieces):
        assert " ".join(r["text"] for r, o in zip(records, owners) if o == [i]) == piece["text"]
    # the face was found in every segment but those of the piece played over black frames
    noted = {o[0] for r, o in zip(records, owners) if r["notes"]}
    assert noted == {5}, [(r["start"], r["notes"]) for r in records if r["notes"]]
    assert "visual: no face detected" in records[[o[0] for o in owners].index(5)]["notes"]
    assert "find speech: 100%" in proc.stderr and "predict: 100%" in proc.stderr
    # a segment's probabilities are those of the same span predicted as one utterance from the same media
    r = records[3]
    single = run_cli([*PREDICT, "--model", trained["bundle"], "--audio", recording["wav"], "--video",
                      recording["video"], "--text", r["text"], "--start", str(r["start"]), "--end", str(r["end"]),
                      "--no-progress"]).stdout.splitlines()
    header, row = single[0].split("\t"), single[1].split("\t")
    probabilities = {c[2:]: float(v) for c, v in zip(header, row) if c.startswith("p_")}
    assert probabilities == pytest.approx(r["probabilities"], abs=2e-3)  # times rounded to ms: a frame may shift
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_folder_gives_the_records_of_the_python_call(trained, recording, tmp_path):
    from memobert_plugin.inference.predictor import EmotionPredictor

    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(recording["wav"], folder / "talk.wav")
    shutil.copy(recording["srt"], folder / "talk.srt")
    memo = folder / "memo.wav"
    import soundfile

    wave, rate = soundfile.read(recording["wav"])
    soundfile.write(memo, wave[: int(20 * rate)], rate)
    (folder / "readme.txt").write_text("not media")
    proc = run_cli([*PREDICT, "--model", trained["bundle"], "--media", folder, "--format", "jsonl",
                    "--no-progress"])
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert f"{folder / 'readme.txt'}: neither audio, video nor a transcript" in proc.stderr
    predictor = EmotionPredictor(trained["bundle"])
    expected = (timeline.predict_recording(predictor, audio=str(memo))
                + timeline.predict_recording(predictor, audio=str(folder / "talk.wav"),
                                             transcript=str(folder / "talk.srt")))
    assert [r["file"] for r in lines] == [r["file"] for r in expected]
    assert {r["file"] for r in lines} == {str(memo), str(folder / "talk.wav")}
    for got, want in zip(lines, expected):
        assert got == dict(want, probabilities=pytest.approx(want["probabilities"], abs=1e-6))
    assert all(r["text"] == "" for r in lines if r["file"] == str(memo))
    assert any(r["text"] for r in lines if r["file"] != str(memo))
