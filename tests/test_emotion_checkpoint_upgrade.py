"""Emotion checkpoints saved before the read-out became a registered model head still load and predict the same.

``tests/fixtures/emotion_checkpoints_v0``: a finetune and a prompt ``memobert_emotion`` checkpoint
(1 layer, hidden 16, 3 updates on the demo corpus, optimizer state dropped, ``task.data`` emptied),
saved by the code before that change (commit e2501d5), with the demo corpus's ``dict.txt``, three
utterances (``inputs.npz``: face and speech frames; their texts in ``expected.json``) and the class
probabilities that code's ``EmotionPredictor`` gave for them (``expected.json``).
"""

import json
import os

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils

from memobert_plugin.inference.predictor import EmotionPredictor, UtteranceFeatures
from memobert_plugin.models.emotion_heads import EMOTION_HEAD, EmotionClassificationHead, PromptVerbalizer
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "emotion_checkpoints_v0")


def _utterances():
    with open(os.path.join(FIXTURES, "expected.json"), encoding="utf-8") as handle:
        texts = json.load(handle)["texts"]
    frames = np.load(os.path.join(FIXTURES, "inputs.npz"))
    return [UtteranceFeatures(text=text, id=f"u{i}", frames={stream: frames[f"{stream}_{i}"] for stream in ("visual", "acoustic")
                                                     if f"{stream}_{i}" in frames})
            for i, text in enumerate(texts)]


@pytest.mark.parametrize("as_bundle", [False, True])
@pytest.mark.parametrize("head, head_type", [("finetune", EmotionClassificationHead), ("prompt", PromptVerbalizer)])
def test_old_checkpoint_predicts_as_before(head, head_type, as_bundle, tmp_path):
    with open(os.path.join(FIXTURES, "expected.json"), encoding="utf-8") as handle:
        expected = np.array(json.load(handle)[head])
    path = os.path.join(FIXTURES, f"{head}.pt")
    if as_bundle:  # memobert-bundle's model.pt holds the config and the weights only
        state = load_checkpoint_weights_only(path)
        path = str(tmp_path / "model.pt")
        torch.save({"cfg": state["cfg"], "model": state["model"]}, path)
    predictor = EmotionPredictor(path, vocab_path=os.path.join(FIXTURES, "dict.txt"))
    assert isinstance(predictor.model.emotion_heads[EMOTION_HEAD], head_type)
    np.testing.assert_allclose(predictor.predict_proba(_utterances()), expected, rtol=1e-5, atol=1e-6)


def test_old_classifier_weights_are_renamed_into_the_registered_head():
    """fairseq's own loading (fairseq-validate's) upgrades the names, strictly: nothing left out or over."""
    path = os.path.join(FIXTURES, "finetune.pt")
    old = load_checkpoint_weights_only(path)["model"]
    assert any(k.startswith("heads.emotion_classifier.") for k in old)
    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": FIXTURES})
    head = model.emotion_heads[EMOTION_HEAD].state_dict()
    assert set(head) == {"dense.weight", "dense.bias", "norm.weight", "norm.bias", "out.weight", "out.bias"}
    for name, tensor in head.items():
        assert torch.equal(tensor, old[f"heads.emotion_classifier.{name}"])
    assert not any(k.startswith("heads.") for k in model.state_dict())
