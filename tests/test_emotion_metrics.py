"""WA, UAR, F1 and the confusion matrix from summed counts equal scikit-learn's, across batches and workers."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fairseq import metrics
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, recall_score

from memobert_plugin.class_metrics import classification_report
from memobert_plugin.criterions.memobert_emotion import MemobertEmotionCriterion, MemobertEmotionCriterionConfig

CLASSES = 4


class _Task:
    class_names = ["anger", "happy", "neutral", "sad"]
    cfg = SimpleNamespace(emotion_head="finetune")  # a classifier: cross-entropy over the classes

    @staticmethod
    def class_logits(model, net_input):
        return net_input["logits"]

    @staticmethod
    def record_predictions(sample, logits):
        pass


def _logging_outputs(y_true, logits, batch_size):
    criterion = MemobertEmotionCriterion(MemobertEmotionCriterionConfig(), _Task())
    outputs = []
    for start in range(0, len(y_true), batch_size):
        sample = {"net_input": {"logits": logits[start:start + batch_size]}, "target": y_true[start:start + batch_size],
                  "ntokens": 1, "nsentences": len(y_true[start:start + batch_size])}
        outputs.append(criterion(None, sample)[2])
    return outputs


def _reduce(outputs):
    with metrics.aggregate(new_root=True) as agg:
        MemobertEmotionCriterion.reduce_metrics(outputs)
        return agg.get_smoothed_values()


@pytest.mark.parametrize("absent", [None, 2])
def test_wa_uar_match_sklearn(absent):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, CLASSES, 103)  # 103 = 3 x 32 + an uneven last batch of 7
    if absent is not None:
        y_true[y_true == absent] = 0  # a class absent from the fold
    logits = torch.tensor(rng.standard_normal((103, CLASSES)), dtype=torch.float32)
    y_pred = logits.argmax(-1).numpy()
    values = _reduce(_logging_outputs(torch.tensor(y_true), logits, 32))
    assert values["wa"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    # UAR averages recall over the classes present in the data
    assert values["uar"] == pytest.approx(recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro"), abs=1e-6)
    if absent is not None:
        # when the absent class is never predicted, that is also sklearn's default macro recall
        logits[:, absent] = -1e9
        y_pred = logits.argmax(-1).numpy()
        values = _reduce(_logging_outputs(torch.tensor(y_true), logits, 32))
        assert values["uar"] == pytest.approx(recall_score(y_true, y_pred, average="macro"), abs=1e-6)


def test_summed_workers_equal_one_worker():
    """fairseq all-reduces logging outputs by summing keys: the result must not change."""
    rng = np.random.default_rng(1)
    y_true = torch.tensor(rng.integers(0, CLASSES, 90))
    logits = torch.tensor(rng.standard_normal((90, CLASSES)), dtype=torch.float32)
    outputs = _logging_outputs(y_true, logits, 16)
    worker_a, worker_b = outputs[0::2], outputs[1::2]
    summed = [{k: sum(o[k] for o in worker_a) + sum(o[k] for o in worker_b) for k in worker_a[0]}]
    one, many = _reduce(outputs), _reduce(summed)
    for name in ("wa", "uar", "macro_f1", "weighted_f1", "confusion"):
        assert one[name] == many[name], name
    assert one["confusion"] == confusion_matrix(y_true, logits.argmax(-1)).tolist()
    assert one["wa"] == pytest.approx(accuracy_score(y_true, logits.argmax(-1)), abs=1e-6)


@pytest.mark.parametrize("absent", [None, 2])
def test_f1_and_per_class_match_sklearn(absent):
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, CLASSES, 77)
    logits = torch.tensor(rng.standard_normal((77, CLASSES)), dtype=torch.float32)
    if absent is not None:
        y_true[y_true == absent] = 1
        logits[:5, absent] = 1e9  # absent from the data but predicted: precision 0, in the macro F1
    y_pred = logits.argmax(-1).numpy()
    values = _reduce(_logging_outputs(torch.tensor(y_true), logits, 16))
    assert values["confusion"] == confusion_matrix(y_true, y_pred, labels=range(CLASSES)).tolist()
    assert values["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-6)
    assert values["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted", zero_division=0), abs=1e-6)
    report = classification_report(values["confusion"], _Task.class_names)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(CLASSES), zero_division=0)
    for k, name in enumerate(_Task.class_names):
        got = report["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
            (precision[k], recall[k], f1[k], support[k]), abs=1e-12), name
    assert report["wa"] == pytest.approx(values["wa"], abs=1e-6) and report["uar"] == pytest.approx(values["uar"], abs=1e-6)


def test_loss_is_logged_in_nats_per_utterance():
    """The same unit as the pretraining loss: cross-entropy with the natural log, averaged over utterances."""
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    target = torch.tensor([0, 2, 3])
    values = _reduce(_logging_outputs(target, logits, 2))
    assert values["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), abs=1e-4)
