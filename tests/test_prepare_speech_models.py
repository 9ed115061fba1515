"""The pretrained models pip packages ship, on real and synthetic speech: silero-vad's voice
activity (trimming, the energy fallback) and openSMILE's eGeMAPS acoustic features."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from memobert_plugin.data.feature_store import FeatureStore
from memobert_plugin.prepare.media import voice_activity
from memobert_plugin.prepare.media.audio import SAMPLE_RATE, read_audio
from memobert_plugin.prepare.media.voice_activity import load_voice_activity, resolve_vad
from prepare_material import pocketsphinx, prepare_here, read_tsv, speech_utterances, write_manifest  # noqa: F401

VOICES = {"espeak-male": "en-us", "espeak-female": "en-us+f3"}
SENTENCE = "I can't believe you did that again, it makes me so angry."


@pytest.fixture(scope="module")
def espeak(tmp_path_factory):
    """The sentence spoken by espeak-ng's male and female American voices (22.05 kHz wavs)."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("espeak")
    paths = {}
    for name, voice in VOICES.items():
        paths[name] = str(root / f"{name}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", paths[name], SENTENCE], check=True)
    return paths


def _padded(wave: np.ndarray, seconds: float = 1.0) -> np.ndarray:
    """The speech between two stretches of faint noise (a room between turns)."""
    noise = np.random.default_rng(0).normal(0, 1e-3, int(seconds * SAMPLE_RATE)).astype(np.float32)
    return np.concatenate([noise, wave, noise])


@pytest.mark.parametrize("method", ["silero", "energy"])
def test_voice_activity_trims_the_silence_around_real_speech(pocketsphinx, espeak, method):  # noqa: F811
    if method == "silero":
        pytest.importorskip("silero_vad", reason="silero-vad is not installed (pip install silero-vad)")
    detector = load_voice_activity(method)
    recordings = [u["wav"] for u in speech_utterances(pocketsphinx)[:3]] + list(espeak.values())
    for path in recordings:
        speech = read_audio(path, max_seconds=None)
        trimmed = detector.trim(_padded(speech))
        # the 2 s of padding go; what the recording itself has of leading/trailing pause may go too
        assert len(speech) - 0.8 * SAMPLE_RATE <= len(trimmed) <= len(speech) + 0.1 * SAMPLE_RATE, path
    silence = _padded(np.zeros(0, np.float32))
    if method == "silero":  # the network hears no voice in faint noise; the energy threshold cannot tell
        assert detector.segments(silence) == [] and len(detector.trim(silence)) == len(silence)


def test_auto_takes_silero_when_installed_and_energy_otherwise(monkeypatch):
    pytest.importorskip("silero_vad", reason="silero-vad is not installed (pip install silero-vad)")
    assert resolve_vad("auto") == "silero"
    monkeypatch.setattr(voice_activity.importlib.util, "find_spec", lambda name: None)
    assert resolve_vad("auto") == "energy" and resolve_vad("silero") == "silero"
    with pytest.raises(ValueError, match="choose from"):
        resolve_vad("webrtc")


def _egemaps_run(manifest, out, minilm_dir, *extra):
    error = prepare_here("all", "--manifest", manifest, "--out", out, "--vocab", f"{minilm_dir}/vocab.txt",
                         "--acoustic-features", "egemaps", *extra)
    assert not error, error
    store = FeatureStore(str(out), "train", "acoustic")
    ids = [r["id"] for r in read_tsv(out / "train.meta.tsv")]
    dataset = json.loads((out / "dataset.json").read_text())
    # stored standardised (docs/prepare.md): the recorded statistics give the descriptors back
    stats = dataset["splits"]["train"]["extractors"]["acoustic"]["standardization"]["streams"]["acoustic"]
    frames = {uid: store[i].astype(np.float32) * stats["std"] + stats["mean"] for i, uid in enumerate(ids)}
    return frames, dataset


def test_egemaps_features_of_real_and_synthetic_speech(pocketsphinx, espeak, minilm_dir, tmp_path):  # noqa: F811
    pytest.importorskip("opensmile", reason="opensmile is not installed (pip install opensmile)")
    speech = speech_utterances(pocketsphinx)[:2]
    padded = tmp_path / "padded.wav"
    soundfile.write(str(padded), _padded(read_audio(speech[0]["wav"], max_seconds=None)), SAMPLE_RATE)
    rows = [{"id": u["id"], "text": u["text"], "audio": u["wav"]} for u in speech]
    rows += [{"id": name, "text": SENTENCE, "audio": path} for name, path in espeak.items()]
    rows.append({"id": "padded", "text": speech[0]["text"], "audio": str(padded)})
    manifest = write_manifest(str(tmp_path / "m.tsv"), rows, ["id", "text", "audio"])

    frames, dataset = _egemaps_run(manifest, tmp_path / "plain", minilm_dir)
    extractor = dataset["splits"]["train"]["extractors"]["acoustic"]
    assert dataset["dims"]["acoustic"] == 25 and extractor["feature_set"] == "eGeMAPSv02" and extractor["pool"] == 6
    for row in rows:  # 60 ms frames: openSMILE's 10 ms descriptors, pooled by 6
        seconds = soundfile.info(row["audio"]).duration
        assert abs(len(frames[row["id"]]) - seconds / 0.06) <= 2, row["id"]
        assert np.isfinite(frames[row["id"]]).all()
    pitch = extractor["features"].index("F0semitoneFrom27.5Hz_sma3nz")
    mean_pitch = {n: frames[n][:, pitch][frames[n][:, pitch] > 1].mean() for n in VOICES}  # unvoiced: 0
    assert mean_pitch["espeak-female"] > mean_pitch["espeak-male"] + 3  # semitones: the female voice is higher

    trimmed, dataset = _egemaps_run(manifest, tmp_path / "trimmed", minilm_dir, "--trim-silence")
    assert dataset["splits"]["train"]["extractors"]["acoustic"]["trim_silence"] == resolve_vad("auto")
    assert len(trimmed["padded"]) <= len(frames[speech[0]["id"]]) < len(frames["padded"]) - 25  # the 2 s are gone
