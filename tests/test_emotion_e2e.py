"""One fold per setting through memobert-cv (fairseq-train + fairseq-validate), checked against sklearn."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from conftest import run_cli

SETTINGS = ("direct", "pretrain_finetune", "pretrain_prompt")


def _recompute(checkpoint, data):
    """The test subset scored in-process from the checkpoint: gold classes, probabilities, utterance ids."""
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
    model = models[0].eval()
    task.load_dataset("test")
    dataset = task.dataset("test")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        probs = torch.softmax(task.class_logits(model, batch["net_input"]), -1).numpy()
    ids = [task.meta[row].id for row in batch["id"].tolist()]
    return batch["target"].numpy(), probs, ids


def _run_dir(out, setting):
    return os.path.join(out, "demo", setting, "frac1", "seed1", "fold2")


@pytest.fixture(scope="module")
def sweep(demo_corpus, pretrained, tmp_path_factory):
    """memobert-cv on fold 2 in every setting, its checkpoints kept (read by several tests)."""
    out = str(tmp_path_factory.mktemp("cv"))
    run_cli([sys.executable, "-m", "memobert_plugin.evaluation.cli", "run", "--out", out,
             "--corpus", f"demo={demo_corpus.emotion_data}", "--settings", ",".join(SETTINGS),
             "--pretrained", pretrained, "--folds", "2", "--seeds", "1", "--arch", "memobert_tiny", "--lr", "1e-3",
             "--max-epoch", "2", "--batch-size", "16", "--keep-checkpoints", "--fractions", "0,1"], timeout=1800)
    return out


def test_one_fold_each_setting(demo_corpus, sweep):
    out = sweep
    table = open(os.path.join(out, "results.md")).read()
    for setting in SETTINGS:
        assert f"| {setting} |" in table
        run_dir = _run_dir(out, setting)
        result = json.load(open(os.path.join(run_dir, "result.json")))
        log = open(os.path.join(run_dir, "train.log")).read()
        # the checkpoint was chosen on the validation speaker; the test speaker never enters training
        assert "best_uar" in log and "| valid | " in log and "| test | " not in log.split("fairseq-validate")[0]
        truth, probs, ids = _recompute(os.path.join(run_dir, "checkpoints", "checkpoint_best.pt"), demo_corpus.emotion_data)
        predicted = probs.argmax(-1)
        assert result["test"]["wa"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-6)
        assert result["test"]["uar"] == pytest.approx(
            recall_score(truth, predicted, labels=np.unique(truth), average="macro"), abs=1e-6)
        assert result["test"]["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0), abs=1e-6)
        assert result["test"]["confusion"] == confusion_matrix(truth, predicted, labels=range(4)).tolist()
        # the per-utterance predictions are the checkpoint's, row for row
        with open(os.path.join(run_dir, "test_predictions.tsv")) as handle:
            rows = [line.rstrip("\n").split("\t") for line in handle][1:]
        by_id = {row[0]: row for row in rows}
        assert sorted(by_id) == sorted(ids)
        for utterance, gold, p in zip(ids, truth, probs):
            assert by_id[utterance][1] == result["test"]["classes"][gold]
            assert np.allclose([float(x) for x in by_id[utterance][3:-1]], p, atol=1e-5)
    csv_rows = open(os.path.join(out, "results.csv")).read().splitlines()
    assert len(csv_rows) == 5 and csv_rows[0].startswith("corpus,setting,train_fraction")  # + zero-shot prompt


def test_zero_shot_fold_tests_the_pretrained_model_untouched(demo_corpus, pretrained, sweep):
    """--fractions 0: no fairseq-train, no update; the pretrained weights are tested as they are."""
    assert not os.path.isdir(os.path.join(sweep, "demo", "direct", "frac0"))  # a new classifier needs labels
    run_dir = os.path.join(sweep, "demo", "pretrain_prompt", "frac0", "seed1", "fold2")
    log = open(os.path.join(run_dir, "train.log")).read()
    assert "untrained_checkpoint" in log and "fairseq-train" not in log.split("fairseq-validate")[0]
    checkpoint = os.path.join(run_dir, "checkpoints", "checkpoint_best.pt")
    tested = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    original = torch.load(pretrained, map_location="cpu", weights_only=False)["model"]
    assert tested.keys() <= original.keys()
    assert all(torch.equal(tested[k], original[k]) for k in tested)
    result = json.load(open(os.path.join(run_dir, "result.json")))
    truth, probs, _ = _recompute(checkpoint, demo_corpus.emotion_data)
    predicted = probs.argmax(-1)
    assert result["test"]["wa"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-6)
    assert result["test"]["uar"] == pytest.approx(
        recall_score(truth, predicted, labels=np.unique(truth), average="macro"), abs=1e-6)


def test_predict_matches_the_task(sweep, tmp_path):
    """memobert-predict on raw text + feature files gives the task pipeline's probabilities."""
    checkpoint = os.path.join(_run_dir(sweep, "pretrain_prompt"), "checkpoints", "checkpoint_best.pt")
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint])
    task.load_dataset("test")
    dataset = task.dataset("test")
    rows = [dataset[i] for i in range(6)]
    with torch.no_grad():
        expected = torch.softmax(task.class_logits(models[0].eval(), dataset.collater(rows)["net_input"]), -1).numpy()
    lines = ["id\ttext\tvisual\tacoustic"]
    for row in rows:
        words = " ".join(task.vocab[t] for t in row["text"][1:-5]).replace(" ##", "")  # drop [CLS] and the template
        paths = []
        for stream in ("visual", "acoustic"):
            if len(row[stream]):
                paths.append(f"{row['id']}.{stream}.npy")
                np.save(tmp_path / paths[-1], row[stream].numpy())
            else:
                paths.append("")
        lines.append("\t".join([str(row["id"]), words, *paths]))
    (tmp_path / "input.tsv").write_text("\n".join(lines) + "\n")
    result = run_cli([sys.executable, "-m", "memobert_plugin.inference.cli", "--checkpoint", checkpoint,
                      "--input", str(tmp_path / "input.tsv")])
    table = [line.split("\t") for line in result.stdout.splitlines()]
    assert table[0] == ["id", "gold", "predicted", "p_anger", "p_happy", "p_neutral", "p_sad", "problems"]
    got = np.array([[float(x) for x in line[3:-1]] for line in table[1:]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
