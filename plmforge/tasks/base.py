"""A problem type is one object that the rest of plmforge asks about labels: how to parse them, how
to turn them into training targets aligned with the model's tokens, how to pad and collate them, the
loss and scores, how one sample's output is cut from a batch, metric inputs, units, prediction
tables and plots. Adding a problem type is one subclass plus its registration and tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from plmforge.errors import ConfigError, DataError
from plmforge.metrics import check_metrics, compute_metrics
from plmforge.registry import Registry
from plmforge.tasks.kinds import LabelKind, LabelSummary
from plmforge.tasks.scaling import LabelScaler

Where = Callable[[int, str], dict]  # (row, column) -> DataError location fields


def label_blocks(labels: Any, proteins: int = 10_000) -> Any:
    """The labels of `proteins` samples at a time, as lists: labels on disk (data.storage) are read a block
    at a time and never held whole."""
    for a in range(0, len(labels), proteins):
        yield [labels[i] for i in range(a, min(len(labels), a + proteins))]


class LabelFormat(Protocol):
    """How labels are written (the data config's fields that label parsing reads)."""

    residue_classes: tuple[str, ...] | None  # residue tasks: symbols in class order, e.g. N,P
    label_format: str  # residue tasks: 'values' (one per residue) or 'positions' (1-based, = 1)


class ProblemType:
    """Shared behaviour; `per_residue` subclasses override the level-specific parts."""

    per_residue: bool = False

    def __init__(self, name: str, kind: LabelKind, *, metrics: tuple[str, ...] | None = None,
                 monitor: str | None = None, label_help: str | None = None, loss_name: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self._metrics, self._monitor = metrics, monitor  # defaults other than the label kind's
        self._label_help, self._loss_name = label_help, loss_name

    def __repr__(self) -> str:
        return f"ProblemType({self.name!r})"

    # ---- description and defaults ----------------------------------------------------------------
    @property
    def label_help(self) -> str:
        return self._label_help or self.kind.label_help

    @property
    def loss_name(self) -> str:
        return self._loss_name or self.kind.loss_name

    @property
    def default_metrics(self) -> tuple[str, ...]:
        return self._metrics or self.kind.default_metrics

    @property
    def default_monitor(self) -> str:
        return self._monitor or self.kind.default_monitor

    @property
    def default_normalisation(self) -> str:
        return "standard" if self.kind.scaled else "none"

    def check_metrics(self, names: tuple[str, ...]) -> None:
        check_metrics(names, self.kind.name, self.name)

    def resolve_num_labels(self, configured: int | None, classes: tuple[str, ...] | None,
                           catalogue: int | None, train_labels: list | None,
                           train_classes: set[int] | None = None) -> int:
        """`train_classes`: the classes in train when the labels themselves are not at hand (a file read
        in chunks)."""
        if self.kind.num_outputs(2) == 1:
            return 1  # one value per item
        if configured and classes and configured != len(classes):
            raise ConfigError(f"data.num_labels is {configured} but data.residue_classes names {len(classes)} classes "
                              f"({','.join(classes)}): give one symbol per class, or leave data.num_labels unset")
        n = configured or (len(classes) if classes else None) or catalogue or \
            (self._inferred(train_labels) if train_classes is None else self.infer_num_labels(train_classes))
        if n < self.kind.min_labels:
            raise ConfigError(f"data.num_labels must be >= {self.kind.min_labels} for {self.name}, got {n}")
        return n

    def _inferred(self, labels: list | None) -> int:
        if not labels:
            raise ConfigError("data.num_labels is not set and cannot be read from the data")
        return self.infer_num_labels({c for x in labels for c in self.classes_in(x)})

    def infer_num_labels(self, classes: set[int]) -> int:
        """Classes 0..top from the class indices found in train; an index far beyond the number of
        distinct classes is refused (checked before anything of that size is allocated)."""
        import logging

        top, distinct = max(classes, default=0), len(classes)
        if top + 1 > 10 * distinct + 100:
            from plmforge.errors import DataError

            raise DataError(f"class index {top} would make {top + 1} classes, but the training labels hold only "
                            f"{distinct} distinct classes", column="label",
                            hint="class labels are whole numbers 0..K-1: renumber them, or set data.num_labels if "
                                 "classes are really absent from train")
        logging.getLogger("plmforge").warning(
            "data.num_labels is not set: using %d (the largest class index in train is %d); set data.num_labels "
            "if some classes are absent from train", top + 1, top)
        return top + 1

    def num_outputs(self, num_labels: int) -> int:
        return self.kind.num_outputs(num_labels)

    # ---- labels as read ---------------------------------------------------------------------------
    def parse_labels(self, values: list, sequences: list[str], masks: list | None, cfg: LabelFormat,
                     where: Where, column: str, mask_column: str | None) -> list:
        raise NotImplementedError

    def classes_in(self, label: Any) -> list[int]:
        return self.kind.classes_in(label)

    def check_label_range(self, labels: list, num_labels: int, rows: list[str], column: str) -> None:
        for i, label in enumerate(labels):
            for c in self.classes_in(label):
                if c >= num_labels:
                    raise DataError(f"class index {c} is out of range for num_labels={num_labels} "
                                    f"(allowed 0..{num_labels - 1})", file=rows[i], column=column,
                                    hint="fix the label, or set data.num_labels to the real number of classes")

    def stratify(self, labels: list | None) -> np.ndarray | None:
        """Labels to stratify a carved validation split by, or None."""
        return None

    def cv_strata(self, labels: list | None, folds: int) -> np.ndarray | None:
        """What cross-validation folds are stratified by (one value per sample), or None."""
        return None

    def scaler_values(self, labels: list) -> np.ndarray:
        """The training values normalisation statistics are fitted on."""
        raise NotImplementedError

    def scaler_parts(self, labels: Any, proteins: int = 10_000) -> Any:
        """The training values in parts of `proteins` samples (one part for per-protein labels)."""
        yield self.scaler_values(labels)

    def fit_scaler(self, normalisation: str, train_labels: list) -> LabelScaler:
        if not self.kind.scaled:
            return LabelScaler("none")
        return LabelScaler.fit_parts(normalisation, lambda: self.scaler_parts(train_labels))

    def summary(self, labels: list, num_labels: int) -> LabelSummary:
        raise NotImplementedError

    def merge_summaries(self, parts: list[LabelSummary], num_labels: int) -> LabelSummary:
        """One summary of a split read in parts."""
        return self.kind.merge(parts, num_labels)

    # ---- training targets and batches -------------------------------------------------------------
    def targets(self, labels: list, special: list[np.ndarray], num_labels: int,
                scaler: LabelScaler) -> tuple[np.ndarray | list[np.ndarray], int]:
        """Targets per sample (aligned to tokens for residue tasks) and how many labels truncation dropped."""
        raise NotImplementedError

    def collate_labels(self, labels: list[np.ndarray], width: int) -> torch.Tensor:
        raise NotImplementedError

    def sample_output(self, logits: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        """A residue problem's sample logits from a batch row: (n_residues, C). (Sequence problems keep
        the batch's (B, C) logits as they are: predict_encoded gathers them into one (N, C) tensor.)"""
        raise NotImplementedError

    def eval_targets(self, targets: np.ndarray | list[np.ndarray], special: list[np.ndarray]) -> Any:
        """The targets that sample outputs are compared with."""
        raise NotImplementedError

    def join(self, items: Any) -> Any:
        """A split's outputs -> one array: sequences stack per-sample arrays (an (N, C) tensor is kept),
        residues concatenate them."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.kind.loss(logits, targets)

    def loss_units(self, targets: torch.Tensor) -> float:
        return self.kind.loss_units(targets)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return self.kind.scores(logits)

    def split_loss(self, outputs: Any, targets: Any) -> float:
        logits = self.join(outputs)
        return float(self.loss(logits, torch.as_tensor(self.join_targets(targets), dtype=self.kind.target_dtype)))

    def join_targets(self, targets: Any) -> np.ndarray:
        raise NotImplementedError

    def split_scores(self, outputs: Any, scaler: LabelScaler) -> Any:
        raise NotImplementedError

    def user_targets(self, targets: Any, scaler: LabelScaler) -> Any:
        raise NotImplementedError

    # ---- judging and reporting --------------------------------------------------------------------
    def flat(self, labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        """Whole-split metric inputs (labels, scores) in the user's units."""
        raise NotImplementedError

    def metrics(self, names: tuple[str, ...], labels: Any, scores: Any) -> dict[str, float]:
        y, p = self.flat(labels, scores)
        return compute_metrics(names, y, p)

    def named(self, classes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """The symbols that name this problem's classes in its outputs (plots, metric files, prediction
        tables): data.residue_classes for residue tasks, whose labels are written with them; None here."""
        return None

    def metric_extras(self, labels: Any, scores: Any, classes: tuple[str, ...] | None = None) -> dict[str, Any]:
        return self.kind.metric_extras(*self.flat(labels, scores), self.named(classes))

    def averaging(self, num_labels: int) -> str:
        return self.kind.averaging(num_labels)

    def plots(self, labels: Any, scores: Any, plot_dir: Path, classes: tuple[str, ...] | None = None) -> list[str]:
        """The problem's plots in `plot_dir` (their file names); `classes`: data.residue_classes."""
        return self.kind.plots(*self.flat(labels, scores), plot_dir, self.named(classes))

    def frames(self, ids: list[str], sequences: list[str], scores: Any, labels: Any = None,
               classes: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
        """Prediction tables by file-name suffix: '' is the main table."""
        raise NotImplementedError


PROBLEM_TYPES: Registry[ProblemType] = Registry("problem type")


def register_problem_type(problem: ProblemType) -> ProblemType:
    return PROBLEM_TYPES.register(problem.name, problem)


@dataclass(frozen=True)
class TaskSpec:
    """What is predicted and how it is judged, after config, catalogue and data have been combined."""

    problem_type: str
    num_labels: int
    normalisation: str
    metrics: tuple[str, ...]
    monitor: str
    direction: str

    @property
    def problem(self) -> ProblemType:
        return PROBLEM_TYPES[self.problem_type]

    @property
    def num_outputs(self) -> int:
        return self.problem.num_outputs(self.num_labels)
