"""`plmforge data check` and `data list`: validate and summarise a dataset, list the catalogue."""

from __future__ import annotations

import numpy as np

from plmforge.config import load_config
from plmforge.data.catalogue import catalogue
from plmforge.data.dataset import load_data
from plmforge.tasks import is_residue


def check_dataset(overrides: list[str]) -> str:
    """Read and validate every split exactly as training would, and describe what was found."""
    config = load_config(None, overrides)
    data = load_data(config.data, config.training)
    task = data.task
    lines = [f"dataset: {data.source}", f"problem type: {task.problem_type}  (labels: {task.num_labels})",
             f"metrics: {', '.join(task.metrics)}; monitor {task.monitor} ({task.direction})"]
    if data.validation_carved:
        lines.append(f"validation: carved from train ({config.data.validation_fraction:.0%}, seed "
                     f"{config.training.seed}); training records it in split_mapping.json")
    for name, recs in data.splits.items():
        lengths = np.array([len(s) for s in recs.sequences])
        lines.append(f"{name:<10} {len(recs):>7} sequences, length min {lengths.min()} / median "
                     f"{int(np.median(lengths))} / max {lengths.max()}; labels: {_label_summary(recs.labels, task)}")
    lines += [f"warning: {n}" for n in data.notes]
    lines.append("OK: every row is valid")
    return "\n".join(lines)


def _label_summary(labels: list | None, task) -> str:  # type: ignore[no-untyped-def]
    if labels is None:
        return "none"
    if is_residue(task.problem_type):
        from plmforge.data.residue import IGNORE

        flat = np.concatenate(labels)
        if flat.dtype.kind == "i":
            kept = flat[flat != IGNORE]
            counts = np.bincount(kept, minlength=task.num_labels)
            return f"{len(kept)} residues ({len(flat) - len(kept)} masked); " + ", ".join(
                f"{c}: {n}" for c, n in enumerate(counts))
        return f"{len(flat)} residues"
    if task.problem_type == "regression":
        arr = np.asarray(labels, dtype=float)
        return f"mean {arr.mean():.4g}, sd {arr.std():.4g}, range [{arr.min():.4g}, {arr.max():.4g}]"
    if task.problem_type == "multi_label_classification":
        per = [len(x) for x in labels]
        return f"{np.mean(per):.2f} classes per sequence on average"
    counts = np.bincount(np.asarray(labels), minlength=task.num_labels)
    return ", ".join(f"{c}: {n}" for c, n in enumerate(counts))


def list_catalogue() -> str:
    rows = []
    for e in catalogue().values():
        where = "bundled" if e.bundled else e.location
        rows.append(f"{e.name:<32} {e.problem_type:<36} {e.num_labels:>6}  {e.monitor:<14} {where}")
    header = f"{'name':<32} {'problem type':<36} {'labels':>6}  {'monitor':<14} source"
    return "\n".join([header, *rows])
