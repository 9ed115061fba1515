"""Audio reading and wav2vec 2.0 features on real speech (pocketsphinx-testdata)."""

import os
import pickle

import numpy as np
import pytest
import soundfile
import torch

from memobert_plugin.prepare.stages.acoustic import AcousticStage, average_pool
from memobert_plugin.prepare.encoders.speech import load_speech_encoder
from memobert_plugin.prepare.media.audio import read_audio
from memobert_plugin.prepare.manifest import Utterance
from memobert_plugin.prepare.report import ItemError
from memobert_plugin.checkpoints.safe_loading import UnsafeCheckpointError
from prepare_material import pocketsphinx, speech_utterances, tiny_wav2vec2  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def speech(pocketsphinx):  # noqa: F811
    return speech_utterances(pocketsphinx)


def test_read_audio_mixes_resamples_cuts_and_clips(speech, tmp_path):
    wav = speech[1]["wav"]  # "he was not an ill disposed young man", 16 kHz mono
    original, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000
    # the same speech as 44.1 kHz stereo, the channels in opposite phase plus an offset
    from scipy.signal import resample_poly

    hi = resample_poly(original, 441, 160).astype(np.float32)
    stereo = tmp_path / "stereo.flac"
    soundfile.write(stereo, np.stack([hi + 0.1, hi - 0.1], axis=1), 44100)
    back = read_audio(str(stereo), max_seconds=None)
    assert abs(len(back) - len(original)) <= 1
    n = min(len(back), len(original))
    # correlation with the original: resampling twice keeps the speech, mixing cancels the offsets
    assert np.corrcoef(back[100:n - 100], original[100:n - 100])[0, 1] > 0.99
    assert abs(float(back.mean() - original.mean())) < 1e-3  # channel 0 alone would be 0.1 higher

    cut = read_audio(wav, start=0.5, end=1.5)
    assert len(cut) == 16000 and np.allclose(cut, original[8000:24000])
    assert len(read_audio(speech[0]["wav"], max_seconds=2.0)) == 32000  # a 7.1 s file clipped at 2 s
    assert len(read_audio(speech[0]["wav"])) == 7.1 * 16000  # shorter than the 10 s default clip


def test_read_audio_errors_name_the_file(speech, tmp_path):
    with pytest.raises(ItemError, match="missing file: audio .*nowhere.wav"):
        read_audio(str(tmp_path / "nowhere.wav"))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ItemError, match="unreadable audio .*garbage.wav"):
        read_audio(str(garbage))
    with pytest.raises(ItemError, match=r"start 9.0 s is past the end of .*\(2.99 s\)"):
        read_audio(speech[1]["wav"], start=9.0)
    with pytest.raises(ItemError, match="no audio path"):
        read_audio("")
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, np.float32), 16000)
    with pytest.raises(ItemError, match=r"zero-length audio .*empty.wav \(no samples\)"):
        read_audio(str(empty))


def test_average_pool_keeps_a_short_last_group():
    frames = np.arange(14, dtype=np.float32).reshape(7, 2)
    pooled = average_pool(frames, 3)
    assert pooled.tolist() == [[2, 3], [8, 9], [12, 13]]
    assert average_pool(frames, 1).tolist() == frames.tolist()


def test_fairseq_and_huggingface_checkpoints_give_the_same_features(speech, tiny_wav2vec2):  # noqa: F811
    wave = read_audio(speech[1]["wav"])  # 2.99 s -> 149 wav2vec frames of 20 ms
    outputs = {}
    for name, path in tiny_wav2vec2.items():
        for layer in (None, 1, 2):
            outputs[name, layer] = load_speech_encoder(path, layer)(wave)
    reference = outputs["fairseq", None]
    assert reference.shape == (149, 32)
    for (name, layer), features in outputs.items():
        expected = outputs["fairseq", layer]
        assert np.allclose(features, expected, atol=1e-4), (name, layer, np.abs(features - expected).max())
    assert np.allclose(outputs["fairseq", 2], reference)  # the last layer named explicitly
    assert not np.allclose(outputs["fairseq", 1], reference, atol=1e-2)


