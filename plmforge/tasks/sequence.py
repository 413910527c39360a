"""Problem types with one label per sequence: single-label, multi-label, regression."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from plmforge.errors import ConfigError, DataError
from plmforge.tasks.base import LabelFormat, ProblemType, Where, register_problem_type
from plmforge.tasks.kinds import Classes, LabelSummary, MultiLabel, Values, is_missing
from plmforge.tasks.scaling import LabelScaler


class SequenceProblem(ProblemType):
    per_residue = False

    def parse_labels(self, values: list, sequences: list[str], masks: list | None, cfg: LabelFormat,
                     where: Where, column: str, mask_column: str | None) -> list:
        if masks is not None:
            raise ConfigError(f"data.mask_column masks residues, but {self.name} has one label per sequence: "
                              "remove data.mask_column, or use a residue problem type")
        out = []
        for i, value in enumerate(values):
            if is_missing(value):
                raise DataError("missing label", hint=f"fill in the label ({self.label_help}) or remove the row",
                                **where(i, column))
            out.append(self.kind.parse(value, where(i, column)))
        return out

    def stratify(self, labels: list | None) -> np.ndarray | None:
        if labels is None or not self.kind.stratifiable:
            return None
        counts = np.bincount(np.asarray(labels))
        present = counts[counts > 0]
        return np.asarray(labels) if present.min() >= 2 else None

    def cv_strata(self, labels: list | None, folds: int) -> np.ndarray | None:
        """Classes: the class; real values: quantile bins (about two folds' worth of samples per bin,
        at most 10 bins), so every fold spans the range of values."""
        if labels is None:
            return None
        if self.kind.stratifiable:
            return np.asarray(labels)
        if self.kind.name == "values":
            values = self.kind.stack(labels, 1).reshape(len(labels), -1)[:, 0]
            bins = int(min(10, max(1, len(values) // (2 * folds))))
            if bins < 2:
                return None
            edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
            return np.searchsorted(edges, values, side="right")
        return None

    def scaler_values(self, labels: list) -> np.ndarray:
        return self.kind.stack(labels, 1)

    def summary(self, labels: list, num_labels: int) -> LabelSummary:
        return self.kind.summary(self.kind.stack(labels, num_labels), num_labels)

    def targets(self, labels: list, special: list[np.ndarray], num_labels: int,
                scaler: LabelScaler) -> tuple[np.ndarray, int]:
        targets = self.kind.stack(labels, num_labels)
        if self.kind.scaled:
            targets = scaler.transform(targets).astype(np.float32)
        return targets, 0

    def collate_labels(self, labels: list[np.ndarray], width: int) -> torch.Tensor:
        return torch.as_tensor(np.stack([np.asarray(y) for y in labels]), dtype=self.kind.target_dtype)

    def eval_targets(self, targets: Any, special: list[np.ndarray]) -> Any:
        return targets

    def join(self, items: Any) -> Any:
        if isinstance(items, torch.Tensor):  # predict_encoded's (N, C) outputs
            return items
        if len(items) and isinstance(items[0], torch.Tensor):
            return torch.stack(items)
        return np.stack(items)

    def join_targets(self, targets: Any) -> np.ndarray:
        return np.asarray(targets)

    def split_scores(self, outputs: Any, scaler: LabelScaler) -> np.ndarray:
        scores = self.scores(self.join(outputs)).numpy()  # (N, C), or (N,) for values
        return scaler.inverse(scores) if self.kind.scaled else scores

    def user_targets(self, targets: Any, scaler: LabelScaler) -> Any:
        return scaler.inverse(targets) if self.kind.scaled else targets

    def flat(self, labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        return labels, scores

    def frames(self, ids: list[str], sequences: list[str], scores: Any, labels: Any = None,
               classes: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
        df = pd.DataFrame({"id": ids, "sequence": sequences})
        if labels is not None:
            df["label"] = self.kind.label_column(np.asarray(labels))
        df["prediction"] = self.kind.prediction_column(scores)
        for name, column in self.kind.probability_columns(scores).items():
            df[name] = column
        return {"": df}


SINGLE_LABEL = register_problem_type(SequenceProblem("single_label_classification", Classes()))
MULTI_LABEL = register_problem_type(SequenceProblem("multi_label_classification", MultiLabel()))
REGRESSION = register_problem_type(SequenceProblem("regression", Values()))
