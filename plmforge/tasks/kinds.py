"""What one label is: a class index, a set of classes, or a real number. A label kind owns everything
that does not depend on whether a label belongs to a whole sequence or to one residue: parsing one
value, the training target and its padding value, the loss, the scores, metric inputs, the columns of
a prediction table, label summaries, plots and the averaging note. Problem types (sequence.py,
residue.py) combine a kind with a level."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from plmforge.errors import DataError
from plmforge.metrics import MULTI, REG, SINGLE, confusion_matrix

IGNORE = -100  # target of a class-index position that does not count (special token, padding, mask)
MISSING = {"", "nan", "none", "null", "na", "n/a"}


def class_symbol(index: Any, classes: tuple[str, ...] | None) -> str:
    """A class as the user named it: its symbol in data.residue_classes (H for 0 with H,E,L), else its
    number (also for an index beyond the symbols given)."""
    c = int(index)
    return classes[c] if classes and 0 <= c < len(classes) else str(c)


def class_names(classes: tuple[str, ...] | None, k: int) -> list[str] | None:
    """Classes 0..k-1 by their symbols (class_symbol), or None without symbols."""
    return [class_symbol(c, classes) for c in range(k)] if classes else None


def is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING


@dataclass(frozen=True)
class LabelSummary:
    """A split's labels at a glance: `counts` per class (classes), or the `values` (numbers)."""

    text: str
    units: int  # labelled sequences, or labelled residues for residue tasks
    masked: int = 0
    counts: dict[int, int] | None = None
    values: np.ndarray | None = None


class LabelKind:
    name: str  # the metric registry's kind
    sequence_type: str  # the problem type that predicts one such label per sequence
    label_help: str
    loss_name: str
    default_metrics: tuple[str, ...]
    default_monitor: str
    target_dtype: torch.dtype = torch.float32
    pad: float = float("nan")  # target value at positions that do not count
    scaled: bool = False  # targets are normalised with training statistics
    min_labels: int = 1
    stratifiable: bool = False  # a carved validation split keeps the class balance

    def parse(self, value: object, err: dict) -> Any:
        raise NotImplementedError

    def classes_in(self, label: Any) -> list[int]:
        return []

    def num_outputs(self, num_labels: int) -> int:
        return num_labels

    def stack(self, labels: list, num_labels: int) -> np.ndarray:
        """Parsed labels of one split -> training targets (N,) or (N, C)."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_units(self, targets: torch.Tensor) -> float:
        """What the loss averages over in `targets` (the targets that count), so that the losses of the parts
        of a batch, weighted by their units, add up to the batch's loss."""
        return float((~torch.isnan(targets.float())).sum())

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def counted(self, targets: np.ndarray) -> np.ndarray:
        """(M,) True where a target counts (not padding, special or masked)."""
        return ~np.isnan(targets) if targets.ndim == 1 else ~np.isnan(targets).any(axis=1)

    def metric_labels(self, targets: np.ndarray) -> np.ndarray:
        return targets

    def label_column(self, targets: np.ndarray) -> list:
        return list(targets)

    def prediction_column(self, scores: np.ndarray) -> list:
        raise NotImplementedError

    def probability_columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {f"prob_{j}": scores[:, j] for j in range(scores.shape[1])}

    def compact(self, predictions: list, classes: tuple[str, ...] | None) -> str:
        return ";".join(map(str, predictions))

    def symbol_column(self, values: Any, classes: tuple[str, ...] | None) -> list | None:
        """Class indices (None where nothing counts) as the classes' symbols, or None when the kind has
        no named classes (no symbols given, or labels that are not one class each)."""
        return None

    def summary(self, targets: np.ndarray, num_labels: int, masked: int = 0) -> LabelSummary:
        raise NotImplementedError

    def from_counts(self, counts: np.ndarray, units: int, masked: int) -> LabelSummary:
        """The summary of `units` labelled items with `counts` per class (class kinds)."""
        raise NotImplementedError

    def merge(self, parts: list[LabelSummary], num_labels: int) -> LabelSummary:
        """One summary of several parts of a split (a file read in chunks)."""
        masked = sum(p.masked for p in parts)
        if any(p.values is not None for p in parts):
            return self.summary(np.concatenate([p.values for p in parts if p.values is not None]), num_labels, masked)
        counts = np.zeros(num_labels, dtype=np.int64)
        for p in parts:
            for c, n in (p.counts or {}).items():
                counts[c] += n
        return self.from_counts(counts, sum(p.units for p in parts), masked)

    def metric_extras(self, labels: np.ndarray, scores: np.ndarray,
                      classes: tuple[str, ...] | None = None) -> dict[str, Any]:
        return {}

    def plots(self, labels: np.ndarray, scores: np.ndarray, plot_dir: Path,
              classes: tuple[str, ...] | None = None) -> list[str]:
        """`classes`: the symbols that name the classes on the plots (numbers without them)."""
        return []

    def averaging(self, num_labels: int) -> str:
        raise NotImplementedError


