"""Bootstrap intervals: the weighted (all resamples at once) metrics equal the metrics computed on each
resample's arrays, for every metric of every problem type; resamples are scikit-learn's; a hand-computed
case; residue tasks resample proteins, not residues."""

from __future__ import annotations

import numpy as np
import pytest

from plmforge.bootstrap import (
    WEIGHTED,
    _loop,
    metric_intervals,
    paired_difference,
    resample_counts,
    resampled_metrics,
)
from plmforge.metrics import METRICS
from plmforge.tasks import PROBLEM_TYPES
from plmforge.tasks.kinds import IGNORE


def _probs(rng, n, c):
    p = rng.random((n, c)) ** 3
    return p / p.sum(1, keepdims=True)


def _case(name: str, rng: np.random.Generator):
    n = 40
    if name == "binary":
        y = rng.integers(0, 2, n)
        return "single_label_classification", y, _probs(rng, n, 2)
    if name == "three_classes_one_rare":  # class 2 twice: many resamples lack it (the metric's own fallback)
        y = rng.integers(0, 2, n)
        y[[3, 17]] = 2
        return "single_label_classification", y, _probs(rng, n, 3)
    if name == "multi_label":
        y = (rng.random((n, 4)) < 0.35).astype(np.int64)
        y[:, 3] = 0
        y[5, 3] = 1  # a label almost never present
        return "multi_label_classification", y, rng.random((n, 4))
    if name == "regression_with_ties":
        y = np.round(rng.normal(size=n), 1)
        return "regression", y, np.round(y + rng.normal(scale=0.8, size=n), 1)
    if name == "residue_classes":
        labels, scores = [], []
        for _ in range(n):
            length = int(rng.integers(3, 30))
            lab = rng.integers(0, 3, length)
            lab[rng.random(length) < 0.2] = IGNORE
            labels.append(lab)
            scores.append(_probs(rng, length, 3))
        labels[4] = np.full(5, IGNORE)  # a protein with no labelled residue
        scores[4] = _probs(rng, 5, 3)
        return "residue_single_label_classification", labels, scores
    if name == "residue_regression":
        labels = [np.where(rng.random(k) < 0.1, np.nan, rng.normal(size=k)) for k in rng.integers(4, 20, n)]
        return "residue_regression", labels, [np.nan_to_num(v) + rng.normal(size=len(v)) for v in labels]
    raise KeyError(name)


CASES = ["binary", "three_classes_one_rare", "multi_label", "regression_with_ties", "residue_classes",
         "residue_regression"]


@pytest.mark.parametrize("case", CASES)
def test_weighted_metrics_equal_metrics_on_the_resampled_arrays(case):
    problem_name, labels, scores = _case(case, np.random.default_rng(3))
    problem = PROBLEM_TYPES[problem_name]
    names = tuple(m for m, spec in METRICS.items() if problem.kind.name in spec.kinds)
    assert set(names) <= set(WEIGHTED)
    counts = resample_counts(len(labels), 80, seed=11)
    fast = resampled_metrics(problem, names, labels, scores, counts)
    slow = _loop(problem, names, labels, scores, counts)
    assert set(fast) == set(slow)
    for name in slow:
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    if case == "three_classes_one_rare":
        assert np.isfinite(fast["auroc"]).all() and (counts[:, [3, 17]].sum(1) == 0).any()


def test_resamples_are_scikit_learns():
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.utils import resample

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = _probs(rng, 60, 2)
    ours = metric_intervals(PROBLEM_TYPES["single_label_classification"], ("accuracy", "auroc"), y, p,
                            resamples=300, seed=7)
    rs = np.random.RandomState(7)
    acc, auc = [], []
    for _ in range(300):
        yy, pp = resample(y, p, random_state=rs)
        acc.append(accuracy_score(yy, pp.argmax(1)))
        auc.append(roc_auc_score(yy, pp[:, 1]))
    assert (ours["accuracy"].low, ours["accuracy"].high) == pytest.approx(tuple(np.percentile(acc, [2.5, 97.5])))
    assert (ours["auroc"].low, ours["auroc"].high) == pytest.approx(tuple(np.percentile(auc, [2.5, 97.5])))


