"""Issue 12: no loading path runs code from a checkpoint file, pickle or data-only.

Every crafted file below goes through every loading path (in-process, one parametrized case
each; a few real command lines at the end). Each must be refused with a message that names
the file, never advises turning weights-only loading off, never shows an interpolated
environment value, and nothing it carries may run (the payloads would create PWNED).
"""

import argparse
import copy
import json
import os
import pickle

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils

from conftest import BIN, RunsCode, run_cli
from memobert_plugin.checkpoints.policy import require_memobert_model
from memobert_plugin.inference.predictor import EmotionPredictor
from memobert_plugin.inference.cli import main as predict_main
from memobert_plugin.models.memobert import MemobertConfig, MemobertModel
from memobert_plugin.models.pretrained import load_bert_weights, load_memobert_weights, memobert_checkpoint_shape
from memobert_plugin.prepare.encoders.speech import load_speech_encoder
from memobert_plugin.prepare.fer.model import load_fer_model
from memobert_plugin.checkpoints.safe_loading import literal_conv_layers, load_checkpoint_weights_only
from prepare_material import tiny_wav2vec2  # noqa: F401  (fixture)

SECRET_VARIABLE, SECRET = "MEMOBERT_TEST_SECRET", "s3cr3t-value-never-shown"
TORCH_ADVICE = ("weights_only=False", "`weights_only` set to `False`", "add_safe_globals", "safe_globals(")
TINY = dict(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=2)


# --- genuine checkpoints the crafted ones are made from ---------------------------------------
@pytest.fixture(scope="module")
def genuine(demo_corpus, plugin_dir, tmp_path_factory, tiny_wav2vec2):  # noqa: F811
    """A memobert_emotion checkpoint from fairseq-train, and the tiny wav2vec 2.0 checkpoints, as loaded dicts."""
    save_dir = str(tmp_path_factory.mktemp("genuine"))
    run_cli([f"{BIN}/fairseq-train", demo_corpus.emotion_data, "--user-dir", plugin_dir, "--task", "memobert_emotion",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam",
             "--lr", "1e-3", "--max-update", "1", "--batch-size", "16", "--num-workers", "0", "--cpu",
             "--disable-validation", "--save-dir", save_dir])
    path = os.path.join(save_dir, "checkpoint_last.pt")
    memobert = {k: v for k, v in load_checkpoint_weights_only(path).items() if k != "last_optimizer_state"}  # smaller
    return {"path": path, "memobert": memobert, "data": demo_corpus.emotion_data,
            "wav2vec2": load_checkpoint_weights_only(tiny_wav2vec2["fairseq"]),
            "wav2vec2_args": load_checkpoint_weights_only(tiny_wav2vec2["fairseq_args"])}


def _with(state, slot, **values):
    """A deep copy of a checkpoint with ``values`` set in ``slot`` ('cfg.model', 'cfg.task', 'model', 'args', ...)."""
    state = copy.deepcopy(state)
    node = state
    for key in slot.split("."):
        node = getattr(node, key) if isinstance(node, argparse.Namespace) else node[key]
    for key, value in values.items():
        if isinstance(node, argparse.Namespace):
            setattr(node, key, value)
        else:
            node[key] = value
    return state


# --- the crafted files: name -> builder(genuine, path, eval payload) --------------------------
def _save(obj, **kwargs):
    return lambda g, path, code: torch.save(obj(g, code) if callable(obj) else obj, path, **kwargs)


def _bytes(make):
    return lambda g, path, code: open(path, "wb").write(make(g))


def _pickled(g, path, code):
    with open(path, "wb") as handle:
        pickle.dump({"model": {}, "cfg": {"model": RunsCode()}}, handle)


