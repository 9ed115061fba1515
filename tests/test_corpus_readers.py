"""The MELD, CREMA-D and RAVDESS manifest builders on small trees laid out like the official releases:
what they keep, what they report, and the file and line of what they refuse."""

import os
import shutil
from collections import Counter

import numpy as np
import pytest

from memobert_plugin.prepare.corpora.cli import main as build_manifest
from memobert_plugin.prepare.corpora.common import CorpusReport, LayoutError
from memobert_plugin.prepare.corpora.crema_d import build_crema_d
from memobert_plugin.prepare.corpora.meld import build_meld, clean_text
from memobert_plugin.prepare.corpora.ravdess import build_ravdess
from memobert_plugin.prepare.manifest import Utterance, read_manifest
from prepare_material import read_tsv, write_video


def _manifest(path):
    items = list(read_manifest(str(path)))
    assert all(isinstance(u, Utterance) for u in items), [u for u in items if not isinstance(u, Utterance)]
    return {u.id: u for u in items}


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb"):
        pass


class Clips:
    """One mp4 of ``frames`` (grey) with ``sound`` (16 kHz), made at the first call, copied wherever asked."""

    def __init__(self, cache, frames, sound):
        self.made, self.frames, self.sound = os.path.join(cache, "clip.mp4"), frames, sound

    def __call__(self, path):
        if not os.path.isfile(self.made):
            write_video(self.made, self.frames, audio=self.sound)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(self.made, path)


@pytest.fixture
def clips(tmp_path):
    """0.3 s of grey frames and noise."""
    pytest.importorskip("av", reason="MELD's clips are decoded with the 'extract' extra (av)")
    return Clips(str(tmp_path), [np.full((48, 64), 128, np.uint8)] * 3, np.random.default_rng(0).normal(0, 0.1, 4800))


# ---------------------------------------------------------------- MELD.Raw in miniature

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
_EMOTION_SENTIMENT = [("neutral", "neutral"), ("joy", "positive"), ("surprise", "positive"), ("anger", "negative"),
                      ("sadness", "negative"), ("disgust", "negative"), ("fear", "negative")]
# (subset, file, clip folder, dialogues x turns)
_MELD_SUBSETS = [("train", "train_sent_emo.csv", "train_splits", 2), ("valid", "dev_sent_emo.csv",
                 "dev_splits_complete", 1), ("test", "test_sent_emo.csv", "output_repeated_splits_test", 1)]
_MELD_MISSING, _MELD_CORRUPT = "train_dia1_utt2", "valid_dia0_utt4"
# the CSVs' encoding quirks: Windows-1252 punctuation read as Latin-1, UTF-8 read as Latin-1, smart quotes
_MELD_TEXTS = [("Oh my God, he\x92s lost it.", "Oh my God, he's lost it."),
               ("He\u00e2\u0080\u0099s \u201cfine\u201d\x85 really", "He's \"fine\"... really"),
               ("Hi,  Joey!", "Hi, Joey!"),
               ("Wait \u2014 what?", "Wait - what?")]


def _meld_line(number, text, speaker, emotion, sentiment, dialogue, turn):
    quoted = '"' + text.replace('"', '""') + '"'
    return f"{number},{quoted},{speaker},{emotion},{sentiment},{dialogue},{turn},3,19,\"00:14:38,127\",\"00:14:40,630\""


def _cp1252(text: str) -> bytes:
    """A Windows-1252 file of ``text``, its C1 characters written as the bytes they stand for (not UTF-8)."""
    return b"".join(bytes([ord(ch)]) if 0x80 <= ord(ch) <= 0x9f else ch.encode("cp1252") for ch in text)


