"""`plmforge data check` and `data list`: validate and summarise a dataset, list the catalogue.

`check_dataset` returns a DatasetSummary object (the CLI renders it as text; the UI draws its counts
and lengths); data errors stay exceptions that name the file, row and field."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from plmforge.config import DataConfig, RunConfig, load_config
from plmforge.data.catalogue import catalogue, lookup
from plmforge.data.dataset import load_data, read_tables
from plmforge.data.readers import Table
from plmforge.data.validate import require_column
from plmforge.errors import DataError
from plmforge.tasks import PROBLEM_TYPES, LabelSummary, TaskSpec


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


def summarise(config: RunConfig, residue_limit: int | None = None) -> DatasetSummary:
    """Read and validate every split exactly as training would, and describe what was found;
    `residue_limit`: the model's length limit, to count the sequences it would truncate."""
    data = load_data(config.data, config.training)
    task = data.task
    splits = {name: SplitSummary(name, len(recs), np.array([len(s) for s in recs.sequences]),
                                 task.problem.summary(recs.labels, task.num_labels) if recs.labels else None,
                                 _head(recs))
              for name, recs in data.splits.items()}
    notes = list(data.notes) + _length_notes(config, data.splits, residue_limit)
    return DatasetSummary(data.source, task, task.problem.loss_name, data.validation_carved,
                          config.data.validation_fraction, config.training.seed, splits, notes)


def _length_notes(config: RunConfig, splits: dict, limit: int | None) -> list[str]:
    """How many sequences a model taking `limit` residues would truncate."""
    if limit is None:
        return []
    if config.model.max_length is not None:
        limit = min(limit, config.model.max_length)
    notes = []
    for name, recs in splits.items():
        longer = sum(len(s) > limit for s in recs.sequences)
        if longer:
            notes.append(f"{name}: {longer} of {len(recs)} sequences are longer than {limit} residues "
                         f"({config.model.name}) and will be truncated to it")
    return notes


def _head(recs, n: int = 5) -> tuple[dict[str, str], ...]:
    rows = []
    for i in range(min(n, len(recs))):
        row = {"id": str(recs.ids[i]), "sequence": recs.sequences[i]}
        if recs.labels:
            label = recs.labels[i]
            row["label"] = str(label.tolist() if isinstance(label, np.ndarray) else label)
        rows.append(row)
    return tuple(rows)


def check_dataset(overrides: list[str], residue_limit: Callable[[RunConfig], int | None] | None = None) -> DatasetSummary:
    """`plmforge data check`: with no problem type set (and none from the catalogue), the likely one is
    inferred from the labels and said so, with how to override it."""
    config = load_config(None, overrides)
    note = None
    if config.data.problem_type is None and lookup(config.data.dataset or "") is None:
        tables, _, _ = read_tables(config.data)
        problem, why, extra = infer_problem_type(tables["train"], config.data)
        note = (f"problem type inferred: {problem} ({why}); if that is wrong, pass --problem-type "
                f"(or data.problem_type=...)")
        config = load_config(None, [*overrides, f"data.problem_type={problem}", *extra])
    summary = summarise(config, residue_limit(config) if residue_limit else None)
    if note:
        summary.warnings.insert(0, note)
    return summary


_INT = re.compile(r"[+-]?\d+")
_LIST = re.compile(r"\[?\s*\d+(\s*[,;\s]\s*\d+)*\s*\]?")


def infer_problem_type(table: Table, cfg: DataConfig) -> tuple[str, str, list[str]]:
    """The likely problem type from the label column: whole numbers -> classes, real numbers ->
    regression, lists of whole numbers -> multi-label, one symbol per residue -> a residue task.
    Returns (problem type, the reason in words, further overrides it needs)."""
    column = require_column(table, cfg.label_column, "label")
    seq_column = require_column(table, cfg.sequence_column, "sequence")
    pairs = [(str(lab).strip(), str(seq).strip()) for lab, seq in zip(table.df[column], table.df[seq_column],
                                                                         strict=True)]
    pairs = [(lab, seq) for lab, seq in pairs if lab and lab.lower() != "nan"][:5000]
    if not pairs:
        raise DataError("the label column is empty, so the problem type cannot be inferred", file=table.source,
                        column=column, hint="fill in the labels, or pass --problem-type")
    labels = [lab for lab, _ in pairs]
    if all(_INT.fullmatch(v) for v in labels):
        return "single_label_classification", f"whole-number labels, {len(set(labels))} distinct", []
    if all(_is_real(v) for v in labels):
        return "regression", "real-number labels", []
    per_residue = [re.sub(r"[\s,]", "", lab) for lab in labels]
    if all(len(p) == len(re.sub(r"\s", "", seq)) > 1 for p, (_, seq) in zip(per_residue, pairs, strict=True)):
        symbols = sorted({c for p in per_residue for c in p})
        if all(c.isdigit() for c in symbols):
            return "residue_single_label_classification", "one digit per residue", []
        return ("residue_single_label_classification", f"one symbol per residue ({','.join(symbols)})",
                [f"data.residue_classes={','.join(symbols)}"])
    if all(_LIST.fullmatch(v) for v in labels):
        return "multi_label_classification", "lists of class indices", []
    raise DataError(f"cannot tell the problem type from labels such as {labels[0]!r}", file=table.source,
                    column=column, hint="pass --problem-type (one of " + ", ".join(PROBLEM_TYPES) + ")")


def _is_real(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def list_catalogue() -> str:
    rows = []
    for e in catalogue().values():
        where = "bundled" if e.bundled else e.location
        rows.append(f"{e.name:<32} {e.problem_type:<36} {e.num_labels:>6}  {e.monitor:<14} {where}")
    header = f"{'name':<32} {'problem type':<36} {'labels':>6}  {'monitor':<14} source"
    return "\n".join([header, *rows])
