"""Metric registry by name and problem type, computed with scikit-learn and SciPy.

Inputs are whole-split arrays (residue tasks: all unmasked residues of the split, flattened by the
problem type):
- single-label: y_true (N,) class indices, probs (N, C) softmax probabilities;
- multi-label: y_true (N, C) 0/1, probs (N, C) sigmoid probabilities;
- regression: y_true (N,), y_pred (N,) in the user's units.

Averaging (also written next to the numbers in every metrics file):
- binary single-label: precision/recall/f1/specificity for the positive class 1, AUROC of class 1;
- multi-class single-label: macro averages, AUROC one-vs-rest macro;
- multi-label: accuracy is exact-match (subset) accuracy, precision/recall/f1/mcc are micro over all
  (protein, label) pairs at threshold 0.5, AUROC macro over labels that have both classes,
  f1_max the protein-centric maximum F1 over thresholds 0.00..1.00 (CAFA style).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plmforge.registry import Registry

# what a metric is computed on (a problem type names one of these kinds for its labels)
SINGLE, MULTI, REG = "classes", "multi_label", "values"


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # 'max' or 'min'
    kinds: tuple[str, ...]  # label kinds it applies to
    fn: Callable[[np.ndarray, np.ndarray], float]


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, direction: str, kinds: tuple[str, ...]):
    def wrap(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
        METRICS.register(name, Metric(name, direction, kinds, fn))
        return fn

    return wrap


def _is_binary(probs: np.ndarray) -> bool:
    return probs.ndim == 2 and probs.shape[1] == 2


def _single_pred(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=1)


def _multi_pred(probs: np.ndarray) -> np.ndarray:
    return (probs >= 0.5).astype(int)


def _counts(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Single-label confusion counts (C, C): rows true class, columns predicted class (one bincount; the
    class-count metrics below are computed from it, as scikit-learn defines them, without its per-call
    input checks, which cost a small validation split more than the metrics themselves)."""
    c = probs.shape[1]
    y = np.asarray(y_true, dtype=np.int64)
    return np.bincount(y * c + _single_pred(probs), minlength=c * c).reshape(c, c)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


@register_metric("accuracy", "max", (SINGLE, MULTI))
def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    if y_true.ndim == 2:  # exact match of every label
        return float(np.mean(np.all(np.asarray(y_true) == _multi_pred(probs), axis=1)))
    return float(np.mean(np.asarray(y_true) == _single_pred(probs)))


