"""Metric registry by name and problem type, computed with scikit-learn and SciPy.

Inputs are whole-split arrays:
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

SINGLE, MULTI, REG = "single_label_classification", "multi_label_classification", "regression"


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # 'max' or 'min'
    problem_types: tuple[str, ...]
    fn: Callable[[np.ndarray, np.ndarray], float]


METRICS: dict[str, Metric] = {}


def register_metric(name: str, direction: str, problem_types: tuple[str, ...]):
    def wrap(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = Metric(name, direction, problem_types, fn)
        return fn

    return wrap


def _is_binary(probs: np.ndarray) -> bool:
    return probs.ndim == 2 and probs.shape[1] == 2


def _single_pred(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=1)


def _multi_pred(probs: np.ndarray) -> np.ndarray:
    return (probs >= 0.5).astype(int)


def _average(probs: np.ndarray) -> str:
    return "binary" if _is_binary(probs) else "macro"


def _labels(probs: np.ndarray) -> list[int]:
    return list(range(probs.shape[1]))


@register_metric("accuracy", "max", (SINGLE, MULTI))
def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    if y_true.ndim == 2:
        return float(accuracy_score(y_true, _multi_pred(probs)))
    return float(accuracy_score(y_true, _single_pred(probs)))


def _prf(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def fn(y_true: np.ndarray, probs: np.ndarray) -> float:
        from sklearn import metrics as skm

        score = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[kind]
        if y_true.ndim == 2:
            return float(score(y_true, _multi_pred(probs), average="micro", zero_division=0))
        avg = _average(probs)
        return float(score(y_true, _single_pred(probs), average=avg, labels=_labels(probs), zero_division=0))

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
    return float(matthews_corrcoef(y_true, _single_pred(probs)))


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
        return float(roc_auc_score(y_true, probs[:, 1]))
    if len(present) < probs.shape[1]:
        # one-vs-rest over the classes present; renormalised scores keep sklearn's checks happy
        sub = probs[:, present]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        return float(roc_auc_score(y_true, sub, multi_class="ovr", labels=list(present)))
    return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))


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
    from sklearn.metrics import confusion_matrix as skcm

    return skcm(y_true, _single_pred(probs), labels=_labels(probs))


def averaging_note(problem_type: str, num_labels: int) -> str:
    from plmforge.tasks import base_type

    if problem_type != base_type(problem_type):
        return ("per residue, over all unmasked residues of the split (accuracy on 3/8-state secondary structure "
                "is Q3/Q8); accuracy_per_sequence averages each sequence's accuracy; "
                + averaging_note(base_type(problem_type), num_labels))
    if problem_type == REG:
        return "regression metrics in the label's original units"
    if problem_type == MULTI:
        return ("multi-label: accuracy = exact match; precision/recall/f1/mcc micro over (protein, label) "
                "pairs at threshold 0.5; auroc macro over labels with both classes; f1_max protein-centric")
    if num_labels == 2:
        return "binary: precision/recall/f1/specificity/auroc for class 1"
    return "multi-class: precision/recall/f1/specificity macro over classes; auroc one-vs-rest macro"


def check_metrics(names: tuple[str, ...], problem_type: str) -> None:
    from plmforge.errors import ConfigError
    from plmforge.tasks import base_type

    problem_type = base_type(problem_type)  # residue tasks are judged per residue like their base type
    for name in names:
        if problem_type not in METRICS[name].problem_types:
            allowed = [m for m, spec in METRICS.items() if problem_type in spec.problem_types]
            raise ConfigError(f"metric {name!r} does not apply to {problem_type}; "
                              f"choose from {', '.join(allowed)}")


def compute_metrics(names: tuple[str, ...], y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {name: METRICS[name].fn(y_true, scores) for name in names}


def direction_of(monitor: str) -> str:
    return "min" if monitor == "loss" else METRICS[monitor].direction


def flatten_residues(labels: list[np.ndarray], scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All unmasked residues of a split as one (M,) / (M, C) pair."""
    from plmforge.data.residue import IGNORE

    y, p = np.concatenate(labels), np.concatenate(scores)
    if y.dtype.kind == "f":
        keep = ~np.isnan(y) if y.ndim == 1 else ~np.isnan(y).any(axis=1)
    else:
        keep = y != IGNORE
    return y[keep].astype(np.int64) if y.dtype.kind == "i" else y[keep], p[keep]


def residue_metrics(task, labels: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Per-residue metrics over all unmasked residues, plus the mean of per-sequence accuracies."""
    y, p = flatten_residues(labels, scores)
    if task.problem_type == "residue_multi_label_classification":
        y = y.astype(np.int64)
    out = compute_metrics(task.metrics, y, p)
    if task.problem_type == "residue_single_label_classification":
        per_seq = []
        for lab, sc in zip(labels, scores, strict=True):
            yy, pp = flatten_residues([lab], [sc])
            if len(yy):
                per_seq.append(float((pp.argmax(1) == yy).mean()))
        out["accuracy_per_sequence"] = float(np.mean(per_seq)) if per_seq else float("nan")
    return out
