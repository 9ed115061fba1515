"""The fast extraction paths give the numbers of the straightforward ones (benchmarks/prepare.py times them)."""

import os

import numpy as np
import pytest
import torch

pytest.importorskip("cv2", reason="the visual extractor needs the 'extract' extra (opencv-python-headless)")
pytest.importorskip("av", reason="the visual extractor needs the 'extract' extra (av)")
pytest.importorskip("skimage", reason="the astronaut photo comes from scikit-image (test extra)")

from memobert_plugin.prepare.acoustic import load_wav2vec2  # noqa: E402
from memobert_plugin.prepare.audio import read_audio  # noqa: E402
from memobert_plugin.prepare.faces import HaarFaceDetector, detect_faces  # noqa: E402
from memobert_plugin.prepare.fer_model import DenseNetFER  # noqa: E402
from test_prepare_helpers import astronaut_gray, pocketsphinx, speech_utterances, tiny_wav2vec2  # noqa: E402,F401

# features are stored as float16: agreeing to float16's precision is agreeing
_FLOAT16 = dict(rtol=2 ** -10, atol=1e-4)


@pytest.mark.parametrize("layer", [None, 1])
def test_batched_wav2vec2_gives_each_wave_its_own_features(pocketsphinx, tiny_wav2vec2, layer):  # noqa: F811
    waves = [read_audio(u["wav"], max_seconds=s) for u, s in zip(speech_utterances(pocketsphinx), (3.0, 1.2, 2.1))]
    fairseq = load_wav2vec2(tiny_wav2vec2["fairseq"], layer)
    huggingface = load_wav2vec2(tiny_wav2vec2["huggingface"], layer)
    batched = fairseq.batch(waves)
    with torch.inference_mode():  # the reference: each model's own forward, one wave at a time
        for wave, features in zip(waves, batched):
            source = torch.from_numpy(wave)[None]
            ref = fairseq.model.extract_features(source, padding_mask=None, mask=False,
                                                 layer=None if layer is None else layer - 1)["x"][0].numpy()
            assert features.shape == ref.shape and np.allclose(features, ref, **_FLOAT16)
    assert len({len(f) for f in batched}) == 3  # three lengths: the batch was padded
    for features, hf_features in zip(batched, huggingface.batch(waves)):
        assert np.allclose(features, hf_features, **_FLOAT16)


def test_dense_block_inference_equals_the_training_forward():
    torch.manual_seed(0)
    network = DenseNetFER(depth=16).eval()
    for module in network.modules():  # trained-like statistics, so the batch norms matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    faces = torch.rand(5, 1, 48, 48) * 2 - 1
    with torch.inference_mode():
        features, logits = network(faces)
        fast_features, fast_logits = network.infer(faces)
    assert torch.allclose(features, fast_features, atol=1e-5) and torch.allclose(logits, fast_logits, atol=1e-5)


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
    # still part: keyframes 0, 5, 10 only; moving part: every frame between keyframes that disagree
    assert fast.calls == 3 + 8, fast.calls
    for ref, got in zip(reference, reused):
        assert len(ref) == len(got) == 1
        assert all(abs(a - b) <= 3 for a, b in zip(ref[0].box, got[0].box)), (ref[0].box, got[0].box)
    assert [d.frame for f in reused for d in f] == list(range(19))