def _prf(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def fn(y_true: np.ndarray, probs: np.ndarray) -> float:
        if y_true.ndim == 2:
            from sklearn import metrics as skm

            score = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[kind]
            return float(score(y_true, _multi_pred(probs), average="micro", zero_division=0))
        cm = _counts(y_true, probs)
        tp = np.diag(cm).astype(float)
        per_class = {"precision": lambda: _ratio(tp, cm.sum(0)), "recall": lambda: _ratio(tp, cm.sum(1)),
                     "f1": lambda: _ratio(2 * tp, cm.sum(0) + cm.sum(1))}[kind]()
        return float(per_class[1] if _is_binary(probs) else per_class.mean())

    return fn


for _kind in ("precision", "recall", "f1"):
    register_metric(_kind, "max", (SINGLE, MULTI))(_prf(_kind))


@register_metric("sensitivity", "max", (SINGLE,))
def sensitivity(y_true: np.ndarray, probs: np.ndarray) -> float:
    return _prf("recall")(y_true, probs)


@register_metric("specificity", "max", (SINGLE,))
def specificity(y_true: np.ndarray, probs: np.ndarray) -> float:
    """TN / (TN + FP): of class 1 for binary tasks, macro over classes (one-vs-rest) otherwise."""
    cm = confusion_matrix(y_true, probs)
    per_class = []
    for c in range(cm.shape[0]):
        fp = cm[:, c].sum() - cm[c, c]
        tn = cm.sum() - cm[c, :].sum() - fp
        per_class.append(tn / (tn + fp) if tn + fp else 0.0)
    return float(per_class[1] if cm.shape[0] == 2 else np.mean(per_class))


@register_metric("mcc", "max", (SINGLE, MULTI))
def mcc(y_true: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    if y_true.ndim == 2:
        return float(matthews_corrcoef(y_true.ravel(), _multi_pred(probs).ravel()))
    cm = _counts(y_true, probs).astype(float)
    t, p, n = cm.sum(1), cm.sum(0), cm.sum()
    cov_tp, cov_pp, cov_tt = np.trace(cm) * n - t @ p, n * n - p @ p, n * n - t @ t
    return float(cov_tp / np.sqrt(cov_tt * cov_pp)) if cov_tt * cov_pp > 0 else 0.0


@register_metric("auroc", "max", (SINGLE, MULTI))
def auroc(y_true: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y_true.ndim == 2:
        keep = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
        if not keep:
            return float("nan")
        return float(roc_auc_score(y_true[:, keep], probs[:, keep], average="macro"))
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    if _is_binary(probs):
        return _binary_auroc(y_true == 1, probs[:, 1])
    if len(present) < probs.shape[1]:
        # one-vs-rest over the classes present; renormalised scores keep sklearn's checks happy
        sub = probs[:, present]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        if len(present) == 2:  # two classes are a binary task: score the second one
            return _binary_auroc(y_true == present[1], sub[:, 1])
        return float(roc_auc_score(y_true, sub, multi_class="ovr", labels=list(present)))
    return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))


def _binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic: the chance that a random positive scores
    above a random negative, ties counting half (ranks averaged over ties; equal to sklearn's trapezoids,
    without its input checks, which cost more than the area on a validation split)."""
    from scipy.stats import rankdata

    if not np.isfinite(score).all():
        raise ValueError("AUROC: the scores contain NaN or infinity")
    positive = np.asarray(positive, dtype=bool)
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    return float((rankdata(score)[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@register_metric("auprc", "max", (SINGLE, MULTI))
def auprc(y_true: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    if y_true.ndim == 2:
        return float(average_precision_score(y_true, probs, average="micro"))
    if _is_binary(probs):
        return float(average_precision_score(y_true, probs[:, 1]))
    onehot = np.eye(probs.shape[1])[y_true]
    return float(average_precision_score(onehot, probs, average="macro"))


@register_metric("f1_max", "max", (MULTI, SINGLE))
def f1_max(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Protein-centric Fmax: for each threshold t, precision is averaged over proteins with at least
    one score >= t, recall over all proteins; the best F1 over t in 0.00..1.00 is returned."""
    if y_true.ndim == 1:
        y_true = np.eye(probs.shape[1], dtype=int)[y_true]
    best = 0.0
    true_counts = y_true.sum(axis=1)
    for t in np.linspace(0.0, 1.0, 101):
        pred = probs >= t
        n_pred = pred.sum(axis=1)
        tp = (pred & (y_true == 1)).sum(axis=1)
        covered = n_pred > 0
        if not covered.any():
            continue
        precision = float(np.mean(tp[covered] / n_pred[covered]))
        recall = float(np.mean(np.divide(tp, true_counts, out=np.zeros(len(tp)), where=true_counts > 0)))
        if precision + recall > 0:
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


@register_metric("spearman_corr", "max", (REG,))
def spearman_corr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.std(y_pred) == 0 or np.std(y_true) == 0:
        return float("nan")
    return float(spearmanr(y_true, y_pred).statistic)


@register_metric("pearson", "max", (REG,))
def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from scipy.stats import pearsonr

    if np.std(y_pred) == 0 or np.std(y_true) == 0:
        return float("nan")
    return float(pearsonr(y_true, y_pred).statistic)


@register_metric("mse", "min", (REG,))
def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import mean_squared_error

    return float(mean_squared_error(y_true, y_pred))


@register_metric("mae", "min", (REG,))
def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import mean_absolute_error

    return float(mean_absolute_error(y_true, y_pred))


@register_metric("r2", "max", (REG,))
def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y_true, y_pred))


def confusion_matrix(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return _counts(y_true, probs)


def check_metrics(names: tuple[str, ...], kind: str, problem_type: str) -> None:
    """Every metric in `names` must accept labels of `kind`; the error names the problem type."""
    from plmforge.errors import ConfigError

    for name in names:
        if kind not in METRICS[name].kinds:
            allowed = [m for m, spec in METRICS.items() if kind in spec.kinds]
            raise ConfigError(f"metric {name!r} does not apply to {problem_type}; "
                              f"choose from {', '.join(allowed)}")


def compute_metrics(names: tuple[str, ...], y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The metrics by name; one undefined on these labels (e.g. AUROC with one class) is NaN, reported as
    n/a, without the libraries' warnings on the console."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. scikit-learn's 'a single label was found'
        try:
            from sklearn.exceptions import UndefinedMetricWarning

            warnings.simplefilter("ignore", UndefinedMetricWarning)
        except ImportError:
            pass
        try:
            from scipy.stats import ConstantInputWarning

            warnings.simplefilter("ignore", ConstantInputWarning)
        except ImportError:
            pass
        try:  # the arrays are ours, already checked: scikit-learn's per-call argument checks only cost time
            from sklearn import config_context

            skip = config_context(skip_parameter_validation=True)
        except (ImportError, TypeError):
            from contextlib import nullcontext

            skip = nullcontext()
        with skip:
            return {name: METRICS[name].fn(y_true, scores) for name in names}


def direction_of(monitor: str) -> str:
    return "min" if monitor == "loss" else METRICS[monitor].direction
