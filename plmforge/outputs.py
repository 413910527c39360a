"""Writing results: metrics (JSON + CSV), prediction tables, and the end-of-run summary table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from plmforge.tasks import TaskSpec


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def metrics_blob(metrics: dict[str, float], task: TaskSpec, split: str, n: int, labels: Any = None,
                 scores: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics with the averaging used and the problem type's extras (e.g. the confusion matrix)."""
    blob: dict[str, Any] = {"split": split, "n_samples": n, "problem_type": task.problem_type,
                            "averaging": task.problem.averaging(task.num_labels),
                            "metrics": {k: _clean(v) for k, v in metrics.items()}}
    if labels is not None and scores is not None:
        blob.update(task.problem.metric_extras(labels, scores))
    blob.update(extra or {})
    return blob


def write_metrics(blob: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    """`<prefix>_metrics.json` and `<prefix>_metrics.csv`."""
    json_path, csv_path = out_dir / f"{prefix}_metrics.json", out_dir / f"{prefix}_metrics.csv"
    json_path.write_text(json.dumps(blob, indent=2))
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["metric", "value"])
        for k, v in blob["metrics"].items():
            w.writerow([k, "" if v is None else f"{v:.6g}"])
    return [json_path, csv_path]


def read_metrics(out_dir: Path, prefix: str = "test") -> dict[str, Any] | None:
    """The metrics of `<prefix>_metrics.json` (None when the file is missing or unreadable)."""
    path = out_dir / f"{prefix}_metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text()).get("metrics")
    except (json.JSONDecodeError, AttributeError):
        return None
    return metrics if isinstance(metrics, dict) else None


def write_frames(path: Path, frames: dict[str, pd.DataFrame]) -> list[Path]:
    """The main table at `path`; further tables (residue tasks: `_sequences`) next to it."""
    written = []
    for suffix, frame in frames.items():
        target = path.with_name(path.stem + suffix + path.suffix) if suffix else path
        frame.to_csv(target, index=False)
        written.append(target)
    return written


def summary_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *[f"{k.ljust(width)} : {v}" for k, v in rows], line])
