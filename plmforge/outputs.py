"""Writing results: metrics (JSON + CSV), prediction tables, and the end-of-run summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plmforge import plots
from plmforge.data.dataset import TaskSpec
from plmforge.metrics import averaging_note, confusion_matrix


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_metrics(metrics: dict[str, float], task: TaskSpec, out_dir: Path, prefix: str, n: int,
                  extra: dict[str, Any] | None = None, labels: np.ndarray | None = None,
                  scores: np.ndarray | None = None) -> dict[str, Any]:
    """`<prefix>_metrics.json` and `.csv`; the confusion matrix for single-label tasks."""
    blob: dict[str, Any] = {"split": prefix, "n_samples": n, "problem_type": task.problem_type,
                            "averaging": averaging_note(task.problem_type, task.num_labels),
                            "metrics": {k: _clean(v) for k, v in metrics.items()}}
    if task.problem_type == "single_label_classification" and labels is not None and scores is not None:
        blob["confusion_matrix"] = confusion_matrix(labels, scores).tolist()
    blob.update(extra or {})
    (out_dir / f"{prefix}_metrics.json").write_text(json.dumps(blob, indent=2))
    with (out_dir / f"{prefix}_metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["metric", "value"])
        for k, v in metrics.items():
            w.writerow([k, "" if _clean(v) is None else f"{v:.6g}"])
    return blob


def prediction_frame(ids: list[str], sequences: list[str], scores: np.ndarray, task: TaskSpec,
                     labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per sequence: id, sequence, (true label), prediction, class probabilities."""
    df = pd.DataFrame({"id": ids, "sequence": sequences})
    if task.problem_type == "regression":
        if labels is not None:
            df["label"] = labels
        df["prediction"] = scores
        return df
    if task.problem_type == "multi_label_classification":
        if labels is not None:
            df["label"] = [",".join(str(j) for j in np.flatnonzero(row)) for row in labels]
        df["prediction"] = [",".join(str(j) for j in np.flatnonzero(row >= 0.5)) for row in scores]
    else:
        if labels is not None:
            df["label"] = labels
        df["prediction"] = scores.argmax(axis=1)
    for j in range(scores.shape[1]):
        df[f"prob_{j}"] = scores[:, j]
    return df


def test_plots(task: TaskSpec, labels: np.ndarray, scores: np.ndarray, plot_dir: Path) -> list[str]:
    made = []
    if task.problem_type == "single_label_classification":
        plots.confusion(confusion_matrix(labels, scores), plot_dir / "confusion_matrix.png")
        made.append("confusion_matrix.png")
        if scores.shape[1] == 2 and len(np.unique(labels)) == 2:
            plots.roc(labels, scores, plot_dir / "roc.png")
            made.append("roc.png")
    elif task.problem_type == "regression":
        plots.scatter(labels, scores, plot_dir / "test_scatter.png")
        made.append("test_scatter.png")
    return made


def summary_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *[f"{k.ljust(width)} : {v}" for k, v in rows], line])
