"""`plmforge data check` and `data list`: validate and summarise a dataset, list the catalogue.

`check_dataset` returns a DatasetSummary object (the CLI renders it as text; the UI draws its counts
and lengths); data errors stay exceptions that name the file, row and field."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plmforge.config import RunConfig, load_config
from plmforge.data.catalogue import catalogue
from plmforge.data.dataset import load_data
from plmforge.tasks import LabelSummary, TaskSpec


@dataclass(frozen=True)
class SplitSummary:
    name: str
    size: int
    lengths: np.ndarray  # residues per sequence
    labels: LabelSummary | None
    head: tuple[dict[str, str], ...] = ()  # the first rows as read (id, sequence, label), for previews

    def line(self) -> str:
        lengths = self.lengths
        return (f"{self.name:<10} {self.size:>7} sequences, length min {lengths.min()} / median "
                f"{int(np.median(lengths))} / max {lengths.max()}; labels: "
                f"{self.labels.text if self.labels else 'none'}")


@dataclass(frozen=True)
class DatasetSummary:
    source: str
    task: TaskSpec
    loss: str
    validation_carved: bool
    validation_fraction: float
    seed: int
    splits: dict[str, SplitSummary]
    warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        task = self.task
        lines = [f"dataset: {self.source}", f"problem type: {task.problem_type}  (labels: {task.num_labels}; "
                 f"loss: {self.loss})", f"metrics: {', '.join(task.metrics)}; monitor {task.monitor} ({task.direction})"]
        if self.validation_carved:
            lines.append(f"validation: carved from train ({self.validation_fraction:.0%}, seed {self.seed}); "
                         "training records it in split_mapping.json")
        lines += [s.line() for s in self.splits.values()]
        lines += [f"warning: {n}" for n in self.warnings]
        lines.append("OK: every row is valid")
        return "\n".join(lines)


def summarise(config: RunConfig) -> DatasetSummary:
    """Read and validate every split exactly as training would, and describe what was found."""
    data = load_data(config.data, config.training)
    task = data.task
    splits = {name: SplitSummary(name, len(recs), np.array([len(s) for s in recs.sequences]),
                                 task.problem.summary(recs.labels, task.num_labels) if recs.labels else None,
                                 _head(recs))
              for name, recs in data.splits.items()}
    return DatasetSummary(data.source, task, task.problem.loss_name, data.validation_carved,
                          config.data.validation_fraction, config.training.seed, splits, list(data.notes))


def _head(recs, n: int = 5) -> tuple[dict[str, str], ...]:
    rows = []
    for i in range(min(n, len(recs))):
        row = {"id": str(recs.ids[i]), "sequence": recs.sequences[i]}
        if recs.labels:
            label = recs.labels[i]
            row["label"] = str(label.tolist() if isinstance(label, np.ndarray) else label)
        rows.append(row)
    return tuple(rows)


def check_dataset(overrides: list[str]) -> DatasetSummary:
    return summarise(load_config(None, overrides))


def list_catalogue() -> str:
    rows = []
    for e in catalogue().values():
        where = "bundled" if e.bundled else e.location
        rows.append(f"{e.name:<32} {e.problem_type:<36} {e.num_labels:>6}  {e.monitor:<14} {where}")
    header = f"{'name':<32} {'problem type':<36} {'labels':>6}  {'monitor':<14} source"
    return "\n".join([header, *rows])
