"""GLUE metrics in plain numpy: accuracy, F1, Matthews correlation, Pearson and Spearman correlation.

``evaluate.load("glue", ...)`` downloads a metric script from the Hub at run time, so it fails offline and
makes a finished training run crash at its first evaluation. These functions need nothing but numpy and follow
the textbook definitions (the same ones scikit-learn and scipy implement); ``tests/test_finetune_metrics.py``
checks them against hand-computed values.
"""

from __future__ import annotations

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean())


def _confusion(predictions: np.ndarray, labels: np.ndarray, positive: int) -> tuple[int, int, int]:
    predicted_pos = np.asarray(predictions) == positive
    actual_pos = np.asarray(labels) == positive
    tp = int(np.sum(predicted_pos & actual_pos))
    fp = int(np.sum(predicted_pos & ~actual_pos))
    fn = int(np.sum(~predicted_pos & actual_pos))
    return tp, fp, fn


def f1(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of class ``positive``: 2·TP / (2·TP + FP + FN); 0 when the class is never predicted nor present."""
    tp, fp, fn = _confusion(predictions, labels, positive)
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of the per-class F1 over classes that occur in the labels or the predictions."""
    present = np.union1d(np.unique(labels), np.unique(predictions))
    present = [c for c in present if 0 <= c < num_labels]
    return float(np.mean([f1(predictions, labels, positive=int(c)) for c in present])) if present else 0.0


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient for any number of classes (Gorodkin's R_K; binary MCC for 2 classes).

    MCC = (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)), with c correct predictions, s samples,
    p_k predictions and t_k true occurrences of class k. Defined as 0 when a marginal is constant.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(predictions, labels)
    s = float(len(labels))
    c = float(np.sum(predictions == labels))
    p = np.array([np.sum(predictions == k) for k in classes], dtype=np.float64)
    t = np.array([np.sum(labels == k) for k in classes], dtype=np.float64)
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - p @ t) / denominator) if denominator > 0 else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either input is constant (scipy returns NaN there, which breaks best-model
    selection)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    denominator = np.sqrt((x @ x) * (y @ y))
    return float((x @ y) / denominator) if denominator > 0 else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span (as Spearman's coefficient requires)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of the (tie-averaged) ranks."""
    return pearson(_average_ranks(x), _average_ranks(y))


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, names: tuple[str, ...], num_labels: int) -> dict[str, float]:
    """The metrics ``names`` (accuracy, f1, macro_f1, matthews_correlation, combined_score) for class ids.

    ``combined_score`` is the mean of accuracy and F1, the single number GLUE reports for MRPC and QQP.
    """
    available = {
        "accuracy": lambda: accuracy(predictions, labels),
        "f1": lambda: f1(predictions, labels),
        "macro_f1": lambda: macro_f1(predictions, labels, num_labels),
        "matthews_correlation": lambda: matthews_correlation(predictions, labels),
        "combined_score": lambda: (accuracy(predictions, labels) + f1(predictions, labels)) / 2,
    }
    return {name: available[name]() for name in names}


def regression_metrics(predictions: np.ndarray, labels: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Pearson, Spearman, their mean (GLUE's STS-B score) and the mean squared error (or the subset ``names``)."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    r, rho = pearson(predictions, labels), spearman(predictions, labels)
    scores = {"pearson": r, "spearmanr": rho, "combined_score": (r + rho) / 2, "mse": float(np.mean((predictions - labels) ** 2))}
    return scores if names is None else {name: scores[name] for name in names}


def logits_to_predictions(logits: np.ndarray, is_regression: bool) -> np.ndarray:
    """Class ids (argmax) for classification, the single output column for regression."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    return np.squeeze(logits, axis=-1) if is_regression else np.argmax(logits, axis=-1)


__all__ = [
    "accuracy", "classification_metrics", "f1", "logits_to_predictions", "macro_f1", "matthews_correlation", "pearson", "regression_metrics",
    "spearman",
]
