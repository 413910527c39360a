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
    residue: bool = False  # one prediction per residue instead of per sequence


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

_TYPES += [
    ProblemType(
        "residue_single_label_classification",
        "cross-entropy over unmasked residues",
        ("accuracy", "precision", "recall", "f1", "mcc", "auroc", "auprc", "specificity"),
        "mcc",
        'one class per residue: a symbol string such as "NNPPN" (with data.residue_classes), or a list',
        residue=True,
    ),
    ProblemType(
        "residue_multi_label_classification",
        "binary cross-entropy per residue and label",
        ("f1", "precision", "recall", "auroc", "auprc"),
        "f1",
        "per residue, a list of class indices (JSON list of lists)",
        residue=True,
    ),
    ProblemType(
        "residue_regression",
        "mean squared error over unmasked residues (standardised)",
        ("spearman_corr", "pearson", "mse", "mae", "r2"),
        "spearman_corr",
        "a JSON list of numbers, one per residue",
        residue=True,
    ),
]

PROBLEM_TYPES: dict[str, ProblemType] = {t.name: t for t in _TYPES}


def is_classification(problem_type: str) -> bool:
    return not problem_type.endswith("regression")


def is_residue(problem_type: str) -> bool:
    return PROBLEM_TYPES[problem_type].residue


def base_type(problem_type: str) -> str:
    """The sequence-level problem type whose loss and metrics a residue type uses per residue."""
    return problem_type.removeprefix("residue_")