def write_meld(root, clip=_touch, test_encoding="utf-8") -> dict:
    """The three CSVs and clip folders: 7 turns a dialogue (every emotion), the quirky texts in turn;
    one train clip missing, one dev clip corrupt. Returns the expected rows by id."""
    expected = {}
    root.mkdir(parents=True, exist_ok=True)
    for subset, csv_name, folder, dialogues in _MELD_SUBSETS:
        lines = [MELD_HEADER]
        for dialogue in range(dialogues):
            for turn, (emotion, sentiment) in enumerate(_EMOTION_SENTIMENT):
                raw, clean = _MELD_TEXTS[(dialogue + turn) % len(_MELD_TEXTS)]
                speaker = ("Ross", "Rachel", "Mr. Geller")[turn % 3]
                lines.append(_meld_line(len(lines), raw, speaker, emotion, sentiment, dialogue, turn))
                uid = f"{subset}_dia{dialogue}_utt{turn}"
                clip_path = str(root / folder / f"dia{dialogue}_utt{turn}.mp4")
                if uid == _MELD_CORRUPT:
                    os.makedirs(os.path.dirname(clip_path), exist_ok=True)
                    with open(clip_path, "wb") as handle:
                        handle.write(b"\x00\x00\x00\x18ftypmp42 truncated")
                elif uid != _MELD_MISSING:
                    clip(clip_path)
                    expected[uid] = dict(text=clean, speaker=speaker, label=emotion, sentiment=sentiment,
                                         subset=subset, session=f"{subset}_dia{dialogue}", video=clip_path)
        text = "\r\n".join(lines) + "\r\n"
        (root / csv_name).write_bytes(_cp1252(text) if test_encoding == "cp1252" and subset == "test"
                                      else text.encode("utf-8"))
    return expected


def test_clean_text():
    for raw, clean in _MELD_TEXTS:
        assert clean_text(raw) == clean
    assert clean_text("caf\u00e9 \u00e0 la carte") == "caf\u00e9 \u00e0 la carte"  # real Latin-1 letters stay


def test_meld_manifest(clips, tmp_path, capsys):
    root, out = tmp_path / "MELD.Raw", tmp_path / "out"
    expected = write_meld(root, clips, test_encoding="cp1252")
    build_manifest(["meld", "--root", str(root), "--out", str(out)])
    rows = _manifest(out / "manifest.tsv")
    assert {uid: dict(text=u.text, speaker=u.speaker, label=u.label, subset=u.subset, session=u.session,
                      video=u.video) for uid, u in rows.items()} == {
        uid: {k: v for k, v in e.items() if k != "sentiment"} for uid, e in expected.items()}
    audio = rows["test_dia0_utt1"].audio
    assert audio == str(out / "audio" / "test" / "dia0_utt1.wav") and os.path.getsize(audio) > 1000
    report = {(r["id"], r["action"]): (r["source"], r["problem"]) for r in read_tsv(out / "manifest_report.tsv")}
    assert set(report) == {(_MELD_MISSING, "excluded"), (_MELD_CORRUPT, "excluded")}
    source, problem = report[(_MELD_MISSING, "excluded")]
    assert source.endswith("train_sent_emo.csv:11") and problem.startswith("missing clip ")
    source, problem = report[(_MELD_CORRUPT, "excluded")]
    assert source.endswith("dev_sent_emo.csv:6") and problem.startswith("unreadable audio in ")
    printed = capsys.readouterr().out
    assert "26 utterances, 3 speakers; anger 4, disgust 4, fear 4, joy 4, neutral 4, sadness 3, surprise 3" in printed
    assert "subsets train 13, valid 6, test 7" in printed
    assert "excluded: missing clip" in printed
    build_manifest(["meld", "--root", str(root), "--target", "sentiment", "--out", str(tmp_path / "sentiment")])
    sentiment = _manifest(tmp_path / "sentiment" / "manifest.tsv")
    assert {uid: u.label for uid, u in sentiment.items()} == {uid: e["sentiment"] for uid, e in expected.items()}


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("change,message", [
    (lambda r: _edit(r / "dev_sent_emo.csv", ",joy,positive,0,1,", ",happy,positive,0,1,"),
     "dev_sent_emo.csv:3: Emotion 'happy' is not one of MELD's anger, disgust, fear, joy, neutral, sadness, surprise"),
    (lambda r: _edit(r / "train_sent_emo.csv", ",Rachel,joy,positive,1,1,", ",Rachel,joy,positive,one,1,"),
     "train_sent_emo.csv:10: Dialogue_ID 'one' is not a number"),
    (lambda r: _edit(r / "test_sent_emo.csv", ',Ross,neutral,neutral,0,0,3,19,"00:14:38,127"', ",Ross,neutral,neutral,0,0"),
     "test_sent_emo.csv:2: 8 comma-separated fields, the header has 11"),
    (lambda r: _edit(r / "train_sent_emo.csv", ",surprise,positive,1,2,", ",surprise,positive,1,1,"),
     "train_sent_emo.csv:11: dia1_utt1 is listed twice (first on line 10)"),
    (lambda r: _edit(r / "train_sent_emo.csv", "Dialogue_ID", "Dialog_ID"),
     "train_sent_emo.csv:1: header lacks the columns ['Dialogue_ID']"),
    (lambda r: _edit(r / "dev_sent_emo.csv", ",Rachel,joy,", ",,joy,"), "dev_sent_emo.csv:3: dia0_utt1 has no Speaker"),
    (lambda r: os.remove(r / "dev_sent_emo.csv"), "dev_sent_emo.csv: label file missing"),
    (lambda r: None, "train_splits: clip folder missing"),
], ids=["emotion", "dialogue-id", "fields", "twice", "header", "speaker", "no-dev-file", "no-clips"])
def test_meld_layout_errors_name_file_and_line(tmp_path, change, message):
    root = tmp_path / "MELD.Raw"
    write_meld(root)
    for _, _, folder, _ in _MELD_SUBSETS:
        shutil.rmtree(root / folder)  # no clip needed: the label files are all checked first
    change(root)
    with pytest.raises(LayoutError) as caught:
        build_meld(str(root), str(tmp_path / "audio"), CorpusReport())
    assert message in str(caught.value)