def test_a_hand_computed_interval():
    """4 proteins, 3 predicted right: a resample's accuracy is Binomial(4, 0.75) / 4, whose 2.5th and
    97.5th percentiles are 0.25 (P(k <= 1) = 0.051) and 1.0 (P(k <= 3) = 0.68)."""
    y = np.array([1, 1, 0, 0])
    p = np.array([[0.2, 0.8], [0.3, 0.7], [0.9, 0.1], [0.4, 0.6]])
    got = metric_intervals(PROBLEM_TYPES["single_label_classification"], ("accuracy",), y, p, resamples=20000)
    assert (got["accuracy"].low, got["accuracy"].high) == (0.25, 1.0)
    perfect = metric_intervals(PROBLEM_TYPES["single_label_classification"], ("accuracy",), y[:3], p[:3])
    assert (perfect["accuracy"].low, perfect["accuracy"].high) == (1.0, 1.0)


def test_residue_tasks_resample_proteins_not_residues():
    """Two proteins of 100 residues, one predicted perfectly and one wrongly: resampling proteins gives
    accuracies 0, 0.5 or 1 (interval [0, 1]); resampling residues would give about [0.43, 0.57]."""
    problem = PROBLEM_TYPES["residue_single_label_classification"]
    labels = [np.zeros(100, dtype=np.int64), np.zeros(100, dtype=np.int64)]
    scores = [np.tile([0.9, 0.1], (100, 1)), np.tile([0.1, 0.9], (100, 1))]
    got = metric_intervals(problem, ("accuracy",), labels, scores, resamples=400)
    assert (got["accuracy"].low, got["accuracy"].high) == (0.0, 1.0)


def test_undefined_resamples_are_counted_and_a_paired_difference_of_equal_scores_is_zero():
    y = np.array([0] * 19 + [1])
    p = _probs(np.random.default_rng(1), 20, 2)
    got = metric_intervals(PROBLEM_TYPES["single_label_classification"], ("auroc",), y, p, resamples=200)
    assert 0 < got["auroc"].undefined < 200  # resamples without the one positive have no AUROC
    assert np.isclose(np.mean(resample_counts(20, 200, 0)[:, 19] == 0), got["auroc"].undefined / 200)
    diff = paired_difference(PROBLEM_TYPES["single_label_classification"], "accuracy", y, p, p.copy())
    assert (diff.low, diff.high) == (0.0, 0.0)


@pytest.mark.parametrize("case", CASES)
def test_resamples_drawn_block_by_block_give_the_metrics_of_the_whole_count_matrix(case, monkeypatch):
    """The resamples are drawn again block by block instead of held (1000 x a million proteins would be
    4 GB): the same count rows for any block size, and the same metrics when tiny blocks of resamples and
    of units (f1_max) are forced."""
    import plmforge.bootstrap as bs

    problem_name, labels, scores = _case(case, np.random.default_rng(5))
    problem = PROBLEM_TYPES[problem_name]
    names = tuple(m for m, spec in METRICS.items() if problem.kind.name in spec.kinds)
    whole = resample_counts(len(labels), 50, seed=4)
    for rows in (1, 7, 50, 64):
        assert np.array_equal(np.concatenate(list(bs.Resamples(len(labels), 50, 4).blocks(rows))), whole)
    expected = resampled_metrics(problem, names, labels, scores, whole)
    monkeypatch.setattr(bs, "_CELLS", 150)  # a few resamples at a time; f1_max one protein at a time
    for kept in (bs._F1_ROWS_KEPT, 0):  # f1_max's per-protein rows shared by the blocks, or made per block
        monkeypatch.setattr(bs, "_F1_ROWS_KEPT", kept)
        got = resampled_metrics(problem, names, labels, scores, bs.Resamples(len(labels), 50, 4))
        assert set(got) == set(expected)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-12, equal_nan=True,
                                       err_msg=name)
    assert bs._local.cache is None  # nothing of the call is kept
    assert resample_counts(5, 0, 1).shape == (0, 5)
