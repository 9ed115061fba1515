"""Classification metrics from a confusion matrix of counts (rows: gold class, columns: predicted).

The emotion criterion sums the matrix's counts over batches and workers, so every figure
here is exact for the whole evaluated set; memobert-cv derives the per-class figures of a
fold's ``result.json`` from the same matrix. Conventions follow scikit-learn's defaults:
UAR averages recall over the classes that occur; macro F1 averages over the classes that
occur or are predicted; weighted F1 weights by occurrences; an undefined precision or F1
(a class never predicted, or absent and never predicted) counts as 0.
Pure Python: no fairseq or torch, so tables and figures load fast.
"""

from typing import Dict, List, Sequence

__all__ = [
    "confusion_from_counts",
    "weighted_accuracy",
    "unweighted_average_recall",
    "per_class_scores",
    "macro_f1",
    "weighted_f1",
    "classification_report",
]

Confusion = Sequence[Sequence[float]]


def confusion_from_counts(counts: Sequence[float], num_classes: int) -> List[List[int]]:
    """The ``num_classes`` x ``num_classes`` matrix of a flat row-major count list."""
    return [[int(counts[g * num_classes + p]) for p in range(num_classes)] for g in range(num_classes)]


def _totals(confusion: Confusion):
    support = [sum(row) for row in confusion]
    predicted = [sum(row[p] for row in confusion) for p in range(len(confusion))]
    correct = [confusion[k][k] for k in range(len(confusion))]
    return support, predicted, correct


def weighted_accuracy(confusion: Confusion) -> float:
    """Accuracy: the diagonal over all counts."""
    support, _, correct = _totals(confusion)
    return sum(correct) / sum(support) if sum(support) > 0 else float("nan")


def unweighted_average_recall(confusion: Confusion) -> float:
    """Mean recall over the classes that occur."""
    support, _, correct = _totals(confusion)
    recalls = [c / s for c, s in zip(correct, support) if s > 0]
    return sum(recalls) / len(recalls) if recalls else float("nan")


def _ratio_or_zero(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def per_class_scores(confusion: Confusion) -> List[Dict[str, float]]:
    """Per class: recall, precision, F1 and support (occurrences)."""
    support, predicted, correct = _totals(confusion)
    scores = []
    for k in range(len(confusion)):
        recall, precision = _ratio_or_zero(correct[k], support[k]), _ratio_or_zero(correct[k], predicted[k])
        scores.append({"recall": recall, "precision": precision,
                       "f1": _ratio_or_zero(2 * precision * recall, precision + recall), "support": support[k]})
    return scores


def macro_f1(confusion: Confusion) -> float:
    support, predicted, _ = _totals(confusion)
    seen = [s["f1"] for s, n, m in zip(per_class_scores(confusion), support, predicted) if n + m > 0]
    return sum(seen) / len(seen) if seen else float("nan")


def weighted_f1(confusion: Confusion) -> float:
    scores = per_class_scores(confusion)
    total = sum(s["support"] for s in scores)
    return sum(s["f1"] * s["support"] for s in scores) / total if total > 0 else float("nan")


def classification_report(confusion: Confusion, class_names: Sequence[str]) -> Dict:
    """Everything a fold's result.json carries: summary figures, per-class figures and the matrix."""
    if len(class_names) != len(confusion):
        raise ValueError(f"{len(class_names)} class names {list(class_names)} for a {len(confusion)}-class confusion matrix")
    return {
        "wa": weighted_accuracy(confusion),
        "uar": unweighted_average_recall(confusion),
        "macro_f1": macro_f1(confusion),
        "weighted_f1": weighted_f1(confusion),
        "classes": list(class_names),
        "per_class": dict(zip(class_names, per_class_scores(confusion))),
        "confusion": [list(map(int, row)) for row in confusion],
    }