def test_meld_without_any_clip_is_an_error(tmp_path):
    root = tmp_path / "MELD.Raw"
    write_meld(root, clip=lambda path: os.makedirs(os.path.dirname(path), exist_ok=True))
    with pytest.raises(LayoutError, match=r"train_splits: none of the 14 clips is there \(the first: dia0_utt0.mp4"):
        build_meld(str(root), str(tmp_path / "audio"), CorpusReport())


# ---------------------------------------------------------------- CREMA-D in miniature

_CREMA_ACTORS = ("1001", "1002", "1091")
_CREMA_TAKES = [("DFA", "ANG", "HI"), ("IEO", "DIS", "XX"), ("TSI", "FEA", "LO"), ("WSI", "HAP", "MD"),
                ("ITH", "NEU", "XX"), ("IWW", "SAD", "XX")]
_CREMA_NO_VIDEO = "1002_IEO_DIS_XX"


def write_crema_d(root, video_folder="VideoFlash", ext=".flv") -> list:
    names = []
    for actor in _CREMA_ACTORS:
        for sentence, emotion, level in _CREMA_TAKES:
            name = f"{actor}_{sentence}_{emotion}_{level}"
            _touch(str(root / "AudioWAV" / f"{name}.wav"))
            if name != _CREMA_NO_VIDEO and video_folder:
                _touch(str(root / video_folder / f"{name}{ext}"))
            names.append(name)
    _touch(str(root / "AudioWAV" / "._1001_DFA_ANG_HI.wav"))  # macOS metadata: ignored
    (root / "AudioWAV" / "README.txt").write_text("not a take")
    return names


def test_crema_d_manifest(tmp_path, capsys):
    root, out = tmp_path / "CREMA-D", tmp_path / "out"
    names = write_crema_d(root)
    build_manifest(["crema_d", "--root", str(root), "--out", str(out)])
    rows = _manifest(out / "manifest.tsv")
    assert sorted(rows) == sorted(names)
    take = rows["1091_ITH_NEU_XX"]
    assert (take.text, take.speaker, take.label, take.session, take.subset) == (
        "I think I have a doctor's appointment.", "1091", "neutral", "", "")
    assert take.video == str(root / "VideoFlash" / "1091_ITH_NEU_XX.flv")
    assert take.audio == str(root / "AudioWAV" / "1091_ITH_NEU_XX.wav")
    assert rows["1001_DFA_ANG_HI"].text == "Don't forget a jacket."
    report = read_tsv(out / "manifest_report.tsv")
    assert [(r["id"], r["action"]) for r in report] == [(_CREMA_NO_VIDEO, "kept without video")]
    assert report[0]["source"].endswith(f"AudioWAV/{_CREMA_NO_VIDEO}.wav")
    assert "18 utterances, 3 speakers; anger 3, disgust 3, fear 3, happy 3, neutral 3, sad 3" in capsys.readouterr().out


