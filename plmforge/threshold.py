"""The decision threshold of a binary classifier (of proteins or of residues), tuned on the validation split.

With unbalanced classes, "class 1 when its probability is at least 0.5" is rarely the best rule. A
run picks the threshold t that maximises `training.tune_threshold` (MCC or F1) on validation (class 1 when
p1 >= t; t is one of the validation probabilities, ties going to the value nearest 0.5), reports test
metrics at 0.5 and at t, writes t to threshold.json, and predictions use it (the 0.5 prediction stays in
a column of its own). Residue tasks tune over every unmasked validation residue. Off by default (`training.tune_threshold=none`): on a balanced set a threshold
fitted to a small validation split can do worse on test than 0.5."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

THRESHOLD_FILE = "threshold.json"
DEPENDENT = ("accuracy", "precision", "recall", "f1", "mcc", "specificity", "sensitivity")  # change with t


def applies(task: Any) -> bool:
    return task.problem.kind.name == "classes" and task.num_labels == 2


def tune_split(problem: Any, labels: Any, scores: Any, metric: str) -> tuple[float, float]:
    """`tune` over a split's predictions: proteins, or every unmasked residue of a residue task."""
    y, p = problem.flat(labels, scores)
    return tune(y, p[:, 1], metric)


def tune(labels: np.ndarray, p1: np.ndarray, metric: str) -> tuple[float, float]:
    """(threshold, validation score) maximising `metric` ('mcc' or 'f1') over every distinct p1."""
    y = np.asarray(labels).astype(bool)
    candidates, first = np.unique(p1, return_index=True)
    order = np.argsort(p1)
    y_sorted = y[order]
    # predicted positive iff p1 >= candidate: the items from the candidate's first sorted index on
    start = np.searchsorted(p1[order], candidates, side="left")
    pos_after = np.concatenate([np.cumsum(y_sorted[::-1])[::-1], [0]])
    tp = pos_after[start].astype(float)
    predicted = (len(y) - start).astype(float)
    fp = predicted - tp
    fn = y.sum() - tp
    tn = len(y) - tp - fp - fn
    if metric == "f1":
        den = 2 * tp + fp + fn
        score = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
    else:
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        score = np.divide(tp * tn - fp * fn, den, out=np.zeros_like(tp), where=den > 0)
    best = score.max()
    ties = np.flatnonzero(np.isclose(score, best, rtol=0, atol=1e-12))
    pick = ties[np.argmin(np.abs(candidates[ties] - 0.5))]
    return float(candidates[pick]), float(best)


def hard(scores: Any, threshold: float) -> Any:
    """Scores as one-hot decisions at `threshold` (for the metrics that depend on it); residue tasks'
    lists of per-protein arrays stay lists."""
    if isinstance(scores, list):
        return [hard(s, threshold) for s in scores]
    positive = (scores[:, 1] >= threshold).astype(float)
    return np.stack([1 - positive, positive], axis=1)


def metrics_at(problem: Any, names: tuple[str, ...], labels: Any, scores: np.ndarray,
               threshold: float) -> dict[str, float]:
    dependent = tuple(n for n in names if n in DEPENDENT)
    return problem.metrics(dependent, labels, hard(scores, threshold)) if dependent else {}


def write(run_dir: Path, section: dict[str, Any]) -> None:
    (run_dir / THRESHOLD_FILE).write_text(json.dumps(section, indent=2))


def read(run_dir: Path) -> float | None:
    path = run_dir / THRESHOLD_FILE
    return float(json.loads(path.read_text())["threshold"]) if path.is_file() else None


def apply_to_frames(frames: dict[str, pd.DataFrame], threshold: float | None, problem: Any,
                    classes: tuple[str, ...] | None) -> dict[str, pd.DataFrame]:
    """A prediction's tables decided at `threshold`: the main table, and a residue task's per-sequence
    strings rebuilt from the thresholded residues."""
    if threshold is None:
        return frames
    out = dict(frames)
    out[""] = apply_to_frame(frames[""], threshold)
    if "predicted_class" in out[""].columns:  # the symbols follow the decided classes
        out[""]["predicted_class"] = problem.kind.symbol_column(out[""]["prediction"], classes)
    if "_sequences" in frames and len(out[""]):
        decided = out[""].groupby("id", sort=False)["prediction"].apply(list)
        seqs = frames["_sequences"].copy()
        seqs["predicted"] = [problem.kind.compact(decided[i], classes) for i in seqs["id"]]
        out["_sequences"] = seqs
    return out


def apply_to_frame(frame: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """The prediction column decided at `threshold` (the 0.5 one kept as prediction_at_0.5)."""
    if threshold is None or "prob_1" not in frame.columns:
        return frame
    frame = frame.copy()
    at = frame.columns.get_loc("prediction")
    frame.insert(at + 1, "prediction_at_0.5", frame["prediction"])
    frame["prediction"] = (frame["prob_1"] >= threshold).astype(int)
    return frame
