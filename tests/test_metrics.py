"""Metrics against scikit-learn / SciPy computed independently, and hand-worked values."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from plmforge.metrics import METRICS, compute_metrics, confusion_matrix

Y_BIN = np.array([0, 1, 1, 0, 1, 0, 1, 1])
P1 = np.array([0.2, 0.8, 0.4, 0.3, 0.9, 0.6, 0.7, 0.55])
P_BIN = np.stack([1 - P1, P1], axis=1)


def test_binary_metrics_match_sklearn():
    got = compute_metrics(("accuracy", "precision", "recall", "f1", "mcc", "auroc", "auprc", "specificity",
                           "sensitivity"), Y_BIN, P_BIN)
    pred = (P1 >= 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y_BIN, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(Y_BIN, pred))
    assert got["recall"] == pytest.approx(skm.recall_score(Y_BIN, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(Y_BIN, pred))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(Y_BIN, pred))
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(Y_BIN, P1))
    assert got["auprc"] == pytest.approx(skm.average_precision_score(Y_BIN, P1))
    # hand count: TN=2 (idx 0, 3), FP=1 (idx 5) -> specificity 2/3; recall 4/5 (idx 2 missed)
    assert got["specificity"] == pytest.approx(2 / 3)
    assert got["sensitivity"] == pytest.approx(4 / 5)
    assert confusion_matrix(Y_BIN, P_BIN).tolist() == [[2, 1], [1, 4]]


def test_multiclass_metrics_are_macro():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    probs = rng.dirichlet(np.ones(4), 60)
    pred = probs.argmax(1)
    got = compute_metrics(("f1", "precision", "recall", "mcc", "auroc"), y, probs)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def test_multilabel_metrics():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    p = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.3], [0.8, 0.4, 0.1], [0.3, 0.2, 0.45]])
    pred = (p >= 0.5).astype(int)
    got = compute_metrics(("accuracy", "f1", "precision", "recall", "auroc"), y, p)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))  # exact match
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))


def test_f1_max_hand_worked():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.6], [0.2, 0.3]])
    # t in (0.3, 0.6]: protein 1 predicts both labels (precision 0.5, recall 1), protein 2 predicts none
    #   -> precision 0.5 (over proteins with predictions), recall (1 + 0) / 2 = 0.5 -> F 0.5
    # t in (0.6, 0.9]: protein 1 predicts label 0 only -> precision 1, recall 0.5 -> F 2/3
    # t <= 0.2: both predict both labels -> precision 0.5, recall 1 -> F 2/3
    # t in (0.2, 0.3]: p1 both (0.5, 1), p2 label 1 (1, 1) -> precision 0.75, recall 1 -> F 6/7
    assert METRICS["f1_max"].fn(y, p) == pytest.approx(6 / 7)


def test_regression_metrics_match_scipy_and_sklearn():
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    yhat = y + rng.normal(scale=0.5, size=50)
    got = compute_metrics(("spearman_corr", "pearson", "mse", "mae", "r2"), y, yhat)
    assert got["spearman_corr"] == pytest.approx(stats.spearmanr(y, yhat).statistic)
    assert got["pearson"] == pytest.approx(stats.pearsonr(y, yhat).statistic)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, yhat))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, yhat))
    assert got["r2"] == pytest.approx(skm.r2_score(y, yhat))


def test_constant_predictions_give_nan_correlation_not_a_crash():
    assert np.isnan(METRICS["spearman_corr"].fn(np.arange(5.0), np.ones(5)))


def test_directions():
    assert METRICS["mse"].direction == "min" and METRICS["mcc"].direction == "max"


def test_multiclass_auroc_when_a_split_holds_only_two_of_the_classes():
    """Small validation splits of many-class tasks (e.g. 7 EC classes) may contain just two of them."""
    from sklearn.metrics import roc_auc_score

    y = np.array([2, 5, 2, 5, 5, 2])
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=6)
    expected = roc_auc_score(y == 5, probs[:, 5] / (probs[:, 2] + probs[:, 5]))
    assert compute_metrics(("auroc",), y, probs)["auroc"] == pytest.approx(expected)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_count_based_class_metrics_equal_sklearn_on_random_and_degenerate_cases(classes):
    """accuracy, precision, recall, f1, mcc and the confusion matrix come from one bincount: against
    scikit-learn on 200 random splits per class count, including constant predictions, absent classes
    and single samples (zero_division=0 conventions, MCC 0 when undefined)."""
    import warnings

    rng = np.random.default_rng(classes)
    labels = list(range(classes))
    avg = "binary" if classes == 2 else "macro"
    for trial in range(200):
        n = int(rng.integers(1, 40))
        y = rng.integers(0, classes, n)
        probs = rng.random((n, classes))
        if trial % 3 == 0:
            probs[:, 0] += 5  # every prediction class 0
        probs /= probs.sum(1, keepdims=True)
        pred = probs.argmax(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = {"accuracy": skm.accuracy_score(y, pred), "mcc": skm.matthews_corrcoef(y, pred),
                        **{name: fn(y, pred, average=avg, labels=labels, zero_division=0) for name, fn in
                           (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score))}}
        for name, value in expected.items():
            assert METRICS[name].fn(y, probs) == pytest.approx(value, abs=1e-12), (trial, name)
        np.testing.assert_array_equal(confusion_matrix(y, probs), skm.confusion_matrix(y, pred, labels=labels))


def test_binary_auroc_from_ranks_equals_sklearn_with_ties_and_two_present_classes():
    """The Mann-Whitney AUROC against roc_auc_score on 300 random binary splits (scores rounded so that
    many tie), and on three-class probabilities where only two classes are present; NaN scores refused."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]  # both classes present
        p1 = np.round(rng.random(n), int(rng.integers(1, 4)))
        probs = np.stack([1 - p1, p1], 1)
        assert METRICS["auroc"].fn(y, probs) == pytest.approx(skm.roc_auc_score(y, p1), abs=1e-12), trial
    y = rng.choice([0, 2], 50)
    y[:2] = [0, 2]
    probs = rng.dirichlet(np.ones(3), 50)
    sub = probs[:, [0, 2]] / probs[:, [0, 2]].sum(1, keepdims=True)
    assert METRICS["auroc"].fn(y, probs) == pytest.approx(skm.roc_auc_score(y == 2, sub[:, 1]), abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        METRICS["auroc"].fn(np.array([0, 1, 0, 1]), np.array([[0.5, 0.5], [0.2, np.nan], [0.4, 0.6], [0.1, 0.9]]))