def test_crema_d_videos_as_mp4_or_none(tmp_path):
    root = tmp_path / "mp4"
    write_crema_d(root, "VideoMP4", ".mp4")
    rows = build_crema_d(str(root), CorpusReport())
    assert rows[0].video == str(root / "VideoMP4" / f"{rows[0].id}.mp4")
    root = tmp_path / "audio-only"
    write_crema_d(root, video_folder="")
    report = CorpusReport()
    rows = build_crema_d(str(root), report)
    assert len(rows) == 18 and not any(r.video for r in rows)
    assert [(e.id, e.problem, e.action) for e in report.entries] == [
        ("", "no VideoFlash/ (or VideoMP4/) folder", "every take kept without video")]


def test_crema_d_without_videos_where_expected(tmp_path):
    root = tmp_path / "CREMA-D"
    write_crema_d(root)
    shutil.rmtree(root / "VideoFlash")
    (root / "VideoFlash").mkdir()
    with pytest.raises(LayoutError, match=r"none of the 18 video files exists .* VideoFlash/<name>.flv"):
        build_crema_d(str(root), CorpusReport())


# ---------------------------------------------------------------- RAVDESS in miniature

_RAVDESS_AUDIO_ONLY_FROM_VIDEO = "01-03-02-01-01-02"  # actor 02 has no wav of it: its sound comes from the 01 mp4
_RAVDESS_VIDEO_ONLY = "01-04-02-02-01-01"  # actor 01: only the 02 (video-only) mp4


def write_ravdess(root, clip=_touch) -> dict:
    """Two actors: every emotion spoken (both statements), two songs; audio-only wavs and audio-video mp4s,
    one take with only its audio-video mp4 and one with only its video-only mp4. Returns ids -> (label, text)."""
    expected = {}
    for actor in ("01", "02"):
        folder = root / f"Actor_{actor}"
        for emotion in range(1, 9):
            for statement in ("01", "02"):
                intensity = "01" if emotion == 1 else "02"
                uid = f"01-{emotion:02d}-{intensity}-{statement}-01-{actor}"
                if uid == _RAVDESS_AUDIO_ONLY_FROM_VIDEO:
                    clip(str(folder / f"01-{uid}.mp4"))
                elif uid == _RAVDESS_VIDEO_ONLY:
                    _touch(str(folder / f"03-{uid}.wav"))
                    _touch(str(folder / f"02-{uid}.mp4"))
                else:
                    _touch(str(folder / f"03-{uid}.wav"))
                    _touch(str(folder / f"01-{uid}.mp4"))
                expected[uid] = (emotion, statement)
        _touch(str(folder / f"03-02-03-01-01-01-{actor}.wav"))  # songs
    _touch(str(root / "Actor_01" / "._03-01-01-01-01-01-01.wav"))
    return expected


def test_ravdess_manifest(clips, tmp_path, capsys):
    root, out = tmp_path / "RAVDESS", tmp_path / "out"
    expected = write_ravdess(root, clips)
    broken = root / "Actor_02" / "01-01-08-02-02-02-02.mp4"  # its only file, and its sound cannot be decoded
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    build_manifest(["ravdess", "--root", str(root), "--out", str(out)])
    rows = _manifest(out / "manifest.tsv")
    assert sorted(rows) == sorted([*expected, "01-08-02-02-02-02"])
    assert (rows["01-08-02-02-02-02"].audio, rows["01-08-02-02-02-02"].video) == ("", str(broken))
    take = rows["01-05-02-02-01-02"]
    assert (take.text, take.speaker, take.label) == ("Dogs are sitting by the door.", "Actor_02", "anger")
    assert take.audio == str(root / "Actor_02" / "03-01-05-02-02-01-02.wav")
    assert take.video == str(root / "Actor_02" / "01-01-05-02-02-01-02.mp4")
    from_video = rows[_RAVDESS_AUDIO_ONLY_FROM_VIDEO]
    assert from_video.audio == str(out / "audio" / f"{_RAVDESS_AUDIO_ONLY_FROM_VIDEO}.wav")
    assert os.path.getsize(from_video.audio) > 1000
    assert rows[_RAVDESS_VIDEO_ONLY].video == str(root / "Actor_01" / f"02-{_RAVDESS_VIDEO_ONLY}.mp4")
    assert rows["01-01-01-01-01-01"].text == "Kids are talking by the door."
    report = read_tsv(out / "manifest_report.tsv")
    assert {(r["id"], r["problem"].split(":")[0], r["action"]) for r in report} == {
        *((f"02-03-01-01-01-{a}", "song (vocal channel 02)", "excluded") for a in ("01", "02")),
        ("01-08-02-02-02-02", f"unreadable audio in {broken}", "kept without audio")}
    printed = capsys.readouterr().out
    assert ("33 utterances, 2 speakers; anger 4, calm 4, disgust 4, fear 4, happy 4, neutral 4, sad 4, surprise 5"
            in printed)
    assert Counter(u.speaker for u in rows.values()) == {"Actor_01": 16, "Actor_02": 17}