def test_fairseq_checkpoint_loading_stays_weights_only(tiny_wav2vec2, tmp_path):  # noqa: F811
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    crafted = tmp_path / "crafted.pt"
    state = torch.load(tiny_wav2vec2["fairseq"], weights_only=True)
    state["extra_state"] = Payload()
    with open(crafted, "wb") as handle:
        pickle.dump(state, handle)  # torch.load reads plain pickles too
    with pytest.raises(UnsafeCheckpointError, match="crafted.pt"):
        load_speech_encoder(str(crafted))


def test_bad_checkpoints_and_layers_are_refused(tiny_wav2vec2, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="layer 3 out of range; the model has layers 1..2"):
        load_speech_encoder(tiny_wav2vec2["fairseq"], layers=3)
    finetuned = tmp_path / "ctc.pt"
    torch.save({"cfg": {"model": {"_name": "wav2vec_ctc"}}, "model": {}}, finetuned)
    with pytest.raises(ValueError, match="'wav2vec_ctc' checkpoint; give a pretrained fairseq 'wav2vec2', 'hubert'"):
        load_speech_encoder(str(finetuned))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_speech_encoder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_speech_encoder(str(tmp_path / "nothing.pt"))


def test_acoustic_stage_pools_and_reports(speech, tiny_wav2vec2, tmp_path):  # noqa: F811
    stage = AcousticStage(tiny_wav2vec2["fairseq"])
    assert stage.streams == {"acoustic": 32}
    frames = stage.extract(Utterance(line=1, id="u", text="t", audio=speech[0]["wav"], start=1.0))
    assert frames["acoustic"].shape == (102, 32)  # 6.1 s -> 304 frames of 20 ms -> 102 of 60 ms
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(200, np.float32), 16000)
    with pytest.raises(ItemError, match="audio too short for the speech encoder \\(12 ms\\)"):
        stage.extract(Utterance(line=2, id="v", text="t", audio=str(short)))


def test_truncated_and_clipped_audio_is_read_and_reported(speech, tmp_path):
    original, _ = soundfile.read(speech[0]["wav"], dtype="float32")  # 7.1 s
    warnings = []
    assert len(read_audio(speech[0]["wav"], max_seconds=None, warn=warnings.append)) == len(original)
    assert warnings == []  # a whole file within --max-seconds: nothing to report
    read_audio(speech[0]["wav"], max_seconds=2.0, warn=warnings.append)
    assert warnings == ["clipped at --max-seconds 2 s: the audio span is 7.10 s"]

    cut_wav = tmp_path / "cut.wav"  # the data cut, the header still promising 7.1 s
    data = open(speech[0]["wav"], "rb").read()
    cut_wav.write_bytes(data[: len(data) // 2])
    warnings = []
    wave = read_audio(str(cut_wav), max_seconds=None, warn=warnings.append)
    assert np.array_equal(wave, original[: len(wave)]) and abs(len(wave) - len(original) / 2) < 100
    assert warnings == [f"truncated audio {cut_wav}: the header promises 7.10 s, the file holds 3.55 s; "
                        "features from the 3.55 s of the span that are there"]
    assert len(read_audio(str(cut_wav), end=1.0, warn=warnings.append)) == 16000 and len(warnings) == 1  # not hit
    with pytest.raises(ItemError, match=r"truncated audio .*cut.wav.* the utterance starts at 5.00 s"):
        read_audio(str(cut_wav), start=5.0)

    flac = tmp_path / "speech.flac"  # a decoder error part-way: the blocks before it are kept
    soundfile.write(str(flac), original, 16000)
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])
    warnings = []
    wave = read_audio(str(flac), max_seconds=None, warn=warnings.append)
    assert 0 < len(wave) < len(original) and np.allclose(wave, original[: len(wave)], atol=1e-4)
    assert len(warnings) == 1 and warnings[0].startswith(f"truncated audio {flac}")
