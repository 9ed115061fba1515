"""Every speech encoder family memobert reads, as small random models written here, against each
library's own forward pass on real speech (pocketsphinx-testdata); and the loader's refusals."""

import json
import time

import numpy as np
import pytest
import torch

from memobert_plugin.prepare.media.audio import read_audio
from memobert_plugin.prepare.encoders.speech import load_speech_encoder, parse_layers, speech_model_name
from prepare_material import pocketsphinx, speech_utterances, tiny_speech_encoder, tiny_speech_reference  # noqa: F401

FAMILIES = ["wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper", "fairseq-hubert", "fairseq-data2vec_audio"]


@pytest.fixture(scope="module")
def wave(pocketsphinx):  # noqa: F811
    return read_audio(speech_utterances(pocketsphinx)[1]["wav"], max_seconds=2.0)  # real speech, 2 s


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gives_the_librarys_hidden_states(family, wave, tmp_path):
    path, model = tiny_speech_encoder(family, str(tmp_path))
    layers = 3  # every tiny model has 3 blocks
    for read in ([1], [2], [3], [1, 3]):
        encoder = load_speech_encoder(path, read)
        reference = tiny_speech_reference(family, model, wave, encoder.normalize)
        assert len(reference) == layers + 1
        expected = np.mean([reference[k] for k in read], axis=0)
        features = encoder(wave)
        assert features.shape == expected.shape and features.shape[1] == encoder.dim, (family, read)
        assert np.allclose(features, expected, atol=1e-4), (family, read, np.abs(features - expected).max())
    assert not np.allclose(reference[1], reference[3], atol=1e-2)  # the layers do differ
    assert speech_model_name(path) == family.split("-", 1)[-1].replace("-", "_") if family.startswith("fairseq") \
        else family.replace("-", "_")


def test_layer_option_forms():
    assert parse_layers("9") == [9] and parse_layers("6-9") == [6, 7, 8, 9] and parse_layers("3,9,6") == [3, 6, 9]
    assert parse_layers(None) is None
    with pytest.raises(ValueError, match="expected a layer"):
        parse_layers("last")


def _config(path):
    return json.loads((path / "config.json").read_text())


def _write_config(path, config):
    (path / "config.json").write_text(json.dumps(config))


def test_transformers_directories_are_refused_unless_a_known_bounded_model(tmp_path):
    path, _ = tiny_speech_encoder("hubert", str(tmp_path))
    directory = tmp_path / "hubert"
    config = _config(directory)
    _write_config(directory, {**config, "model_type": "bert"})
    with pytest.raises(ValueError, match="model_type 'bert' is not a speech model memobert reads"):
        load_speech_encoder(path)
    _write_config(directory, {**config, "auto_map": {"AutoModel": "modeling_evil.Evil"}})
    with pytest.raises(ValueError, match="custom model code"):
        load_speech_encoder(path)
    started = time.perf_counter()
    _write_config(directory, {**config, "intermediate_size": 10 ** 9})  # 1e9-wide layers: never allocated
    with pytest.raises(ValueError, match=r"config.json: intermediate_size = 1000000000 is out of bounds"):
        load_speech_encoder(path)
    _write_config(directory, {**config, "conv_dim": [32] * 100000})
    with pytest.raises(ValueError, match=r"config.json: conv_dim lists 100000 sizes"):
        load_speech_encoder(path)
    assert time.perf_counter() - started < 5
    _write_config(directory, {**config, "num_hidden_layers": 4})  # weights of a 4th block are not in the file
    with pytest.raises(ValueError, match="lacks .* weights of a HubertModel"):
        load_speech_encoder(path)


def test_fairseq_sizes_are_bounded(tmp_path):
    path, _ = tiny_speech_encoder("fairseq-hubert", str(tmp_path))
    state = torch.load(path, weights_only=True)
    state["cfg"]["model"]["encoder_ffn_embed_dim"] = 10 ** 9
    torch.save(state, path)
    with pytest.raises(ValueError, match="hubert.pt: encoder_ffn_embed_dim = 1000000000 is out of bounds"):
        load_speech_encoder(path)


def test_a_pickled_weights_file_is_read_weights_only(wave, tmp_path):
    import os
    import pickle

    from safetensors.torch import load_file

    from memobert_plugin.checkpoints.safe_loading import UnsafeCheckpointError

    path, _ = tiny_speech_encoder("hubert", str(tmp_path))
    expected = load_speech_encoder(path)(wave)
    weights = load_file(os.path.join(path, "model.safetensors"))
    os.remove(os.path.join(path, "model.safetensors"))
    torch.save(weights, os.path.join(path, "pytorch_model.bin"))  # as older transformers saved models
    assert np.array_equal(load_speech_encoder(path)(wave), expected)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/ran",))

    with open(os.path.join(path, "pytorch_model.bin"), "wb") as handle:
        pickle.dump({**weights, "payload": Payload()}, handle)
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin: refused"):
        load_speech_encoder(path)
    assert not (tmp_path / "ran").exists()


def test_whisper_reads_within_its_window(wave, tmp_path):
    from memobert_plugin.prepare.stages.acoustic import AcousticStage

    path, _ = tiny_speech_encoder("whisper", str(tmp_path))
    with pytest.raises(ValueError, match="reads at most 30 s; give --max-seconds 30 or less"):
        AcousticStage(path, max_seconds=40).setup()
    stage = AcousticStage(path, max_seconds=30, pool="utterance")
    assert stage.streams == {"acoustic": 32} and stage.config()["extractor"] == "whisper"
    encoder = load_speech_encoder(path)
    from memobert_plugin.prepare.report import ItemError

    with pytest.raises(ItemError, match="longer than Whisper's 30-s window"):
        encoder(np.tile(wave, 16))  # 32 s