def test_ravdess_audio_only_release(tmp_path):
    root = tmp_path / "RAVDESS"
    write_ravdess(root)
    for path in root.rglob("0[12]-*.mp4"):
        path.unlink()
    report = CorpusReport()
    rows = build_ravdess(str(root), str(tmp_path / "audio"), report)
    assert len(rows) == 31 and not any(r.video for r in rows)  # the take that had only an mp4 is gone
    assert Counter(e.action for e in report.entries) == {"every take kept without video": 1, "excluded": 2}


def _crema_d_with(tmp_path, name):
    root = tmp_path / "CREMA-D"
    write_crema_d(root)
    _touch(str(root / "AudioWAV" / name))
    return lambda: build_crema_d(str(root), CorpusReport())


def _ravdess_with(tmp_path, name):
    root = tmp_path / "RAVDESS"
    write_ravdess(root)
    _touch(str(root / "Actor_01" / name))
    return lambda: build_ravdess(str(root), str(tmp_path / "audio"), CorpusReport())


@pytest.mark.parametrize("corpus,name,message", [
    (_crema_d_with, "1001_DFA_ANG.wav", "1001_DFA_ANG.wav: not a CREMA-D take name like 1001_DFA_ANG_XX"),
    (_crema_d_with, "1092_DFA_ANG_XX.wav", "1092_DFA_ANG_XX.wav: actor 1092 is not one of CREMA-D's (1001..1091)"),
    (_crema_d_with, "1001_XYZ_ANG_XX.wav", "1001_XYZ_ANG_XX.wav: sentence 'XYZ' is not one of CREMA-D's (IEO, TIE"),
    (_crema_d_with, "1001_DFA_CAL_XX.wav", "1001_DFA_CAL_XX.wav: emotion 'CAL' is not one of CREMA-D's (ANG, DIS"),
    (_crema_d_with, "1001_DFA_ANG_ZZ.wav", "1001_DFA_ANG_ZZ.wav: intensity 'ZZ' is not one of CREMA-D's (LO, MD, HI, XX)"),
    (_ravdess_with, "03-01-05-01-02-01.wav",
     "Actor_01/03-01-05-01-02-01.wav: not a RAVDESS file name like 03-01-05-01-02-01-12.wav"),
    (_ravdess_with, "03-01-09-01-02-01-01.wav",
     "Actor_01/03-01-09-01-02-01-01.wav: emotion 09 is not one of RAVDESS's (01, 02"),
    (_ravdess_with, "03-01-05-01-02-01-02.wav",
     "Actor_01/03-01-05-01-02-01-02.wav: a take of actor 02 in the folder of actor 01"),
    (_ravdess_with, "03-01-05-01-02-01-01.mp4", "Actor_01/03-01-05-01-02-01-01.mp4: modality 03 files are .wav, not .mp4"),
    (_ravdess_with, "04-01-05-01-02-01-01.wav",
     "Actor_01/04-01-05-01-02-01-01.wav: modality 04 is not one of RAVDESS's (01, 02, 03)"),
], ids=["crema_d-parts", "crema_d-actor", "crema_d-sentence", "crema_d-emotion", "crema_d-intensity",
        "ravdess-parts", "ravdess-emotion", "ravdess-actor", "ravdess-extension", "ravdess-modality"])
def test_a_take_name_it_cannot_read_is_named(tmp_path, corpus, name, message):
    build = corpus(tmp_path, name)
    with pytest.raises(LayoutError) as caught:
        build()
    assert message in str(caught.value)