def _class_index(value: object, err: dict, hint: str) -> int:
    if isinstance(value, bool):
        raise DataError(f"label {value!r} is not a class index", hint=hint, **err)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise DataError(f"label {value!r} is not a class index", hint=hint, **err) from None
    if not number.is_integer() or number < 0:
        raise DataError(f"label {value!r} is not a class index (a whole number >= 0)", hint=hint, **err)
    return int(number)


class Classes(LabelKind):
    name = SINGLE
    sequence_type = "single_label_classification"
    label_help = "an integer class index from 0 to num_labels - 1"
    loss_name = "cross-entropy"
    default_metrics = ("accuracy", "precision", "recall", "f1", "mcc", "auroc")
    default_monitor = "accuracy"
    target_dtype = torch.long
    pad = IGNORE
    min_labels = 2
    stratifiable = True

    def parse(self, value: object, err: dict) -> int:
        return _class_index(value, err, "single-label classes are integers 0, 1, 2, ...")

    def classes_in(self, label: Any) -> list[int]:
        return [] if int(label) == IGNORE else [int(label)]

    def stack(self, labels: list, num_labels: int) -> np.ndarray:
        return np.asarray(labels, dtype=np.int64)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # logits (..., C), targets (...) holding IGNORE where nothing counts
        logits = logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.long().reshape(-1), ignore_index=IGNORE)

    def loss_units(self, targets: torch.Tensor) -> float:
        return float((targets.long() != IGNORE).sum())

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=-1)

    def counted(self, targets: np.ndarray) -> np.ndarray:
        return targets != IGNORE

    def prediction_column(self, scores: np.ndarray) -> list:
        return list(scores.argmax(axis=1))

    def compact(self, predictions: list, classes: tuple[str, ...] | None) -> str:
        return "".join(class_symbol(c, classes) for c in predictions)

    def symbol_column(self, values: Any, classes: tuple[str, ...] | None) -> list | None:
        if not classes:
            return None
        return [None if is_missing(v) or int(v) == IGNORE else class_symbol(v, classes) for v in values]

    def summary(self, targets: np.ndarray, num_labels: int, masked: int = 0) -> LabelSummary:
        return self.from_counts(np.bincount(targets, minlength=num_labels), len(targets), masked)

    def from_counts(self, counts: np.ndarray, units: int, masked: int) -> LabelSummary:
        text = ", ".join(f"{c}: {n}" for c, n in enumerate(counts))
        return LabelSummary(text, units, masked, counts={c: int(n) for c, n in enumerate(counts)})

    def metric_extras(self, labels: np.ndarray, scores: np.ndarray,
                      classes: tuple[str, ...] | None = None) -> dict[str, Any]:
        extras: dict[str, Any] = {"confusion_matrix": confusion_matrix(labels, scores).tolist()}
        if classes:  # the matrix's rows (true) and columns (predicted) in class order, by symbol
            extras["confusion_matrix_classes"] = class_names(classes, scores.shape[1])
        return extras

    def plots(self, labels: np.ndarray, scores: np.ndarray, plot_dir: Path,
              classes: tuple[str, ...] | None = None) -> list[str]:
        from plmforge import plots

        names = class_names(classes, scores.shape[1])
        plots.confusion(confusion_matrix(labels, scores), plot_dir / "confusion_matrix.png", classes=names)
        made = ["confusion_matrix.png"]
        if scores.shape[1] == 2 and len(np.unique(labels)) == 2:
            positive = names[1] if names else None
            plots.roc(labels, scores, plot_dir / "roc.png", positive=positive)
            plots.precision_recall(labels, scores, plot_dir / "precision_recall.png", positive=positive)
            made += ["roc.png", "precision_recall.png"]
        return made

    def averaging(self, num_labels: int) -> str:
        if num_labels == 2:
            return "binary: precision/recall/f1/specificity/auroc for class 1"
        return "multi-class: precision/recall/f1/specificity macro over classes; auroc one-vs-rest macro"


