"""The test metrics a scientist can believe: bootstrap intervals for the PLM's metrics, the baselines'
metrics with theirs, and one verdict on whether the PLM beat the best baseline beyond the interval
(paired bootstrap: the same resampled proteins for both)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from plmforge.baselines import fit_baselines
from plmforge.bootstrap import Resamples, intervals, resampled_metrics
from plmforge.metrics import METRICS

log = logging.getLogger("plmforge")
LEVEL = 0.95


def judged_metric(task: Any) -> str:
    """The metric verdicts are given on: the monitored one (the first metric when that is the loss)."""
    return task.monitor if task.monitor != "loss" else task.metrics[0]


def compare(task: Any, splits: dict[str, Any] | None, labels: Any, scores: Any, resamples: int, seed: int,
            baselines: bool, zero_shot: dict[str, Any] | None = None) -> dict[str, Any]:
    """{'intervals': ..., 'baselines': ..., 'verdict': ...} for a test split's predictions; `splits` (the
    run's Records) are needed for baselines only; `zero_shot` (per split, a zero-shot score per record)
    adds the zero-shot and augmented baselines."""
    out: dict[str, Any] = {}
    counts = Resamples(len(labels), resamples, seed) if resamples else None
    names = tuple(task.metrics)
    plm_values = resampled_metrics(task.problem, names, labels, scores, counts) if counts is not None else None
    if plm_values is not None:
        out["intervals"] = {k: v.to_dict() for k, v in intervals(plm_values, LEVEL).items()}
        out["bootstrap"] = {"resamples": resamples, "seed": seed, "level": LEVEL, "unit": "protein",
                            "method": "percentile"}
    if not baselines or splits is None:
        return out
    section: dict[str, Any] = {}
    values: dict[str, dict[str, np.ndarray]] = {}
    for b in fit_baselines(task, splits, labels, scores, seed, zero_shot):
        metrics = task.problem.metrics(names, labels, b.scores)
        entry: dict[str, Any] = {"description": b.description, "metrics": {k: _clean(v) for k, v in metrics.items()},
                                 "settings": _plain(b.settings)}
        if counts is not None:
            values[b.name] = resampled_metrics(task.problem, names, labels, b.scores, counts)
            entry["intervals"] = {k: v.to_dict() for k, v in intervals(values[b.name], LEVEL).items()}
        section[b.name] = entry
    out["baselines"] = section
    out["verdict"] = _verdict(task, section, plm_values, values)
    return out


def _verdict(task: Any, section: dict[str, Any], plm: dict[str, np.ndarray] | None,
             values: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    metric = judged_metric(task)
    sign = 1.0 if METRICS[metric].direction == "max" else -1.0
    scored = {k: v["metrics"].get(metric) for k, v in section.items() if v["metrics"].get(metric) is not None}
    if not scored:
        return {"metric": metric, "text": f"no baseline has a {metric} on this test set"}
    best = max(scored, key=lambda k: sign * scored[k])
    verdict: dict[str, Any] = {"metric": metric, "best_baseline": best}
    if plm is None:
        verdict["text"] = f"best baseline on {metric}: {best} ({scored[best]:.4f}); no intervals (output.bootstrap=0)"
        return verdict
    diff = intervals({metric: plm[metric] - values[best][metric]}, LEVEL)[metric]
    verdict["difference_interval"] = diff.to_dict()
    if diff.low is None:
        verdict["outcome"], how = "undefined", "cannot be told apart (the metric is undefined on the resamples)"
    elif (sign > 0 and diff.low > 0) or (sign < 0 and diff.high < 0):
        verdict["outcome"], how = "better", "better beyond the 95% interval"
    elif (sign > 0 and diff.high < 0) or (sign < 0 and diff.low > 0):
        verdict["outcome"], how = "worse", "worse beyond the 95% interval"
    else:
        verdict["outcome"], how = "not distinguishable", "not distinguishable from it (the interval holds 0)"
    if diff.low is not None:
        verdict["text"] = (f"PLM - {best} on {metric}: [{diff.low:+.3f}, {diff.high:+.3f}] (paired bootstrap, 95%): "
                           f"{how}")
    else:
        verdict["text"] = f"PLM vs {best} on {metric}: {how}"
    return verdict


def _clean(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (np.floating, float)):
        return _clean(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v
