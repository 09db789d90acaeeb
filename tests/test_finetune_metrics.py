"""GLUE metrics (hfssl.finetune.metrics) against values worked out by hand, and against sklearn/scipy when present."""

import math

import numpy as np
import pytest

from hfssl.finetune import metrics as M

# 8 binary predictions: TP=3 (idx 0,1,2), FN=1 (idx 3), FP=2 (idx 4,5), TN=2 (idx 6,7).
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])
PREDS = np.array([1, 1, 1, 0, 1, 1, 0, 0])


def test_accuracy_by_hand():
    assert M.accuracy(PREDS, LABELS) == pytest.approx(5 / 8)


def test_binary_f1_by_hand():
    # precision 3/5, recall 3/4 -> F1 = 2·3 / (2·3 + 2 + 1) = 6/9
    assert M.f1(PREDS, LABELS) == pytest.approx(6 / 9)
    # F1 of class 0: TP=2, FP=1, FN=2 -> 4/7
    assert M.f1(PREDS, LABELS, positive=0) == pytest.approx(4 / 7)


def test_f1_when_positive_class_absent_everywhere_is_zero():
    assert M.f1(np.zeros(4, int), np.zeros(4, int)) == 0.0


def test_macro_f1_by_hand():
    assert M.macro_f1(PREDS, LABELS, num_labels=2) == pytest.approx((6 / 9 + 4 / 7) / 2)


def test_matthews_binary_by_hand():
    # (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 − 2) / sqrt(5·4·4·3) = 4 / sqrt(240)
    assert M.matthews_correlation(PREDS, LABELS) == pytest.approx(4 / math.sqrt(240))


def test_matthews_multiclass_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    # s=6, c=4, p=(2,3,1), t=(2,2,2): (4·6 − (4+6+2)) / sqrt((36 − 14)(36 − 12)) = 12 / sqrt(22·24)
    assert M.matthews_correlation(preds, labels) == pytest.approx(12 / math.sqrt(22 * 24))


def test_matthews_perfect_inverse_and_constant():
    assert M.matthews_correlation(LABELS, LABELS) == pytest.approx(1.0)
    assert M.matthews_correlation(1 - LABELS, LABELS) == pytest.approx(-1.0)
    assert M.matthews_correlation(np.ones(8, int), LABELS) == 0.0  # a constant predictor carries no information


def test_pearson_by_hand():
    x, y = [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]
    # centred: (-1, 0, 1) and (-1, 1, 0): covariance 1, norms sqrt(2)·sqrt(2) -> 0.5
    assert M.pearson(x, y) == pytest.approx(0.5)
    assert M.pearson([1, 1, 1], y) == 0.0


def test_spearman_with_ties_by_hand():
    x = [10.0, 20.0, 20.0, 40.0]  # ranks 1, 2.5, 2.5, 4
    y = [1.0, 2.0, 3.0, 4.0]  # ranks 1, 2, 3, 4
    # centred ranks (-1.5, 0, 0, 1.5) and (-1.5, -.5, .5, 1.5): 4.5 / sqrt(4.5 · 5)
    assert M.spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert M.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)  # monotone, not linear: still 1


def test_regression_metrics_combined_and_mse():
    scores = M.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    assert scores["pearson"] == pytest.approx(0.5)
    assert scores["spearmanr"] == pytest.approx(0.5)
    assert scores["combined_score"] == pytest.approx(0.5)
    assert scores["mse"] == pytest.approx(2 / 3)
    assert set(M.regression_metrics([1, 2], [2, 1], ("pearson",))) == {"pearson"}


def test_classification_metrics_combined_score_is_mean_of_accuracy_and_f1():
    scores = M.classification_metrics(PREDS, LABELS, ("accuracy", "f1", "combined_score"), num_labels=2)
    assert scores["combined_score"] == pytest.approx((5 / 8 + 6 / 9) / 2)


def test_logits_to_predictions():
    logits = np.array([[0.1, 2.0], [3.0, -1.0]])
    assert M.logits_to_predictions(logits, is_regression=False).tolist() == [1, 0]
    assert M.logits_to_predictions((np.array([[0.5], [4.2]]),), is_regression=True).tolist() == [0.5, 4.2]


def test_agree_with_sklearn_and_scipy_on_random_data():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    preds[:120] = labels[:120]  # make them correlated
    assert M.matthews_correlation(preds, labels) == pytest.approx(sklearn_metrics.matthews_corrcoef(labels, preds))
    assert M.macro_f1(preds, labels, 3) == pytest.approx(sklearn_metrics.f1_score(labels, preds, average="macro"))
    binary_labels, binary_preds = labels % 2, preds % 2
    assert M.f1(binary_preds, binary_labels) == pytest.approx(sklearn_metrics.f1_score(binary_labels, binary_preds))
    x, y = rng.normal(size=50), rng.integers(0, 5, 50).astype(float)  # y has many ties
    assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
