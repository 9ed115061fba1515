"""The fast extraction paths give the numbers of the straightforward ones (benchmarks/prepare.py times them)."""

import os

import numpy as np
import pytest
import torch

pytest.importorskip("cv2", reason="the visual extractor needs the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the visual extractor needs the 'extract' extra (av)")
pytest.importorskip("skimage", reason="the astronaut photo comes from scikit-image (test extra)")

from memobert_plugin.prepare.encoders.speech import load_speech_encoder  # noqa: E402
from memobert_plugin.prepare.media.audio import read_audio  # noqa: E402
from memobert_plugin.prepare.media.faces import HaarFaceDetector, detect_faces  # noqa: E402
from prepare_material import astronaut_gray, pocketsphinx, speech_utterances, tiny_wav2vec2  # noqa: E402,F401

# features are stored as float16: agreeing to float16's precision is agreeing
_FLOAT16 = dict(rtol=2 ** -10, atol=1e-4)


@pytest.mark.parametrize("layer", [None, 1])
def test_batched_wav2vec2_gives_each_wave_its_own_features(pocketsphinx, tiny_wav2vec2, layer):  # noqa: F811
    waves = [read_audio(u["wav"], max_seconds=s) for u, s in zip(speech_utterances(pocketsphinx), (3.0, 1.2, 2.1))]
    waves.append(waves[0][: int(2.9 * 16000)])  # padded with the 3-s wave; the others are too short for it
    fairseq = load_speech_encoder(tiny_wav2vec2["fairseq"], layer)
    huggingface = load_speech_encoder(tiny_wav2vec2["huggingface"], layer)
    encode, batch_sizes = fairseq._encode, []
    fairseq._encode = lambda features, padding: batch_sizes.append(len(features)) or encode(features, padding)
    batched = fairseq.batch(waves)
    assert sorted(batch_sizes) == [1, 1, 2]  # similar lengths only share a padded batch
    with torch.inference_mode():  # the reference: each model's own forward, one wave at a time
        for wave, features in zip(waves, batched):
            source = torch.from_numpy(wave)[None]
            ref = fairseq.model.extract_features(source, padding_mask=None, mask=False,
                                                 layer=None if layer is None else layer - 1)["x"][0].numpy()
            assert features.shape == ref.shape and np.allclose(features, ref, **_FLOAT16)
    assert len({len(f) for f in batched}) == 4  # four lengths: the pair was padded
    for features, hf_features in zip(batched, huggingface.batch(waves)):
        assert np.allclose(features, hf_features, **_FLOAT16)


class _CountingDetector(HaarFaceDetector):
    calls = 0

    def boxes(self, gray):
        self.calls += 1
        return super().boxes(gray)


def test_faces_are_searched_only_where_they_may_have_moved():
    photo = astronaut_gray()
    still = [(i / 10, photo[20:260, 110:350].copy()) for i in range(11)]
    moving = [(1.1 + i / 10, photo[20:260, 110 - 6 * i: 350 - 6 * i].copy()) for i in range(1, 9)]
    every_frame, fast = _CountingDetector(), _CountingDetector()
    reference, times = detect_faces(still + moving, every_frame, detect_every=1)
    reused, reused_times = detect_faces(still + moving, fast, detect_every=5)
    assert every_frame.calls == 19 and reused_times == times
    # whole frames searched at the keyframes 0, 5, 10, 15 and the last (18) only: between keyframes the
    # still face's boxes are interpolated, and the moving face is followed by searching around its last box
    assert fast.calls == 5, fast.calls
    for ref, got in zip(reference, reused):  # the same face, up to the cascade's 10% scale steps
        assert len(ref) == len(got) == 1
        assert all(abs(a - b) <= 0.08 * ref[0].box[2] for a, b in zip(ref[0].box, got[0].box)), (ref[0].box, got[0].box)
    assert [d.frame for f in reused for d in f] == list(range(19))


def test_acoustic_stage_batches_a_shard_and_keeps_each_utterances_report(pocketsphinx, tiny_wav2vec2, tmp_path):  # noqa: F811
    import soundfile

    from memobert_plugin.prepare.stages.acoustic import AcousticStage
    from memobert_plugin.prepare.manifest import Utterance
    from memobert_plugin.prepare.report import read_problems

    wavs = [u["wav"] for u in speech_utterances(pocketsphinx)][:3]
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(200, np.float32), 16000)
    entries = [Utterance(line=2 + i, id=f"u{i}", text="t", audio=path)
               for i, path in enumerate([wavs[0], str(tmp_path / "missing.wav"), wavs[1], str(short), wavs[2]])]
    stage = AcousticStage(tiny_wav2vec2["fairseq"], max_seconds=2.0)
    stage.setup()
    problems = stage.run_shard(entries, str(tmp_path / "00000"), lambda n: None)
    by_id = {}
    for p in problems:
        by_id.setdefault(p.id, []).append(p.reason)
    assert sorted(by_id) == ["u0", "u1", "u2", "u3", "u4"]  # clipped, missing, clipped, too short, clipped
    assert "missing file" in by_id["u1"][0] and "too short" in by_id["u3"][0]
    assert all(r[0].startswith("clipped at --max-seconds 2 s") for u, r in by_id.items() if u in ("u0", "u2", "u4"))
    from memobert_plugin.data.feature_store import FeatureStore

    store = FeatureStore(str(tmp_path), "00000", "acoustic")
    for index in (0, 2, 4):  # the batched features are each utterance's own, to float16 precision
        alone = stage.extract(entries[index])["acoustic"]  # outside run_shard: one utterance at a time
        assert np.allclose(store[index].astype(np.float32), alone, rtol=2 ** -9, atol=2e-3)
    assert len(store[1]) == len(store[3]) == 0


def test_expression_network_inference_copy_gives_the_networks_outputs():
    """FerModel runs a folded, channels-last copy of the network: the same features and probabilities."""
    from memobert_plugin.prepare.fer.model import DenseNetFER, FerModel, face_tensor

    torch.manual_seed(0)
    network = DenseNetFER(depth=16).eval()
    with torch.no_grad():
        for module in network.modules():  # trained-like statistics, so that a wrong fold shows
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    features, probs = FerModel(network, batch_size=2)(faces)
    with torch.inference_mode():
        reference, logits = network(face_tensor(faces))
    np.testing.assert_allclose(features, reference.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs, torch.softmax(logits, -1).numpy(), rtol=1e-4, atol=1e-6)
    assert isinstance(network.features[1].body[3], torch.nn.BatchNorm2d)  # the caller's network is left as it was
