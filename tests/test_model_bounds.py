"""Issue 24.5: model shapes read from files are bounded before anything is allocated, and a
malformed or too deeply nested config is a named error (file and field), not a traceback."""

import copy
import json
import shutil
import sys

import pytest
import torch

from memobert_plugin.checkpoints.policy import load_memobert_checkpoint
from memobert_plugin.checkpoints.model_bounds import MAX_PARAMETERS, ModelShapeError, check_model_dims
from memobert_plugin.models.pretrained import bert_shape, memobert_checkpoint_shape
from memobert_plugin.prepare.encoders.speech import load_speech_encoder
from memobert_plugin.prepare.fer.model import load_fer_model
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from prepare_material import tiny_fer, tiny_wav2vec2  # noqa: F401  (fixtures)

HUGE = 1 << 20  # a 2^20-wide layer: terabytes


def test_bounds_accept_real_shapes_and_name_the_field_out_of_them():
    bert_base = {"num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                 "vocab_size": 30522, "max_position_embeddings": 512}
    assert check_model_dims(bert_base, "bert/config.json") == bert_base
    xls_r_2b = {"encoder_layers": 48, "encoder_embed_dim": 1920, "encoder_ffn_embed_dim": 7680,
                "conv_dim": [512] * 7}
    check_model_dims(xls_r_2b, "xlsr.pt")
    for dims, message in (
            ({"hidden_size": HUGE}, r"cfg.json: hidden_size = 1048576 is out of bounds \(allowed: 1\.\.32768\)"),
            ({"hidden_size": 0}, r"hidden_size = 0 is out of bounds"),
            ({"hidden_size": 768.0}, r"hidden_size is 768\.0, not an integer"),
            ({"hidden_size": True}, r"hidden_size is True, not an integer"),
            ({"hidden_size": "768"}, r"hidden_size is '768', not an integer"),
            ({"conv_dim": [512, -1]}, r"conv_dim\[1\] = -1 is out of bounds"),
            ({"num_hidden_layers": 256, "hidden_size": 32768, "intermediate_size": 131072},
             r"about \d+ billion parameters \(at most 4 billion allowed\)"),
    ):
        with pytest.raises(ModelShapeError, match=message):
            check_model_dims(dims, "cfg.json")
    with pytest.raises(ModelShapeError, match=r"cfg.json: the model config lacks num_hidden_layers"):
        check_model_dims({"hidden_size": 8}, "cfg.json", required=("num_hidden_layers",))
    assert MAX_PARAMETERS >= 2 * 10**9  # XLS-R 2B stays loadable


@pytest.fixture
def bert_dir(minilm_dir, tmp_path):
    return shutil.copytree(minilm_dir, tmp_path / "bert")


def _edit_json(path, **values):
    config = json.loads(path.read_text())
    for key, value in values.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("values, message", [
    ({"hidden_size": 80_000}, r"hidden_size = 80000 is out of bounds"),
    ({"intermediate_size": HUGE * 8}, r"intermediate_size = 8388608 is out of bounds"),
    ({"num_hidden_layers": None}, r"the model config lacks num_hidden_layers"),
    ({"num_attention_heads": "twelve"}, r"num_attention_heads is 'twelve', not an integer"),
])
def test_a_bert_init_config_out_of_bounds_or_malformed_is_named(bert_dir, values, message):
    _edit_json(bert_dir / "config.json", **values)
    with pytest.raises(ModelShapeError, match=rf"--bert-init {bert_dir}/config.json: {message}"):
        bert_shape(str(bert_dir))


def test_a_bert_init_config_that_is_not_json_is_named(bert_dir):
    (bert_dir / "config.json").write_text('{"hidden_size": 768,')
    with pytest.raises(ValueError, match=rf"--bert-init {bert_dir}/config.json: not valid JSON \(line 1"):
        bert_shape(str(bert_dir))
    (bert_dir / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=rf"{bert_dir}/config.json: nested too deep to be a model config"):
        bert_shape(str(bert_dir))


def test_a_wav2vec2_checkpoint_asking_for_terabytes_is_named(tiny_wav2vec2, tmp_path):  # noqa: F811
    state = load_checkpoint_weights_only(tiny_wav2vec2["fairseq"])
    state["cfg"]["model"]["encoder_embed_dim"] = HUGE
    torch.save(state, tmp_path / "cfg.pt")
    with pytest.raises(ModelShapeError, match=rf"{tmp_path}/cfg.pt: encoder_embed_dim = 1048576 is out of bounds"):
        load_speech_encoder(str(tmp_path / "cfg.pt"))
    state = load_checkpoint_weights_only(tiny_wav2vec2["fairseq_args"])
    state["args"].encoder_ffn_embed_dim = HUGE
    torch.save(state, tmp_path / "args.pt")
    with pytest.raises(ModelShapeError, match=r"args.pt: encoder_ffn_embed_dim = 1048576 is out of bounds"):
        load_speech_encoder(str(tmp_path / "args.pt"))


def test_a_huggingface_wav2vec2_config_asking_for_terabytes_is_named(tiny_wav2vec2, tmp_path):  # noqa: F811
    model = shutil.copytree(tiny_wav2vec2["huggingface"], tmp_path / "hf")
    _edit_json(model / "config.json", hidden_size=HUGE)
    with pytest.raises(ModelShapeError, match=rf"{model}/config.json: hidden_size = 1048576 is out of bounds"):
        load_speech_encoder(str(model))
    (model / "config.json").write_bytes(b"\x80\x81 not text")
    with pytest.raises(ValueError, match=rf"{model}/config.json: not UTF-8 text"):
        load_speech_encoder(str(model))


def test_a_fer_checkpoint_asking_for_a_huge_network_is_named(tiny_fer, tmp_path):  # noqa: F811
    state = load_checkpoint_weights_only(tiny_fer)
    state["arch"]["growth_rate"] = HUGE
    torch.save(state, tmp_path / "fer.pt")
    with pytest.raises(ModelShapeError, match=rf"{tmp_path}/fer.pt: growth_rate = 1048576 is out of bounds"):
        load_fer_model(str(tmp_path / "fer.pt"))


def _memobert_checkpoint(path, **model):
    cfg = {"model": {"_name": "memobert_tiny", "encoder_layers": 2, "encoder_embed_dim": 64, **model},
           "task": {"_name": "memobert_emotion"}}
    torch.save({"cfg": cfg, "model": {}}, path)
    return str(path)


def test_a_memobert_checkpoint_asking_for_a_huge_model_is_named(tmp_path):
    path = _memobert_checkpoint(tmp_path / "huge.pt", encoder_embed_dim=HUGE, encoder_ffn_embed_dim=HUGE)
    with pytest.raises(ModelShapeError, match=r"huge.pt: encoder_embed_dim = 1048576 is out of bounds"):
        load_memobert_checkpoint(path)  # what fairseq-validate --path and --restore-file go through
    with pytest.raises(ModelShapeError, match=r"--memobert-init \S+huge.pt: encoder_embed_dim = 1048576"):
        memobert_checkpoint_shape(path)
    ok = _memobert_checkpoint(tmp_path / "ok.pt", visual_feature_dim=0)  # 0: read from the data
    assert memobert_checkpoint_shape(ok)["encoder_embed_dim"] == 64


def test_a_checkpoint_config_nested_too_deep_is_named(tmp_path):
    nested = {}
    node = nested
    for _ in range(2500):
        node["a"] = {}
        node = node["a"]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # torch.save's pickler recurses too
    try:
        path = _memobert_checkpoint(tmp_path / "deep.pt", extra=copy.deepcopy(nested))
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ValueError, match=r"deep.pt: cfg.model.extra(.a)+ is nested more than \d+ levels deep"):
        load_memobert_checkpoint(path)