CRAFTED = {
    # pickle payloads, in every slot of a checkpoint
    "pickle: top-level entry": _save(lambda g, c: {**g["memobert"], "payload": RunsCode()}),
    "pickle: among the weights": _save(lambda g, c: _with(g["memobert"], "model", evil=RunsCode())),
    "pickle: cfg.model value": _save(lambda g, c: _with(g["memobert"], "cfg.model", encoder_layers=RunsCode())),
    "pickle: cfg.task value": _save(lambda g, c: _with(g["memobert"], "cfg.task", data=RunsCode())),
    "pickle: args attribute": _save(lambda g, c: _with(g["wav2vec2_args"], "args", normalize=RunsCode())),
    "pickle: optimizer state": _save(lambda g, c: {**g["memobert"], "last_optimizer_state": {"x": RunsCode()}}),
    "pickle: extra_state": _save(lambda g, c: _with(g["memobert"], "extra_state", metrics=RunsCode())),
    "pickle: the whole file": _save(lambda g, c: RunsCode()),
    "pickle: legacy torch format": _save(lambda g, c: {"model": {}, "payload": RunsCode()},
                                         _use_new_zipfile_serialization=False),
    "pickle: plain pickle.dump": _pickled,
    # data only: configs naming models whose building evaluates config strings
    "data: fconv, eval'd layers": _save(lambda g, c: _with(g["memobert"], "cfg.model", _name="fconv", encoder_layers=c)),
    "data: fconv_lm, eval'd cutoff": _save(lambda g, c: _with(g["memobert"], "cfg.model", _name="fconv_lm",
                                                               adaptive_softmax_cutoff=c, decoder_layers=c)),
    "data: transformer under a memobert task": _save(lambda g, c: _with(g["memobert"], "cfg.model", _name="transformer")),
    "data: memobert model under another task": _save(lambda g, c: _with(g["memobert"], "cfg.task", _name="translation")),
    "data: wav2vec2 (cfg), eval'd conv layers": _save(lambda g, c: _with(g["wav2vec2"], "cfg.model", conv_feature_layers=c)),
    "data: wav2vec2 (args), eval'd conv layers": _save(lambda g, c: _with(g["wav2vec2_args"], "args", conv_feature_layers=c)),
    "data: wav2vec2, code among literals": _save(lambda g, c: _with(
        g["wav2vec2"], "cfg.model", conv_feature_layers=f"[(48, 10, 5)] + [({c}, 3, 2)]")),
    "data: wav2vec2, a billion conv layers": _save(lambda g, c: _with(
        g["wav2vec2"], "cfg.model", conv_feature_layers="[(48, 10, 5)] * 1000 * 1000 * 1000")),
    "data: wav2vec2 config in a memobert checkpoint": _save(lambda g, c: _with(
        g["memobert"], "cfg.model", _name="wav2vec2", conv_feature_layers=c)),
    "data: hubert, eval'd conv layers": _save(lambda g, c: _with(g["wav2vec2"], "cfg.model", _name="hubert",
                                                                  conv_feature_layers=c)),
    "data: wav2vec (1.0), eval'd aggregator": _save(lambda g, c: _with(g["wav2vec2"], "cfg.model", _name="wav2vec",
                                                                        conv_aggregator_layers=c)),
    # OmegaConf interpolation reading the environment
    "interpolation: cfg.task.data": _save(lambda g, c: _with(g["memobert"], "cfg.task",
                                                              data=f"/x/${{oc.env:{SECRET_VARIABLE}}}")),
    "interpolation: cfg.model size": _save(lambda g, c: _with(g["memobert"], "cfg.model",
                                                               encoder_layers=f"${{oc.env:{SECRET_VARIABLE}}}")),
    "interpolation: wav2vec2 conv layers": _save(lambda g, c: _with(
        g["wav2vec2"], "cfg.model", conv_feature_layers=f"${{oc.env:{SECRET_VARIABLE}}}")),
    "interpolation: args attribute": _save(lambda g, c: _with(g["wav2vec2_args"], "args",
                                                               latent_temp=f"${{oc.env:{SECRET_VARIABLE}}}")),
    # not checkpoints at all, or data without a config
    "garbled: random bytes": _bytes(lambda g: np.random.default_rng(0).bytes(4096)),
    "garbled: zero bytes": _bytes(lambda g: b""),
    "garbled: truncated checkpoint": _bytes(lambda g: open(g["path"], "rb").read()[:4096]),
    "data: a list, not a dict": _save([1, 2, 3]),
    "data: weights without a config": _save(lambda g, c: {"model": g["memobert"]["model"]}),
    "data: config of the wrong type": _save(lambda g, c: {**g["memobert"], "cfg": "memobert_tiny"}),
}


