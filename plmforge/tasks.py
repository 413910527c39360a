"""Problem types and what each one implies (loss, default metrics, monitor)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemType:
    name: str
    loss: str
    default_metrics: tuple[str, ...]
    default_monitor: str
    label_help: str


_TYPES = [
    ProblemType(
        "single_label_classification",
        "cross-entropy",
        ("accuracy", "precision", "recall", "f1", "mcc", "auroc"),
        "accuracy",
        "an integer class index from 0 to num_labels - 1",
    ),
    ProblemType(
        "multi_label_classification",
        "binary cross-entropy per label",
        ("f1_max", "accuracy", "precision", "recall", "f1", "auroc"),
        "f1_max",
        'comma-separated class indices, e.g. "3,17,42"',
    ),
    ProblemType(
        "regression",
        "mean squared error on standardised labels",
        ("spearman_corr", "pearson", "mse", "mae", "r2"),
        "spearman_corr",
        "a real number, e.g. 0.75",
    ),
]

PROBLEM_TYPES: dict[str, ProblemType] = {t.name: t for t in _TYPES}


def is_classification(problem_type: str) -> bool:
    return problem_type != "regression"