class MultiLabel(LabelKind):
    name = MULTI
    sequence_type = "multi_label_classification"
    label_help = 'comma-separated class indices, e.g. "3,17,42"'
    loss_name = "binary cross-entropy per label"
    default_metrics = ("f1_max", "accuracy", "precision", "recall", "f1", "auroc")
    default_monitor = "f1_max"

    def parse(self, value: object, err: dict) -> list[int]:
        hint = 'multi-label labels are comma-separated class indices, e.g. "3,17,42"'
        if isinstance(value, (list, tuple, np.ndarray)):
            parts = list(value)
        else:
            text = str(value).strip().strip("[]")
            parts = [p.strip() for p in re.split(r"[,;]", text)]
            if any(p == "" for p in parts):
                raise DataError(f"malformed multi-label string {value!r} (empty item)", hint=hint, **err)
        classes = [_class_index(p, err, hint) for p in parts]
        if len(set(classes)) != len(classes):
            raise DataError(f"multi-label string {value!r} repeats a class", hint=hint, **err)
        return sorted(classes)

    def classes_in(self, label: Any) -> list[int]:
        return [] if label is None else [int(c) for c in label]

    def stack(self, labels: list, num_labels: int) -> np.ndarray:
        out = np.zeros((len(labels), num_labels), dtype=np.float32)
        for i, classes in enumerate(labels):
            if classes is None:
                out[i] = np.nan  # a masked residue
            else:
                out[i, classes] = 1.0
        return out

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keep = ~torch.isnan(targets)
        return F.binary_cross_entropy_with_logits(logits.float()[keep], targets[keep].float())

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())

    def metric_labels(self, targets: np.ndarray) -> np.ndarray:
        return targets.astype(np.int64)

    def label_column(self, targets: np.ndarray) -> list:
        return [",".join(str(j) for j in np.flatnonzero(row == 1)) for row in targets]

    def prediction_column(self, scores: np.ndarray) -> list:
        return [",".join(str(j) for j in np.flatnonzero(row >= 0.5)) for row in scores]

    def summary(self, targets: np.ndarray, num_labels: int, masked: int = 0) -> LabelSummary:
        return self.from_counts(targets.sum(axis=0).astype(int), len(targets), masked)

    def from_counts(self, counts: np.ndarray, units: int, masked: int) -> LabelSummary:
        return LabelSummary(f"{counts.sum() / max(units, 1):.2f} classes per item on average", units, masked,
                            counts={c: int(n) for c, n in enumerate(counts)})

    def averaging(self, num_labels: int) -> str:
        return ("multi-label: accuracy = exact match; precision/recall/f1/mcc micro over (protein, label) "
                "pairs at threshold 0.5; auroc macro over labels with both classes; f1_max protein-centric")


class Values(LabelKind):
    name = REG
    sequence_type = "regression"
    label_help = "a real number, e.g. 0.75"
    loss_name = "mean squared error on standardised labels"
    default_metrics = ("spearman_corr", "pearson", "mse", "mae", "r2")
    default_monitor = "spearman_corr"
    scaled = True

    def parse(self, value: object, err: dict) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DataError(f"label {value!r} is not a number", hint="regression labels are real numbers",
                            **err) from None
        if not math.isfinite(number):
            raise DataError(f"label {value!r} is not finite", hint="use a finite real number", **err)
        return number

    def num_outputs(self, num_labels: int) -> int:
        return 1

    def stack(self, labels: list, num_labels: int) -> np.ndarray:
        return np.asarray(labels, dtype=np.float64)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = logits.float().squeeze(-1)
        keep = ~torch.isnan(targets)
        return F.mse_loss(values[keep], targets[keep].float())

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().squeeze(-1)

    def prediction_column(self, scores: np.ndarray) -> list:
        return list(scores)

    def probability_columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def compact(self, predictions: list, classes: tuple[str, ...] | None) -> str:
        return ";".join(f"{v:.4g}" for v in predictions)

    def summary(self, targets: np.ndarray, num_labels: int, masked: int = 0) -> LabelSummary:
        arr = np.asarray(targets, dtype=float)
        text = f"mean {arr.mean():.4g}, sd {arr.std():.4g}, range [{arr.min():.4g}, {arr.max():.4g}]"
        return LabelSummary(text, len(arr), masked, values=arr)

    def plots(self, labels: np.ndarray, scores: np.ndarray, plot_dir: Path,
              classes: tuple[str, ...] | None = None) -> list[str]:
        from plmforge import plots

        plots.scatter(labels, scores, plot_dir / "test_scatter.png")
        return ["test_scatter.png"]

    def averaging(self, num_labels: int) -> str:
        return "regression metrics in the label's original units"
