"""memobert-export-hf: the text side is a transformers BertForMaskedLM with memobert's outputs; the whole
model comes back through --memobert-init."""

import os
import re
import sys

import numpy as np
import pytest
import torch

from conftest import BIN, run_cli

sys.modules["torchaudio"] = None  # before transformers (see conftest)


@pytest.fixture(scope="module")
def exported(pretrained, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export"))
    run_cli([f"{BIN}/memobert-export-hf", pretrained, out])
    return out


def _memobert(checkpoint):
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint])
    return models[0].eval(), task


def test_text_side_is_a_bert_for_masked_lm_with_memobert_outputs(pretrained, exported):
    from transformers import BertForMaskedLM

    assert sorted(os.listdir(exported)) == ["config.json", "memobert", "model.safetensors", "vocab.txt"]
    model, task = _memobert(pretrained)
    bert, info = BertForMaskedLM.from_pretrained(exported, output_loading_info=True)
    bert.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with open(os.path.join(exported, "vocab.txt"), encoding="utf-8") as handle:
        assert handle.read().split("\n")[:-1] == list(task.vocab.symbols)
    rng = np.random.default_rng(0)
    vocab, pad = task.vocab, task.vocab.pad()
    lengths = (12, 7, 20)
    tokens = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    for row, length in enumerate(lengths):  # [CLS] words ... [MASK] ... [SEP], then padding
        body = rng.integers(len(vocab.special_ids()), len(vocab), length - 2)
        body[length // 2] = vocab.mask_index
        tokens[row, :length] = torch.tensor([vocab.bos(), *body, vocab.eos()])
    with torch.no_grad():
        out = model(tokens)
        hidden = out.layout.modality_states(out.hidden, "text")
        scores = model.lm_head(hidden)
        reference = bert(input_ids=tokens, attention_mask=tokens.ne(pad).long(), output_hidden_states=True)
    real = tokens.ne(pad)
    assert (reference.hidden_states[-1][real] - hidden[real]).abs().max().item() <= 1e-4
    assert (reference.logits[real] - scores[real]).abs().max().item() <= 1e-4


def test_whole_model_loads_back_through_memobert_init(demo_corpus, plugin_dir, pretrained, exported, tmp_path):
    from memobert_plugin.models.pretrained import load_memobert_weights, memobert_checkpoint_shape
    from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only

    whole = os.path.join(exported, "memobert")
    assert sorted(os.listdir(whole)) == ["config.json", "model.safetensors"]
    original = load_checkpoint_weights_only(pretrained)["model"]
    model, _ = _memobert(pretrained)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    report = load_memobert_weights(model, whole)
    assert report.fresh == [] and report.unused == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert memobert_checkpoint_shape(whole)["encoder_layers"] == memobert_checkpoint_shape(pretrained)["encoder_layers"]
    # fairseq-train accepts the directory
    proc = run_cli([f"{BIN}/fairseq-train", demo_corpus.emotion_data, "--user-dir", plugin_dir, "--task", "memobert_emotion",
                    "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--memobert-init", whole,
                    "--optimizer", "adam", "--lr", "1e-3", "--max-update", "1", "--batch-size", "16", "--num-workers", "0",
                    "--cpu", "--disable-validation", "--save-dir", str(tmp_path / "ckpt")])
    assert re.search(rf"initialised \d+ tensors from {re.escape(whole)}\n", proc.stdout + proc.stderr)


def test_a_foreign_directory_is_refused(tmp_path, minilm_dir):
    from memobert_plugin.models.pretrained import memobert_checkpoint_shape

    with pytest.raises(FileNotFoundError, match="needs config.json and model.safetensors"):
        memobert_checkpoint_shape(str(tmp_path))
    with pytest.raises(ValueError, match="not 'memobert-safetensors' \\(a Hugging Face BERT directory goes to --bert-init\\)"):
        memobert_checkpoint_shape(minilm_dir)
