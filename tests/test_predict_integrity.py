"""Issue 24 items 1, 2 and 6 on the prediction side: a bundle is verified before use, no prediction is silently
wrong or lost, and bad arguments and files are named before any work."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from conftest import BIN, run_cli
from memobert_plugin.inference.bundle import save_bundle
from memobert_plugin.files import read_json
from memobert_plugin.inference.predictor import EmotionPredictor
from memobert_plugin.inference.cli import main as predict_main
from memobert_plugin.predictions_file import read_predictions
from memobert_plugin.checkpoints.safe_loading import load_checkpoint_weights_only
from prepare_material import with_text_extractor


@pytest.fixture(scope="module")
def model(demo_corpus, plugin_dir, tmp_path_factory):
    """A memobert_emotion checkpoint (1 update) and its bundle."""
    root = tmp_path_factory.mktemp("integrity")
    data = with_text_extractor(demo_corpus.emotion_data, root / "data")
    run_cli([f"{BIN}/fairseq-train", data, "--user-dir", plugin_dir, "--task", "memobert_emotion",
             "--criterion", "memobert_emotion", "--arch", "memobert_tiny", "--fold", "1", "--optimizer", "adam",
             "--lr", "1e-3", "--max-update", "1", "--batch-size", "16", "--num-workers", "0", "--cpu",
             "--disable-validation", "--save-dir", str(root / "ckpt")])
    checkpoint = str(root / "ckpt" / "checkpoint_last.pt")
    return {"data": data, "checkpoint": checkpoint, "bundle": save_bundle(checkpoint, str(root / "model.bundle"))}


def _predict(capsys, *args):
    """memobert-predict's main(): (exit status, stdout, stderr)."""
    try:
        predict_main([str(a) for a in args])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out = capsys.readouterr()
    return status, out.out, out.err


def _input(tmp_path, *rows) -> str:
    path = tmp_path / "input.tsv"
    path.write_text("\n".join(["id\ttext\tvisual\tacoustic", *rows]) + "\n")
    return str(path)


# --- 24.1: a bundle is checked before use -----------------------------------------------------------------
def _zero_weights(bundle, settings):
    state = torch.load(bundle / "model.pt", weights_only=True)
    torch.save({**state, "model": {k: torch.zeros_like(v) for k, v in state["model"].items()}}, bundle / "model.pt")


def _swap_dict_lines(bundle, settings):
    lines = (bundle / "dict.txt").read_text().splitlines(keepends=True)
    lines[5], lines[6] = lines[6], lines[5]
    (bundle / "dict.txt").write_text("".join(lines))


def _vocab_outside(absolute):
    def tamper(bundle, settings):
        outside = bundle.parent / "vocab.txt"
        shutil.copyfile(bundle / "vocab.txt", outside)
        settings["extractors"]["text"]["file"] = str(outside) if absolute else "../vocab.txt"
        settings["sha256"][settings["extractors"]["text"]["file"]] = settings["sha256"].pop("vocab.txt")
    return tamper


def _model_symlink_out(bundle, settings):
    os.replace(bundle / "model.pt", bundle.parent / "elsewhere.pt")  # the same bytes, outside
    os.symlink(bundle.parent / "elsewhere.pt", bundle / "model.pt")


def _unrecorded(bundle, settings):
    del settings["sha256"]["dict.txt"]


def _not_json(bundle, settings):
    return "{format: memobert}"


@pytest.mark.parametrize("how, message", [
    (_zero_weights, "model.pt: its SHA-256 differs from the one bundle.json records"),
    (_swap_dict_lines, "dict.txt: its SHA-256 differs from the one bundle.json records"),
    (_vocab_outside(False), "'../vocab.txt' is not a file inside the bundle"),
    (_vocab_outside(True), "is not a file inside the bundle"),
    (_model_symlink_out, "model.pt: a symbolic link leading out of the bundle"),
    (_unrecorded, "bundle.json records no SHA-256 for dict.txt"),
    (_not_json, "bundle.json: not JSON (Expecting property name"),
], ids=["zeroed-weights", "swapped-dict", "dotdot-path", "absolute-path", "symlink-out", "unrecorded", "not-json"])
def test_a_tampered_bundle_is_refused_with_the_file_named(model, tmp_path, capsys, how, message):
    bundle = shutil.copytree(model["bundle"], tmp_path / "model.bundle")
    settings = read_json(str(bundle / "bundle.json"))
    replaced = how(bundle, settings)
    (bundle / "bundle.json").write_text(replaced or json.dumps(settings))
    status, out, err = _predict(capsys, "--checkpoint", bundle, "--text", "i am glad", "--no-progress")
    assert status == 1 and out == "" and message in err, err
    assert err.startswith(f"memobert-predict: error: {bundle}") and len(err.strip().splitlines()) == 1, err


def test_a_written_bundle_passes_its_checks_and_predicts(model, tmp_path, capsys):
    moved = shutil.copytree(model["bundle"], tmp_path / "moved.bundle")
    settings = read_json(str(moved / "bundle.json"))
    assert set(settings["sha256"]) == {"model.pt", "dict.txt", "vocab.txt"}
    assert not any(os.path.islink(moved / name) for name in os.listdir(moved))
    status, out, err = _predict(capsys, "--checkpoint", moved, "--text", "i am glad", "--no-progress")
    assert status == 0, err
    (tmp_path / "out.tsv").write_text(out)
    classes, rows = read_predictions(str(tmp_path / "out.tsv"))
    assert classes == ["anger", "happy", "neutral", "sad"] and [r[0] for r in rows] == ["input"]


