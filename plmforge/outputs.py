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
from plmforge.metrics import averaging_note, confusion_matrix, flatten_residues
from plmforge.tasks import base_type, is_residue


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
    if task.problem_type.endswith("single_label_classification") and labels is not None and scores is not None:
        labels, scores = _flat(task, labels, scores)
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


def _flat(task: TaskSpec, labels, scores):  # type: ignore[no-untyped-def]
    """Residue tasks: all unmasked residues as one array pair; sequence tasks unchanged."""
    if is_residue(task.problem_type):
        return flatten_residues(labels, scores)
    return labels, scores


def test_plots(task: TaskSpec, labels: np.ndarray, scores: np.ndarray, plot_dir: Path) -> list[str]:
    made = []
    labels, scores = _flat(task, labels, scores)
    kind = base_type(task.problem_type)
    if kind == "single_label_classification":
        plots.confusion(confusion_matrix(labels, scores), plot_dir / "confusion_matrix.png")
        made.append("confusion_matrix.png")
        if scores.shape[1] == 2 and len(np.unique(labels)) == 2:
            plots.roc(labels, scores, plot_dir / "roc.png")
            plots.precision_recall(labels, scores, plot_dir / "precision_recall.png")
            made += ["roc.png", "precision_recall.png"]
    elif kind == "regression":
        plots.scatter(labels, scores, plot_dir / "test_scatter.png")
        made.append("test_scatter.png")
    return made


def residue_frames(ids: list[str], sequences: list[str], scores: list[np.ndarray], task: TaskSpec,
                   labels: list[np.ndarray] | None = None, classes: tuple[str, ...] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Residue tasks: a long table (id, position, residue, [label], prediction, probabilities) and one
    row per sequence with the predicted labels as a compact string (symbols if data.residue_classes)."""
    from plmforge.data.residue import IGNORE

    rows, compact = [], []
    kind = base_type(task.problem_type)
    for k, (ident, seq, sc) in enumerate(zip(ids, sequences, scores, strict=True)):
        n = len(sc)
        frame = {"id": [ident] * n, "position": np.arange(1, n + 1), "residue": list(seq[:n])}
        if labels is not None:
            lab = labels[k]
            frame["label"] = [None if (lab.dtype.kind == "i" and v == IGNORE) else v for v in lab.tolist()] \
                if lab.ndim == 1 else [",".join(map(str, np.flatnonzero(r == 1))) for r in lab]
        if kind == "regression":
            frame["prediction"] = sc
            text = ";".join(f"{v:.4g}" for v in sc)
        elif kind == "multi_label_classification":
            frame["prediction"] = [",".join(map(str, np.flatnonzero(r >= 0.5))) for r in sc]
            text = ";".join(frame["prediction"])
        else:
            pred = sc.argmax(1)
            frame["prediction"] = pred
            text = "".join(classes[c] if classes else str(c) for c in pred)
        if kind != "regression":
            for j in range(sc.shape[1]):
                frame[f"prob_{j}"] = sc[:, j]
        rows.append(pd.DataFrame(frame))
        compact.append({"id": ident, "sequence": seq, "predicted": text, "n_residues_predicted": n})
    long = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return long, pd.DataFrame(compact)


def write_predictions(path: Path, ids: list[str], sequences: list[str], scores, task: TaskSpec,  # type: ignore[no-untyped-def]
                      labels=None, classes: tuple[str, ...] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Sequence tasks: one CSV. Residue tasks: the long per-residue CSV at `path` and the compact
    per-sequence CSV next to it (`<name>_sequences.csv`)."""
    if is_residue(task.problem_type):
        long, compact = residue_frames(ids, sequences, scores, task, labels, classes)
        long.to_csv(path, index=False)
        compact.to_csv(path.with_name(path.stem + "_sequences.csv"), index=False)
    else:
        prediction_frame(ids, sequences, scores, task, labels).to_csv(path, index=False)


def summary_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *[f"{k.ljust(width)} : {v}" for k, v in rows], line])
