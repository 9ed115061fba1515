"""The corpus recipes under examples/: their manifest builders on small fake corpora laid out like the
official releases (default suite), and each recipe's run.sh end to end with tiny settings (slow)."""

import json
import os
import shutil
from collections import Counter

import numpy as np
import pytest
import soundfile

from conftest import BIN, REPO_ROOT, run_cli
from memobert_plugin.prepare.corpora.cli import main as build_manifest
from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError
from memobert_plugin.prepare.corpora.iemocap import build_iemocap
from memobert_plugin.prepare.corpora.msp_improv import build_msp_improv
from memobert_plugin.prepare.corpora.videos import extract_audio_track, read_srt
from memobert_plugin.prepare.manifest import Utterance, read_manifest
from prepare_material import astronaut_gray, pocketsphinx, tiny_fer, tiny_wav2vec2  # noqa: F401
from prepare_material import read_tsv, write_two_face_video, write_video

TEXTS = ["Excuse me.", "Do you have your forms?", "Yeah, I have them right here.", "That is wonderful news!"]


def _manifest(path):
    items = list(read_manifest(str(path)))
    assert all(isinstance(u, Utterance) for u in items), [u for u in items if not isinstance(u, Utterance)]
    return {u.id: u for u in items}


def _placeholders(*paths):
    """Empty media files: the builders only check that they exist."""
    for path in paths:
        with open(path, "wb"):
            pass


class CopiedMedia:
    """Puts the same wav and video at every pair of paths asked for: made once by ``make(wav, video)``, then copied."""

    def __init__(self, make, cache: str):
        self.make, self.made = make, (os.path.join(cache, "media.wav"), os.path.join(cache, "media.avi"))

    def __call__(self, wav: str, video: str) -> None:
        if not os.path.isfile(self.made[1]):
            self.make(*self.made)
        shutil.copyfile(self.made[0], wav)
        shutil.copyfile(self.made[1], video)


# ---------------------------------------------------------------- IEMOCAP_full_release in miniature

_TURN = 0.3  # seconds per turn; ten turns fit the 3.2 s of write_two_face_video
# (speaker's gender, label) of each turn of a fake dialog: every class for both actors, and excluded labels
_IEMOCAP_TURNS = [("F", "neu"), ("M", "ang"), ("F", "exc"), ("M", "sad"), ("F", "fru"), ("M", "hap"),
                  ("F", "ang"), ("M", "xxx"), ("F", "sad"), ("M", "neu")]
_IEMOCAP_CLASS = {"neu": "neutral", "ang": "anger", "exc": "happy", "hap": "happy", "sad": "sad"}
_NO_TRANSCRIPT = "Ses03F_impro03_F001"


def _iemocap_dialogs(session: int):
    return [f"Ses0{session}F_impro0{session}", f"Ses0{session}M_script01_1"]


