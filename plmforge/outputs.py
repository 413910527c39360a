"""Writing results: metrics (JSON + CSV), prediction tables, and the end-of-run summary table."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from plmforge import threshold
from plmforge.tasks import TaskSpec


def shown_path(path: str | Path) -> str:
    """A path as a person reads it: relative to the working directory when it lies inside it (the
    `runs/amp` a user typed, or sees under the folder they started the web UI in), else absolute. Compared
    as written first, then with links resolved; a working directory that is the file system's root (a
    service's) shows paths absolute."""
    import os

    path = Path(path)
    here = Path(os.path.abspath(os.getcwd()))
    if here == Path(here.anchor):
        return str(path)
    for mine, base in ((Path(os.path.abspath(path)), here), (path.resolve(), here.resolve())):
        try:
            return str(mine.relative_to(base))
        except ValueError:
            continue
    return str(path)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def metrics_blob(metrics: dict[str, float], task: TaskSpec, split: str, n: int, labels: Any = None,
                 scores: Any = None, extra: dict[str, Any] | None = None,
                 classes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Metrics with the averaging used and the problem type's extras (e.g. the confusion matrix, and with
    `classes` = data.residue_classes the symbols of its rows and columns)."""
    blob: dict[str, Any] = {"split": split, "n_samples": n, "problem_type": task.problem_type,
                            "averaging": task.problem.averaging(task.num_labels),
                            "metrics": {k: _clean(v) for k, v in metrics.items()}}
    if labels is not None and scores is not None:
        blob.update(task.problem.metric_extras(labels, scores, classes))
    blob.update(extra or {})
    return blob


def write_metrics(blob: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    """`<prefix>_metrics.json` and `<prefix>_metrics.csv` (with the 95% interval columns when the blob has
    intervals), and `<prefix>_baselines.csv` when it has baselines."""
    json_path, csv_path = out_dir / f"{prefix}_metrics.json", out_dir / f"{prefix}_metrics.csv"
    json_path.write_text(json.dumps(blob, indent=2))
    _metric_rows(csv_path, [("", blob["metrics"], blob.get("intervals"))], bool(blob.get("intervals")))
    written = [json_path, csv_path]
    if blob.get("baselines"):
        rows = [(name, b["metrics"], b.get("intervals")) for name, b in blob["baselines"].items()]
        written.append(_metric_rows(out_dir / f"{prefix}_baselines.csv", rows, bool(blob.get("intervals"))))
    return written


def _number(v: Any) -> str:
    return "" if v is None else f"{v:.6g}"


def _metric_rows(path: Path, models: list[tuple[str, dict, dict | None]], with_intervals: bool) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        named = any(name for name, _, _ in models)
        w.writerow((["model"] if named else []) + ["metric", "value"] + (["ci95_low", "ci95_high"] if with_intervals
                                                                          else []))
        for name, metrics, intervals in models:
            for k, v in metrics.items():
                ci = (intervals or {}).get(k) or {}
                w.writerow(([name] if named else []) + [k, _number(v)] +
                           ([_number(ci.get("low")), _number(ci.get("high"))] if with_intervals else []))
    return path


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


def frame_path(path: Path, suffix: str) -> Path:
    """Where the table of `suffix` goes: the main table ('') at `path`, the others next to it."""
    return path.with_name(path.stem + suffix + path.suffix) if suffix else path


FRAME_ROWS = 20_000  # proteins per block of a prediction table


def prediction_frames(problem: Any, ids: Sequence[str], sequences: Sequence[str], scores: Any, labels: Any = None,
                      classes: tuple[str, ...] | None = None, tuned: float | None = None,
                      rows: int = FRAME_ROWS) -> Iterator[dict[str, pd.DataFrame]]:
    """A prediction's tables (problem.frames, decided at a tuned threshold when given) in blocks of
    `rows` proteins: a table of millions of proteins is never built whole."""
    for a in range(0, len(ids), rows):
        part = slice(a, a + rows)
        frames = problem.frames(list(ids[part]), list(sequences[part]), scores[part],
                                None if labels is None else labels[part], classes)
        yield threshold.apply_to_frames(frames, tuned, problem, classes)


def write_frames(path: Path, blocks: Iterable[dict[str, pd.DataFrame]]) -> list[Path]:
    """The main table at `path` and further tables (residue tasks: `_sequences`) next to it, appended
    block by block to partial files that are renamed once every block is written: an error on the way
    leaves an earlier file of that name as it was."""
    partial: dict[str, Path] = {}
    try:
        for first, frames in enumerate(blocks):
            for suffix, frame in frames.items():
                target = frame_path(path, suffix)
                tmp = partial.setdefault(suffix, target.with_name(f".{target.name}.partial"))
                frame.to_csv(tmp, index=False, mode="w" if first == 0 else "a", header=first == 0)
    except BaseException:
        for tmp in partial.values():
            tmp.unlink(missing_ok=True)
        raise
    finally:
        getattr(blocks, "close", lambda: None)()  # a generator's open files and progress bars end here
    written = [frame_path(path, suffix) for suffix in partial]
    for tmp, target in zip(partial.values(), written, strict=True):
        tmp.replace(target)
    return written


def with_interval(value: float | None, interval: dict | None) -> str:
    """0.8123 [0.7701, 0.8512]"""
    if value is None or value != value:
        return "n/a (undefined on these labels)"
    text = f"{value:.4f}"
    if interval and interval.get("low") is not None:
        text += f" [{interval['low']:.4f}, {interval['high']:.4f}]"
    return text


def summary_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *[f"{k.ljust(width)} : {v}" for k, v in rows], line])