def test_binary_vocab_and_wrong_vocab_are_named(model, tmp_path, capsys):
    binary = tmp_path / "vocab.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    status, _, err = _predict(capsys, "--checkpoint", model["checkpoint"], "--vocab", binary, "--text", "hi")
    assert status == 1 and f"{binary}: not a text vocabulary (not UTF-8" in err, err
    short = tmp_path / "dict.txt"
    short.write_text("".join(line for line in open(os.path.join(model["data"], "dict.txt")).readlines()[:-3]))
    status, _, err = _predict(capsys, "--checkpoint", model["checkpoint"], "--vocab", short, "--text", "hi")
    assert status == 1 and "the vocabulary does not match the model's" in err and "extracted with" not in err, err


# --- 24.2: no silent wrong output -------------------------------------------------------------------------
def test_features_beyond_the_stored_precision_are_refused(model, tmp_path, capsys):
    np.save(tmp_path / "huge.npy", np.full((5, 768), 1e30, np.float64))  # finite in float64, infinite in float16
    status, out, err = _predict(capsys, "--checkpoint", model["checkpoint"], "--input",
                                _input(tmp_path, "good\thello\t\t", "bad\thello\t\thuge.npy"))
    assert status == 1 and out == "" and "utterance bad: non-finite acoustic features in float16" in err, err


def test_a_model_giving_nan_writes_no_row(model, tmp_path, capsys):
    state = load_checkpoint_weights_only(model["checkpoint"])
    weights = dict(state["model"])
    weights["encoder.layers.0.ffn_in.weight"] = torch.full_like(weights["encoder.layers.0.ffn_in.weight"], float("nan"))
    torch.save({**state, "model": weights}, tmp_path / "nan.pt")
    status, out, err = _predict(capsys, "--checkpoint", tmp_path / "nan.pt", "--vocab",
                                os.path.join(model["data"], "dict.txt"), "--input", _input(tmp_path, "u0\thello\t\t"))
    assert status == 1 and "nan" not in out.lower() and "utterance u0: the model's scores are not finite" in err, err


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0", "--text", "hi"], "--batch-size 0: must be at least 1"),
    (["--batch-size", "-1", "--text", "hi"], "--batch-size -1: must be at least 1"),
    (["--text", "hi", "--audio", "a.wav", "--start", "2", "--end", "1"], "--start 2.0 is not before --end 1.0"),
    (["--text", "hi", "--audio", "a.wav", "--start", "-1"], "--start -1.0: must be >= 0"),
])
def test_bad_arguments_are_refused_before_loading(capsys, tmp_path, args, message):
    status, _, err = _predict(capsys, "--checkpoint", tmp_path / "not-loaded.pt", *args)
    assert status == 2 and message in err and "not-loaded" not in err, err


def test_a_missing_media_file_is_an_error_on_the_command_line(model, tmp_path, capsys):
    missing = tmp_path / "missing.wav"
    status, out, err = _predict(capsys, "--checkpoint", model["bundle"], "--text", "hi", "--audio", missing,
                                "--no-progress")
    assert status == 1 and out == "" and f"--audio {missing}: no such file" in err, err


def test_a_manifest_row_whose_media_is_missing_is_reported_in_its_row(model, tmp_path, capsys):
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("id\ttext\taudio\nu1\ti am glad\t\nu2\ti am sad\tgone.wav\nu3\tso so\t\n")
    status, out, err = _predict(capsys, "--checkpoint", model["bundle"], "--manifest", manifest, "--no-progress")
    assert status == 0, err
    header = out.splitlines()[0].split("\t")
    rows = {line.split("\t")[0]: dict(zip(header, line.split("\t"))) for line in out.splitlines()[1:]}
    assert list(rows) == ["u1", "u2", "u3"]
    assert rows["u1"]["predicted"] and rows["u1"]["problems"] == ""
    assert rows["u2"]["predicted"] == "" and rows["u2"]["p_anger"] == ""
    assert rows["u2"]["problems"] == f"audio: {tmp_path / 'gone.wav'}: no such file"
    assert "1 of 3 utterances not predicted" in err


def test_non_utf8_input_names_file_and_line(model, tmp_path, capsys):
    path = tmp_path / "input.tsv"
    path.write_bytes(b"id\ttext\tvisual\tacoustic\nu0\thello\t\t\nu1\tcaf\xe9\t\t\n")
    status, _, err = _predict(capsys, "--checkpoint", model["checkpoint"], "--input", path)
    assert status == 1 and f"{path}:3: not UTF-8 text" in err, err


def test_predictions_format_is_the_one_fairseq_validate_writes(model, tmp_path, capsys):
    """Both writers (the emotion task's --predictions-path and memobert-predict) write one format."""
    predictions = tmp_path / "valid.tsv"
    run_cli([f"{BIN}/fairseq-validate", model["data"], "--user-dir", os.path.dirname(sys.modules["memobert_plugin"].__file__),
             "--task", "memobert_emotion", "--fold", "1", "--path", model["checkpoint"], "--valid-subset", "test",
             "--batch-size", "16", "--cpu", "--predictions-path", str(predictions)])
    validated_classes, validated = read_predictions(str(predictions))
    status, out, err = _predict(capsys, "--checkpoint", model["checkpoint"], "--text", "hello", "--no-progress")
    assert status == 0, err
    (tmp_path / "predicted.tsv").write_text(out)
    classes, predicted = read_predictions(str(tmp_path / "predicted.tsv"))
    assert classes == validated_classes
    header = open(predictions).readline()
    assert out.splitlines()[0] + "\n" == header and len(predicted[0]) == len(validated[0])