def write_iemocap(root, media=_placeholders) -> dict:
    """Sessions 1-5 with an improvised and a scripted dialog each, in the release's layout (8 turns of
    the four classes per actor and dialog); one labelled turn has no transcription line. Returns the
    expected outcome."""
    expected = {"kept": {}, "excluded": Counter()}
    for session in range(1, 6):
        dialog_dir = root / f"Session{session}" / "dialog"
        for sub in ("EmoEvaluation/Categorical", "transcriptions", "wav", "avi/DivX"):
            (dialog_dir / sub).mkdir(parents=True, exist_ok=True)
        for dialog in _iemocap_dialogs(session):
            labels = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            transcript = ["M: Yeah.", f"{dialog}_MXX0 [000.0000-000.2000]: [LAUGHTER]"]  # lines of no labelled turn
            turns = Counter()
            for k, (gender, raw) in enumerate(_IEMOCAP_TURNS):
                uid = f"{dialog}_{gender}{turns[gender]:03d}"
                turns[gender] += 1
                start, end = k * _TURN, (k + 1) * _TURN
                labels += [f"[{start:.4f} - {end:.4f}]\t{uid}\t{raw}\t[2.5000, 3.0000, 2.5000]",
                           "C-E2:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
                if uid != _NO_TRANSCRIPT:
                    transcript.append(f"{uid} [{start:08.4f}-{end:08.4f}]: {TEXTS[k % len(TEXTS)]}")
                if raw in _IEMOCAP_CLASS:
                    speaker = f"Ses0{session}{gender}"
                    expected["kept"][uid] = (_IEMOCAP_CLASS[raw], speaker, round(start, 4), round(end, 4))
                else:
                    expected["excluded"][raw] += 1
            (dialog_dir / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(labels) + "\n")
            (dialog_dir / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
            (dialog_dir / "transcriptions" / f"{dialog}.txt").write_text("\n".join(transcript) + "\n")
            media(str(dialog_dir / "wav" / f"{dialog}.wav"), str(dialog_dir / "avi" / "DivX" / f"{dialog}.avi"))
    return expected


@pytest.fixture
def iemocap(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    return root, write_iemocap(root)


def test_iemocap_manifest(iemocap, tmp_path, capsys):
    root, expected = iemocap
    build_manifest(["iemocap", "--root", str(root), "--out", str(tmp_path / "out")])
    rows = _manifest(tmp_path / "out" / "manifest.tsv")
    assert {uid: (u.label, u.speaker, u.start, u.end) for uid, u in rows.items()} == expected["kept"]
    first = rows["Ses01F_impro01_F000"]
    assert (first.text, first.session) == ("Excuse me.", "Ses01")
    assert first.audio == str(root / "Session1/dialog/wav/Ses01F_impro01.wav")
    assert first.video == str(root / "Session1/dialog/avi/DivX/Ses01F_impro01.avi")
    assert rows["Ses02M_script01_1_F000"].speaker == "Ses02F"  # the speaker is the id's last part, not the dialog's
    assert rows[_NO_TRANSCRIPT].text == ""
    report = read_tsv(tmp_path / "out" / "manifest_report.tsv")
    excluded = Counter(r["problem"].split()[1] for r in report if r["action"] == "excluded")
    assert excluded == expected["excluded"] == Counter(fru=10, xxx=10)
    no_text = [r for r in report if r["action"] == "kept with empty text"]
    assert [(r["id"], r["problem"]) for r in no_text] == [(_NO_TRANSCRIPT, "no line in the transcription file")]
    assert no_text[0]["source"].endswith("Session3/dialog/EmoEvaluation/Ses03F_impro03.txt:11")
    printed = capsys.readouterr().out
    assert "80 utterances, 10 speakers; anger 20, happy 20 (exc 10, hap 10), neutral 20, sad 20" in printed
    assert "excluded: label fru (frustration) 10, label xxx (no majority) 10" in printed


def test_iemocap_missing_media_is_reported(iemocap):
    root, expected = iemocap
    os.remove(root / "Session4/dialog/avi/DivX/Ses04F_impro04.avi")
    report = CorpusReport()
    rows = build_iemocap(str(root), report)
    assert len(rows) == len(expected["kept"])  # kept: memobert-prepare leaves out the video and reports it too
    missing = [e for e in report.entries if e.action == "kept without video"]
    assert sorted(e.id for e in missing) == sorted(u for u in expected["kept"] if u.startswith("Ses04F_impro04"))
    assert all("Ses04F_impro04.avi" in e.problem for e in missing)


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


_LABELS_1 = "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"


@pytest.mark.parametrize("change,message", [
    pytest.param(lambda r: _edit(r / _LABELS_1, "[0.3000 - 0.6000]", "[0.3000 -]"),
                 f"{_LABELS_1}:7: utterance line", id="header"),
    pytest.param(lambda r: _edit(r / _LABELS_1, "\tang\t", "\tanger\t"),
                 f"{_LABELS_1}:7: utterance Ses01F_impro01_M000: unknown label 'anger'", id="label"),
    pytest.param(lambda r: _edit(r / _LABELS_1, "Ses01F_impro01_M000\t", "Ses01F_impro02_M000\t"),
                 f"{_LABELS_1}:7: utterance id 'Ses01F_impro02_M000' is not of dialog Ses01F_impro01", id="foreign-id"),
    pytest.param(lambda r: _edit(r / _LABELS_1, "[0.3000 - 0.6000]", "[0.6000 - 0.3000]"),
                 f"{_LABELS_1}:7: utterance Ses01F_impro01_M000: end 0.3000 is not after start 0.6000", id="times"),
    pytest.param(lambda r: _edit(r / _LABELS_1, "Ses01F_impro01_M000\t", "Ses01F_impro01_F000\t"),
                 f"{_LABELS_1}:7: utterance Ses01F_impro01_F000 is listed twice", id="duplicate"),
    pytest.param(lambda r: shutil.rmtree(r / "Session5"),
                 "missing Session5", id="session"),
    pytest.param(lambda r: os.remove(r / "Session2/dialog/transcriptions/Ses02M_script01_1.txt"),
                 "Session2/dialog/transcriptions/Ses02M_script01_1.txt: transcription file missing", id="transcription"),
    pytest.param(lambda r: [os.remove(p) for p in r.glob("Session*/dialog/avi/DivX/*.avi")],
                 "Session1/dialog/avi/DivX/Ses01F_impro01.avi: none of the 10 video files exists", id="no-video"),
    pytest.param(lambda r: shutil.copy(r / _LABELS_1, r / "Session2/dialog/EmoEvaluation"),
                 "Ses01F_impro01.txt: dialog 'Ses01F_impro01' is not of Session2", id="misplaced"),
])
def test_iemocap_layout_errors_name_file_and_line(iemocap, change, message):
    root, _ = iemocap
    change(root)
    with pytest.raises(LayoutError) as caught:
        build_iemocap(str(root), CorpusReport())
    assert message in str(caught.value)


# ---------------------------------------------------------------- MSP-IMPROV in miniature

_MSP_LABELS = "AHSNAHSNOX"  # the consensus labels of each actor's utterances of recording type S
_MSP_CLASS = {"A": "anger", "H": "happy", "S": "sad", "N": "neutral"}
_MSP_UNTRANSCRIBED, _MSP_EMPTY = "MSP-IMPROV-S02H-F03-S-FM02", "MSP-IMPROV-S03S-M03-S-MF03"


def write_msp_improv(root, media=_placeholders) -> dict:
    """Sessions 1-3 in the release's layout: Evalution.txt with rating lines, Audio/ and Video/; and a
    transcript TSV lacking one kept utterance, with an empty text and a text of an unrated utterance."""
    expected = {"kept": {}, "excluded": Counter()}
    blocks, transcripts = [], ["id\ttext"]
    for session in range(1, 4):
        for gender, order in (("F", "FM"), ("M", "MF")):
            names = [(f"S{k + 1:02d}{'AHSN'[k % 4]}", "S", f"{order}{k + 1:02d}", label)
                     for k, label in enumerate(_MSP_LABELS)]
            names.append(("S01A", "R", f"{order}01", "A"))  # a read sentence: another recording type
            for sentence, kind, turn, label in names:
                name = f"IMPROV-{sentence}-{gender}0{session}-{kind}-{turn}"
                blocks.append(f"UTD-{name}.avi; {label}; A:3.000000; V:2.600000; D:2.400000; N:0.000000\n"
                              f"UTD-{name}-p01; Angry; Frustrated; A:3.0; V:2.0; D:3.0; N:2.0\n"
                              f"UTD-{name}-p02; Neutral; ; A:2.0; V:3.0; D:3.0; N:4.0\n")
                uid = f"MSP-{name}"
                folder = root / "Audio" / f"session{session}" / sentence / kind
                video_folder = root / "Video" / f"session{session}" / sentence / kind
                folder.mkdir(parents=True, exist_ok=True)
                video_folder.mkdir(parents=True, exist_ok=True)
                media(str(folder / f"{uid}.wav"), str(video_folder / f"{uid}.avi"))
                if uid != _MSP_UNTRANSCRIBED:
                    transcripts.append(f"{uid}\t{'' if uid == _MSP_EMPTY else TEXTS[len(transcripts) % len(TEXTS)]}")
                if kind != "S":
                    expected["excluded"]["recording type R"] += 1
                elif label in _MSP_CLASS:
                    expected["kept"][uid] = (_MSP_CLASS[label], f"{gender}0{session}", f"session{session}")
                else:
                    expected["excluded"][f"label {label}"] += 1
    transcripts.append("MSP-IMPROV-S09N-F01-P-FM09\tnot rated")
    (root / "Evalution.txt").write_text("\n".join(blocks))
    (root / "transcripts.tsv").write_text("\n".join(transcripts) + "\n")
    return expected


@pytest.fixture
def msp(tmp_path):
    root = tmp_path / "MSP-IMPROV"
    root.mkdir()
    return root, write_msp_improv(root)


def test_msp_improv_manifest(msp, tmp_path, capsys):
    root, expected = msp
    build_manifest(["msp_improv", "--root", str(root), "--transcripts", str(root / "transcripts.tsv"),
                    "--out", str(tmp_path / "out")])
    rows = _manifest(tmp_path / "out" / "manifest.tsv")
    assert {uid: (u.label, u.speaker, u.session) for uid, u in rows.items()} == expected["kept"]
    first = rows["MSP-IMPROV-S01A-F01-S-FM01"]
    assert first.audio == str(root / "Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav")
    assert first.video == str(root / "Video/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.avi")
    assert (first.start, first.end, first.text) == (None, None, TEXTS[1])
    assert rows[_MSP_UNTRANSCRIBED].text == rows[_MSP_EMPTY].text == ""
    report = read_tsv(tmp_path / "out" / "manifest_report.tsv")
    assert Counter(" ".join(r["problem"].split()[:3 if "type" in r["problem"] else 2])
                   for r in report if r["action"] == "excluded") == expected["excluded"]
    assert expected["excluded"] == {"label O": 6, "label X": 6, "recording type R": 6}
    problems = {r["id"]: (r["problem"], r["action"]) for r in report if r["action"] != "excluded"}
    assert problems[_MSP_UNTRANSCRIBED] == ("no transcript", "kept with empty text")
    empty_line = (root / "transcripts.tsv").read_text().splitlines().index(f"{_MSP_EMPTY}\t") + 1
    assert problems[_MSP_EMPTY][0] == f"empty transcript ({root / 'transcripts.tsv'}:{empty_line})"
    assert problems["MSP-IMPROV-S09N-F01-P-FM09"] == ("transcript of an utterance not in Evalution.txt", "ignored")
    assert "48 utterances, 6 speakers; anger 12, happy 12, neutral 12, sad 12" in capsys.readouterr().out


def test_msp_improv_recording_types(msp):
    root, expected = msp
    rows = build_msp_improv(str(root), str(root / "transcripts.tsv"), CorpusReport(), types=["R", "S"])
    assert len(rows) == len(expected["kept"]) + expected["excluded"]["recording type R"]
    with pytest.raises(ValueError, match=r"recording types must be some of \('P', 'R', 'S', 'T'\)"):
        build_msp_improv(str(root), str(root / "transcripts.tsv"), CorpusReport(), types=["Q"])


@pytest.mark.parametrize("change,message", [
    pytest.param(lambda r: _edit(r / "Evalution.txt", "FM01.avi; A;", "FM01.avi; Q;"),
                 "Evalution.txt:1: MSP-IMPROV-S01A-F01-S-FM01: unknown consensus label 'Q'", id="label"),
    pytest.param(lambda r: _edit(r / "Evalution.txt", "UTD-IMPROV-S02H-F01-S-FM02.avi", "UTD-IMPROV-S2H-F01-S-FM02.avi"),
                 "Evalution.txt:5: 'UTD-IMPROV-S2H-F01-S-FM02' is not an MSP-IMPROV utterance name", id="name"),
    pytest.param(lambda r: _edit(r / "Evalution.txt", "UTD-IMPROV-S02H-F01-S-FM02.avi", "UTD-IMPROV-S01A-F01-S-FM01.avi"),
                 "Evalution.txt:5: MSP-IMPROV-S01A-F01-S-FM01 is rated twice", id="duplicate"),
    pytest.param(lambda r: _edit(r / "Evalution.txt", "FM01.avi; A;", "FM01.avi; ;"),
                 "Evalution.txt:1: consensus line without a label", id="no-label"),
    pytest.param(lambda r: _edit(r / "transcripts.tsv", "id\ttext", "utterance\ttext"),
                 "transcripts.tsv:1: the header must name the columns id and text", id="tsv-header"),
    pytest.param(lambda r: _edit(r / "transcripts.tsv", "MSP-IMPROV-S01A-F01-S-FM01\t", "S01A-F01-S-FM01\t"),
                 "transcripts.tsv:2: 'S01A-F01-S-FM01' is not an MSP-IMPROV utterance name", id="tsv-id"),
    pytest.param(lambda r: _edit(r / "transcripts.tsv", "MSP-IMPROV-S01A-F01-S-FM01\t", "MSP-IMPROV-S01A-F01-S-FM01\tone\t"),
                 "transcripts.tsv:2: 3 tab-separated fields, the header has 2", id="tsv-fields"),
    pytest.param(lambda r: _edit(r / "transcripts.tsv", "MSP-IMPROV-S02H-F01-S-FM02\t", "MSP-IMPROV-S01A-F01-S-FM01\t"),
                 "transcripts.tsv:3: MSP-IMPROV-S01A-F01-S-FM01 has a second transcript (first on line 2)", id="tsv-duplicate"),
    pytest.param(lambda r: (r / "Evalution.txt").write_bytes(b"UTD-IMPROV-S01A-F01-S-FM01.avi; A\n\xff\n"),
                 "Evalution.txt:2: not UTF-8 text", id="encoding"),
    pytest.param(lambda r: os.remove(r / "Evalution.txt"),
                 "expected one label file Evalution.txt or Evaluation.txt, found none", id="no-label-file"),
    pytest.param(lambda r: shutil.copy(r / "Evalution.txt", r / "Evaluation.txt"),
                 "found ['Evalution.txt', 'Evaluation.txt']", id="two-label-files"),
    pytest.param(lambda r: shutil.move(r / "Audio", r / "audio"),
                 "Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav: none of the 48 audio files exists", id="no-audio"),
])
def test_msp_improv_layout_errors_name_file_and_line(msp, change, message):
    root, _ = msp
    change(root)
    with pytest.raises(LayoutError) as caught:
        build_msp_improv(str(root), str(root / "transcripts.tsv"), CorpusReport())
    assert message in str(caught.value)


# ---------------------------------------------------------------- videos with subtitles

_SRT = ("1\n00:00:00,100 --> 00:00:00,900\n<i>Where were you</i>\nlast night?\n\n"
        "2\n00:00:01,000 --> 00:00:01,800 X1:100 X2:200 Y1:10 Y2:50\n{\\an8}<font color=\"#ffff00\">Out.</font>\n\n"
        "3\n00:00:01,850 --> 00:00:01,950\n<i> </i>\n\n")


def test_srt_cues(tmp_path):
    path = tmp_path / "a.srt"
    path.write_bytes(b"\xef\xbb\xbf" + _SRT.replace("\n", "\r\n").encode())  # with a BOM and CRLF, as often found
    cues = read_srt(str(path))
    assert [(c.line, c.start, c.end, c.text) for c in cues] == [
        (2, 0.1, 0.9, "Where were you last night?"), (7, 1.0, 1.8, "Out."), (11, 1.85, 1.95, "")]
    path.write_text("00:00:02,000 --> 00:00:03,000\nNo number is fine.\n")
    assert [c.text for c in read_srt(str(path))] == ["No number is fine."]


@pytest.mark.parametrize("text,message", [
    ("1\n00:00:00,100 -> 00:00:00,900\nhi\n", "a.srt:2: expected a cue timing like"),
    ("1\n00:00:00,1 --> 00:00:00,900\nhi\n", "a.srt:2: expected a cue timing like"),
    ("1\n00:00:00,100 --> 00:00:00,900\nhi\n2\n00:00:01,000 --> 00:00:02,000\nho\n",
     "a.srt:5: a timing line inside a cue's text"),
    ("1\n", "a.srt:2: expected a cue timing like '00:01:02,500 --> 00:01:04,000', found the end of the file"),
], ids=["arrow", "millis", "no-blank-line", "truncated"])
def test_srt_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "a.srt"
    path.write_text(text)
    with pytest.raises(LayoutError) as caught:
        read_srt(str(path))
    assert message in str(caught.value)
    path.write_bytes(b"1\n00:00:00,100 --> 00:00:00,900\ncaf\xe9\n")
    with pytest.raises(LayoutError, match=r"a.srt:3: not UTF-8 text .* iconv"):
        read_srt(str(path))


def _face_frames(seconds: float):
    face = astronaut_gray()[20:260, 110:350]
    return [np.roll(face, i % 3, axis=1) for i in range(int(seconds * 10))]


def write_videos(root, sound: np.ndarray, subtitles: str = _SRT) -> None:
    """Three videos of a face with ``subtitles`` (one video without an audio track, one with a space in
    its name; film2's cue 00:00:01,850 is reversed), a video without subtitles and subtitles without a video."""
    root.mkdir()
    frames = _face_frames(len(sound) / 16000)
    for name, audio in (("film one.mp4", sound), ("film2.mkv", sound), ("silent.avi", None), ("trailer.mp4", sound)):
        write_video(str(root / name), frames, audio=audio)
    for name in ("film one", "silent", "orphan"):
        (root / f"{name}.srt").write_text(subtitles)
    (root / "film2.srt").write_text(subtitles.replace("00:00:01,850 --> 00:00:01,950\n<i> </i>",
                                                      "00:00:01,950 --> 00:00:01,850\nToo late."))


def test_video_corpus(tmp_path, capsys):
    pytest.importorskip("av", reason="decoding videos needs the 'extract' extra (av)")
    pytest.importorskip("skimage", reason="the face frames come from scikit-image's astronaut")
    root, out = tmp_path / "videos", tmp_path / "out"
    write_videos(root, np.random.default_rng(0).normal(0, 0.1, 32000))
    build_manifest(["videos", "--root", str(root), "--valid-fraction", "0.3", "--out", str(out)])
    train, valid = _manifest(out / "train.tsv"), _manifest(out / "valid.tsv")
    assert sorted(train) == ["film2_00001", "film2_00002", "silent_00001", "silent_00002"]
    assert sorted(valid) == ["film_one_00001", "film_one_00002"]  # whole videos are held out
    cue = valid["film_one_00002"]
    assert (cue.text, cue.start, cue.end, cue.speaker, cue.session) == ("Out.", 1.0, 1.8, "film_one", "film_one")
    assert cue.video == str(root / "film one.mp4") and cue.audio == str(out / "audio" / "film_one.wav")
    assert train["silent_00001"].audio == ""
    report = {(r["id"] or os.path.basename(r["source"]), r["action"]): r["problem"]
              for r in read_tsv(out / "manifest_report.tsv")}
    assert report == {
        ("orphan.srt", "ignored"): "no video orphan.mp4|.mkv|.avi",
        ("trailer.mp4", "excluded"): "no subtitles trailer.srt",
        ("film_one_00003", "excluded"): "empty cue",
        ("silent_00003", "excluded"): "empty cue",
        ("film2_00003", "excluded"): "cue ends (1.850 s) before it starts (1.950 s)",
        ("silent_00001", "kept without audio"): f"no audio stream in {root / 'silent.avi'}",
        ("silent_00002", "kept without audio"): f"no audio stream in {root / 'silent.avi'}",
    }
    assert "train.tsv: 4 utterances, 2 speakers" in capsys.readouterr().out


def test_audio_track_is_the_videos_sound(tmp_path):
    pytest.importorskip("av", reason="decoding videos needs the 'extract' extra (av)")
    seconds = np.arange(32000) / 16000
    sound = 0.3 * np.sin(2 * np.pi * (200 + 400 * seconds) * seconds)  # a 200 -> 1800 Hz sweep
    write_video(str(tmp_path / "v.mp4"), [np.zeros((48, 64), np.uint8)] * 20, audio=sound)
    wav = extract_audio_track(str(tmp_path / "v.mp4"), str(tmp_path / "v.wav"))
    decoded, rate = soundfile.read(wav)
    assert rate == 16000 and abs(len(decoded) - len(sound)) <= 2048  # AAC adds a frame or two of padding
    best = max(np.corrcoef(decoded[lag: lag + 16000], sound[4000: 20000])[0, 1] for lag in range(4000, 6049))
    assert best > 0.9  # the same sound (lossy, delayed by the encoder's priming samples)
    assert extract_audio_track("/nonexistent.mp4", wav) == wav  # written once, then reused


# ---------------------------------------------------------------- the recipes end to end (slow)

def _run_recipe(recipe: str, cwd, **env) -> str:
    """``bash examples/RECIPE/run.sh`` with this interpreter's scripts first on PATH; its output."""
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    proc = run_cli(["bash", os.path.join(REPO_ROOT, "examples", recipe, "run.sh")], cwd=str(cwd), timeout=1200,
                   env={"PATH": path, "DEVICE": "cpu", "WORKERS": "1", **{k: str(v) for k, v in env.items()}})
    return proc.stdout


@pytest.fixture(scope="module")
def models(tiny_wav2vec2, tiny_fer, minilm_dir):  # noqa: F811
    return {"BERT": minilm_dir, "WAV2VEC2": tiny_wav2vec2["fairseq"], "FER_MODEL": tiny_fer}


@pytest.fixture(scope="module")
def speech_wav(pocketsphinx):  # noqa: F811
    return os.path.join(pocketsphinx, "librivox", "sense_and_sensibility_01_austen_64kb-0870.wav")


@pytest.fixture(scope="module")
def pretrained(models, speech_wav, tmp_path_factory):
    """examples/pretrain_videos/run.sh on three talking-face videos with speech and subtitles."""
    pytest.importorskip("av", reason="the recipes need the 'extract' extra")
    speech, rate = soundfile.read(speech_wav, dtype="float32")
    assert rate == 16000
    root = tmp_path_factory.mktemp("pretrain")
    # 8 cues of 0.4 s per video
    stamp = lambda seconds: f"00:00:{int(seconds):02d},{round(seconds % 1 * 1000):03d}"  # noqa: E731
    cues = "".join(f"{k + 1}\n{stamp(0.4 * k)} --> {stamp(0.4 * k + 0.4)}\n{TEXTS[k % len(TEXTS)]}\n\n"
                   for k in range(8))
    write_videos(root / "videos", speech[:51200], cues)
    out = root / "out"
    log = _run_recipe("pretrain_videos", root, VIDEOS=root / "videos", OUT=out, VALID_FRACTION=0.3, UPDATES=3,
                      WARMUP=1, MAX_TOKENS=4000, **models)
    return {"out": out, "log": log, "checkpoint": out / "pretrain" / "checkpoint_best.pt"}


def _dataset(out):
    with open(out / "data" / "dataset.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.slow
def test_pretrain_videos_recipe(pretrained):
    out = pretrained["out"]
    assert pretrained["checkpoint"].is_file()
    dataset = _dataset(out)
    assert {split: dataset["splits"][split]["utterances"] for split in ("train", "valid")} == {"train": 16, "valid": 8}
    assert all(dataset["splits"][split]["frames"][stream] > 0 for split in ("train", "valid")
               for stream in ("acoustic", "visual"))
    assert "num_updates 3" in pretrained["log"] and "wwmlm_loss" in pretrained["log"]


def _check_emotion_recipe(out, corpus, settings, kept, dropped):
    """The manifest, the data dir (``dropped`` utterances gone for their empty text) and the table."""
    assert len(_manifest(out / "manifest" / "manifest.tsv")) == len(kept)
    meta = read_tsv(out / "data" / "all.meta.tsv")
    assert {r["id"]: r["label"] for r in meta} == {uid: v[0] for uid, v in kept.items() if uid not in dropped}
    report = read_tsv(out / "data" / "report.tsv")
    assert {(r["id"], r["reason"], r["action"]) for r in report if r["stage"] == "text"} == {
        (uid, "empty text", "dropped") for uid in dropped}
    frames = _dataset(out)["splits"]["all"]["frames"]
    assert frames["acoustic"] > 0 and frames["visual"] > 0
    table = (out / "cv" / "results.md").read_text()
    for setting in settings:
        assert f"| {setting} |" in table
        for fold in (1, 2):
            run_dir = out / "cv" / corpus / setting / "frac1" / "seed1" / f"fold{fold}"
            result = json.loads((run_dir / "result.json").read_text())
            assert 0 <= result["test"]["uar"] <= 1


_TINY_CV = dict(FOLDS="1,2", SEEDS=1, ARCH="memobert_tiny", MAX_EPOCH=1, BATCH_SIZE=8, LR=1e-3)


@pytest.mark.slow
def test_iemocap_recipe(models, pretrained, speech_wav, tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    talking = CopiedMedia(lambda wav, video: write_two_face_video(video, wav, speech_wav, speaker_left=True),
                          str(tmp_path))
    expected = write_iemocap(root, talking)
    out = tmp_path / "out"
    log = _run_recipe("iemocap", tmp_path, IEMOCAP=root, OUT=out, PRETRAINED=pretrained["checkpoint"],
                      SETTINGS="direct,pretrain_prompt", **_TINY_CV, **models)
    assert "happy 20 (exc 10, hap 10)" in log and "| pretrain_prompt |" in log
    _check_emotion_recipe(out, "iemocap", ("direct", "pretrain_prompt"), expected["kept"], {_NO_TRANSCRIPT})


@pytest.mark.slow
def test_msp_improv_recipe(models, speech_wav, tmp_path):
    root = tmp_path / "MSP-IMPROV"
    root.mkdir()
    def face_and_speech(wav, video):  # one utterance a file: 0.8 s keeps the extraction short
        write_video(video, _face_frames(0.8))
        soundfile.write(wav, soundfile.read(speech_wav)[0][:12800], 16000)

    expected = write_msp_improv(root, CopiedMedia(face_and_speech, str(tmp_path)))
    out = tmp_path / "out"
    log = _run_recipe("msp_improv", tmp_path, MSP_IMPROV=root, TRANSCRIPTS=root / "transcripts.tsv", OUT=out,
                      **_TINY_CV, **models)
    assert "label O (other) 6, label X (no agreement) 6, recording type R 6" in log
    _check_emotion_recipe(out, "msp_improv", ("direct",), expected["kept"], {_MSP_UNTRANSCRIBED, _MSP_EMPTY})


@pytest.mark.slow
def test_meld_recipe(models, speech_wav, tmp_path):
    """A tiny MELD.Raw through the recipe: the official split kept to the table, weighted F1 reported."""
    from test_corpus_readers import _MELD_CORRUPT, _MELD_MISSING, Clips, write_meld

    root = tmp_path / "MELD.Raw"
    talking = Clips(str(tmp_path), _face_frames(0.8), soundfile.read(speech_wav)[0][:12800])
    expected = write_meld(root, talking, test_encoding="cp1252")
    out = tmp_path / "out"
    log = _run_recipe("meld", tmp_path, MELD=root, OUT=out, **{**_TINY_CV, "FOLDS": "all"}, SETTINGS="direct",
                      **models)
    assert "subsets train 13, valid 6, test 7" in log
    report = read_tsv(out / "manifest" / "manifest_report.tsv")
    assert {r["id"] for r in report if r["action"] == "excluded"} == {_MELD_MISSING, _MELD_CORRUPT}
    meta = read_tsv(out / "data" / "all.meta.tsv")
    assert {r["id"]: (r["label"], r["subset"]) for r in meta} == {
        uid: (e["label"], e["subset"]) for uid, e in expected.items()}
    frames = _dataset(out)["splits"]["all"]["frames"]
    assert frames["acoustic"] > 0 and frames["visual"] > 0
    run_dir = out / "cv" / "meld" / "direct" / "frac1" / "seed1" / "fold1"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["cv_scheme"] == "fixed" and result["test"]["classes"] == sorted({e["label"] for e in expected.values()})
    assert sum(map(sum, result["test"]["confusion"])) == 7  # the 7 test utterances, nothing else
    assert "--best-checkpoint-metric weighted_f1" in (run_dir / "train.log").read_text()
    table = (out / "cv" / "results.md").read_text()
    assert "| meld weighted-F1 |" in table and "meld: the corpus's own train/valid/test split" in table