# --- the loading paths: name -> load(path, context) -------------------------------------------
def _tiny_model():
    return MemobertModel(MemobertConfig(**TINY, visual_feature_dim=342, acoustic_feature_dim=768), 100, 0)


def _bert_dir(path, context):
    """A Hugging Face BERT directory whose weights file is the crafted file."""
    directory = context["tmp"] / "bert"
    directory.mkdir(exist_ok=True)
    config = {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 2}
    (directory / "config.json").write_text(json.dumps(config))
    weights = directory / "pytorch_model.bin"
    if weights.exists():
        weights.unlink()
    os.link(path, weights)
    return str(weights), str(directory)


def _predict_cli(path, context):
    inputs = context["tmp"] / "input.tsv"
    inputs.write_text("id\ttext\tvisual\tacoustic\nu0\thello\t\t\n")
    with pytest.raises(SystemExit) as exit_:
        predict_main(["--checkpoint", path, "--input", str(inputs)])
    assert exit_.value.code == 1
    raise RuntimeError(context["capsys"].readouterr().err)  # what the user sees


def _bert_init(path, context):
    weights, directory = _bert_dir(path, context)
    context["named"] = weights  # the message names the weights file inside the directory
    load_bert_weights(_tiny_model(), directory)


LOADERS = {
    "fairseq-validate (load_model_ensemble_and_task)": lambda path, context: (
        checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": context["data"]})),
    "--restore-file (trainer's load_checkpoint_to_cpu)": lambda path, context: checkpoint_utils.load_checkpoint_to_cpu(path),
    "--memobert-init (shape)": lambda path, context: memobert_checkpoint_shape(path),
    "--memobert-init (weights)": lambda path, context: load_memobert_weights(_tiny_model(), path),
    "--bert-init": _bert_init,
    "memobert-predict": _predict_cli,
    "EmotionPredictor": lambda path, context: EmotionPredictor(path),
    "memobert-prepare --wav2vec2": lambda path, context: load_speech_encoder(path),
    "memobert-prepare --fer-model": lambda path, context: load_fer_model(path),
}


def _assert_refusal(message: str, path: str) -> None:
    assert path in message, f"the refusal does not name {path}: {message}"
    assert not any(advice in message for advice in TORCH_ADVICE), f"passes torch's weights_only advice on: {message}"
    assert SECRET not in message, f"shows an interpolated environment value: {message}"


@pytest.fixture(scope="module")
def crafted_files(genuine, tmp_path_factory):
    """Every crafted file, written once: name -> path; their code payloads would create ``pwned``."""
    root = tmp_path_factory.mktemp("crafted")
    code = f"__import__('os').system('touch {root / 'PWNED'}')"
    paths = {name: str(root / f"{i:02d}.pt") for i, name in enumerate(CRAFTED)}
    for name, path in paths.items():
        CRAFTED[name](genuine, path, code)
    return paths


@pytest.fixture
def hostile(tmp_path, monkeypatch, capsys, genuine, crafted_files):
    """Run in a scratch dir with a secret in the environment; nothing may have run afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    yield {"tmp": tmp_path, "data": genuine["data"], "capsys": capsys}
    for pwned in (tmp_path / "PWNED", os.path.join(os.path.dirname(next(iter(crafted_files.values()))), "PWNED")):
        assert not os.path.exists(pwned), "the crafted checkpoint ran code"


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("crafted", list(CRAFTED))
def test_crafted_checkpoint_is_refused(crafted, loader, crafted_files, hostile):
    path = crafted_files[crafted]
    with pytest.raises(Exception) as refused:  # noqa: PT011  (each path has its own error types; the message counts)
        LOADERS[loader](path, hostile)
    _assert_refusal(str(refused.value), hostile.get("named", path))


def test_genuine_checkpoints_load_on_every_memobert_path(genuine, tmp_path, monkeypatch, tiny_wav2vec2):  # noqa: F811
    """The control: what the paths refuse above is the crafted part, not every checkpoint."""
    path = genuine["path"]
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([path])
    assert type(models[0]).__name__ == "MemobertModel" and task.cfg._name == "memobert_emotion"
    assert checkpoint_utils.load_checkpoint_to_cpu(path)["cfg"].model._name == "memobert_tiny"
    assert memobert_checkpoint_shape(path)["encoder_layers"] == 2
    assert EmotionPredictor(path).class_names == ["anger", "happy", "neutral", "sad"]
    assert load_speech_encoder(tiny_wav2vec2["fairseq_args"]).describe()["layers"] == 2


def test_memobert_tasks_build_only_memobert_models(genuine):
    """The task-side check, should a config reach build_model another way."""
    require_memobert_model("memobert_tiny", "--arch")
    for name in ("fconv", "wav2vec2", "hubert", "transformer", None, 3):
        with pytest.raises(pickle.UnpicklingError, match=rf"--arch: refused: the model {name!r} is not a memobert"):
            require_memobert_model(name, "--arch")


@pytest.mark.parametrize("spec, layers", [
    ("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2", 7),
    ("[(48, 10, 5)]", 1),
])
def test_wav2vec2_conv_layers_are_parsed_as_literals(spec, layers):
    assert len(literal_conv_layers(spec, "conv_feature_layers", "x.pt")) == layers


# --- real command lines: the same refusals end the process with the message ---------------
def _cli_cases(demo_corpus, plugin_dir, tiny, save_dir):
    train = [f"{BIN}/fairseq-train", demo_corpus.emotion_data, "--user-dir", plugin_dir, "--task", "memobert_emotion",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam",
             "--lr", "1e-3", "--max-update", "1", "--batch-size", "16", "--num-workers", "0", "--cpu",
             "--disable-validation", "--save-dir", save_dir]
    return {
        "fairseq-validate --path": lambda path: [
            f"{BIN}/fairseq-validate", demo_corpus.pretrain_data, "--user-dir", plugin_dir, "--task", "memobert_pretrain",
            "--path", path, "--batch-size", "16", "--num-workers", "0", "--cpu"],
        "fairseq-train --restore-file": lambda path: [*train, "--restore-file", path],
        "fairseq-train --memobert-init": lambda path: [*train, "--memobert-init", path],
        "memobert-prepare acoustic --wav2vec2": lambda path: [
            f"{BIN}/memobert-prepare", "acoustic", "--manifest", tiny["manifest"], "--out", str(tiny["out"]),
            "--wav2vec2", path],
    }


@pytest.mark.parametrize("entry_point, crafted", [
    ("fairseq-validate --path", "data: wav2vec2 config in a memobert checkpoint"),
    ("fairseq-train --restore-file", "garbled: zero bytes"),
    ("fairseq-train --memobert-init", "interpolation: cfg.task.data"),
    ("memobert-prepare acoustic --wav2vec2", "data: wav2vec2 (args), eval'd conv layers"),
])
def test_entry_points_refuse_crafted_checkpoints(entry_point, crafted, genuine, demo_corpus, plugin_dir, tmp_path,
                                                 monkeypatch):
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    pwned = tmp_path / "PWNED"
    path = str(tmp_path / "crafted.pt")
    CRAFTED[crafted](genuine, path, f"__import__('os').system('touch {pwned}')")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("id\ttext\taudio\nu1\thello\tnone.wav\n")
    tiny = {"manifest": str(manifest), "out": tmp_path / "out"}
    command = _cli_cases(demo_corpus, plugin_dir, tiny, str(tmp_path / "ckpt"))[entry_point](path)
    proc = run_cli(command, cwd=tmp_path, check=False)
    last_lines = "\n".join(proc.stderr.strip().splitlines()[-3:])
    assert proc.returncode != 0, proc.stderr[-3000:]
    _assert_refusal(last_lines, path)
    assert "refused" in last_lines or "empty" in last_lines, last_lines
    assert not pwned.exists()
