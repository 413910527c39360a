"""Assemble the train/validation/test splits and the task they define from a DataConfig."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plmforge.config import DataConfig, TrainingConfig
from plmforge.data.catalogue import CatalogueEntry, lookup
from plmforge.data.readers import Table, find_split_files, flip_layout, load_hub_dataset, read_file, read_sources
from plmforge.data.validate import Records, check_label_range, table_to_records
from plmforge.errors import ConfigError, DataError
from plmforge.metrics import check_metrics, direction_of
from plmforge.tasks import PROBLEM_TYPES

log = logging.getLogger("plmforge")


@dataclass(frozen=True)
class TaskSpec:
    """What is predicted and how it is judged, after config, catalogue and data have been combined."""

    problem_type: str
    num_labels: int
    normalisation: str
    metrics: tuple[str, ...]
    monitor: str
    direction: str

    @property
    def num_outputs(self) -> int:
        return 1 if self.problem_type == "regression" else self.num_labels


@dataclass
class PreparedData:
    splits: dict[str, Records]  # 'train', 'validation' and (optionally) 'test'
    task: TaskSpec
    validation_carved: bool
    source: str
    notes: list[str] = field(default_factory=list)

    def split_mapping(self, seed: int) -> dict:
        return {
            "source": self.source,
            "seed": seed,
            "validation_carved_from_train": self.validation_carved,
            "counts": {k: len(v) for k, v in self.splits.items()},
            "samples": {name: recs.ids for name, recs in self.splits.items()},
        }


def _read_tables(cfg: DataConfig) -> tuple[dict[str, Table], str, CatalogueEntry | None]:
    if cfg.train is not None:
        tables = {}
        for split in ("train", "validation", "test"):
            spec = getattr(cfg, split)
            if spec is not None:
                tables[split] = read_sources(spec, cfg.sequence_column, cfg.label_column)
        return tables, cfg.train, None
    assert cfg.dataset is not None
    entry = lookup(cfg.dataset)
    location = entry.location if entry else cfg.dataset
    path = Path(location).expanduser()
    flip = flip_layout(path, cfg.sequence_column, cfg.label_column) if path.exists() else None
    if flip is not None:
        tables = flip
    elif path.is_dir():
        tables = {s: read_file(p, cfg.sequence_column) for s, p in find_split_files(path).items()}
    elif path.is_file():
        tables = {"train": read_file(path, cfg.sequence_column)}
    elif entry is not None and entry.bundled:
        raise DataError(f"bundled example {entry.name!r} is missing at {location}",
                        hint="run from a source checkout of plmforge, or point data.dataset at your own files")
    elif location.count("/") == 1 and not location.startswith((".", "/", "~")):
        log.info("loading %s from the HuggingFace hub", location)
        tables = load_hub_dataset(location)
    else:
        raise DataError(f"data.dataset {cfg.dataset!r} is not a catalogue name, an existing path or a hub id "
                        "(owner/name)", hint="`plmforge data list` shows the catalogue names")
    return tables, location, entry


def resolve_task(cfg: DataConfig, training: TrainingConfig, entry: CatalogueEntry | None,
                 train: Records | None) -> TaskSpec:
    problem_type = cfg.problem_type or (entry.problem_type if entry else None)
    if problem_type is None:
        raise ConfigError("data.problem_type is not set; choose one of " + ", ".join(PROBLEM_TYPES))
    if problem_type.endswith("regression"):
        num_labels = 1
    elif cfg.num_labels is not None:
        num_labels = cfg.num_labels
    elif cfg.residue_classes:
        num_labels = len(cfg.residue_classes)
    elif entry is not None:
        num_labels = entry.num_labels
    else:
        num_labels = _infer_num_labels(train)
    if problem_type.endswith("single_label_classification") and num_labels < 2:
        raise ConfigError(f"data.num_labels must be >= 2 for single-label classification, got {num_labels}")
    norm = cfg.label_normalisation or (entry.label_normalisation if entry else None)
    if norm is None:
        norm = "standard" if problem_type.endswith("regression") else "none"
    if norm != "none" and not problem_type.endswith("regression"):
        raise ConfigError(f"data.label_normalisation={norm!r} only applies to regression")
    metrics = training.metrics or (entry.metrics if entry and entry.problem_type == problem_type else None) \
        or PROBLEM_TYPES[problem_type].default_metrics
    check_metrics(tuple(metrics), problem_type)
    monitor = training.monitor or (entry.monitor if entry and entry.problem_type == problem_type else None) \
        or PROBLEM_TYPES[problem_type].default_monitor
    if monitor != "loss":
        check_metrics((monitor,), problem_type)
        if monitor not in metrics:
            metrics = (*metrics, monitor)
    direction = training.direction or direction_of(monitor)
    return TaskSpec(problem_type, num_labels, norm, tuple(metrics), monitor, direction)


def _infer_num_labels(train: Records | None) -> int:
    if train is None or train.labels is None:
        raise ConfigError("data.num_labels is not set and cannot be read from the data")
    top = max(_largest(x) for x in train.labels)
    n = int(top) + 1
    log.warning("data.num_labels is not set: using %d (the largest class index in train is %d); "
                "set data.num_labels if some classes are absent from train", n, top)
    return n


def _largest(label: object) -> int:
    if isinstance(label, np.ndarray):  # residue labels
        if label.dtype == object:
            return max((max(x) for x in label if x), default=0)
        return int(label.max(initial=0))
    if isinstance(label, list):
        return max(label, default=0)
    return label if isinstance(label, int) else 0


def carve_validation(train: Records, fraction: float, seed: int, problem_type: str) -> tuple[Records, Records]:
    from sklearn.model_selection import train_test_split

    idx = list(range(len(train)))
    stratify = None
    n_val = max(1, int(round(fraction * len(idx))))
    if problem_type == "single_label_classification" and train.labels is not None:
        counts = np.bincount(np.asarray(train.labels))
        present = counts[counts > 0]
        if present.min() >= 2 and n_val >= len(present) and len(idx) - n_val >= len(present):
            stratify = train.labels  # class balance kept in both parts where the counts allow it
    if len(idx) < 4:
        raise DataError(f"only {len(idx)} training samples: too few to carve a validation split",
                        file=train.source, hint="provide a validation file")
    tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    return train.subset(sorted(tr)), train.subset(sorted(va))


def _limit(records: Records, n: int | None, seed: int) -> Records:
    if n is None or len(records) <= n:
        return records
    rng = np.random.default_rng(seed)
    return records.subset(sorted(rng.choice(len(records), size=n, replace=False).tolist()))


def shared_sequences(splits: dict[str, Records]) -> list[str]:
    """Warnings for identical sequences that appear in more than one split."""
    notes = []
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = set(splits[a].sequences) & set(splits[b].sequences)
            if common:
                notes.append(f"{len(common)} identical sequence(s) appear in both {a} and {b} "
                             f"(e.g. {next(iter(sorted(common)))[:30]}...); metrics on {b} may be optimistic")
    return notes


def load_data(cfg: DataConfig, training: TrainingConfig, *, with_labels: bool = True) -> PreparedData:
    tables, source, entry = _read_tables(cfg)
    problem_type = cfg.problem_type or (entry.problem_type if entry else None)
    if problem_type is None:
        raise ConfigError("data.problem_type is not set; choose one of " + ", ".join(PROBLEM_TYPES))
    splits = {name: table_to_records(t, cfg, problem_type, with_labels)
              for name, t in tables.items()}
    task = resolve_task(cfg, training, entry, splits["train"])
    for recs in splits.values():
        check_label_range(recs, task.problem_type, task.num_labels, cfg.label_column)
    carved = "validation" not in splits
    if carved:
        splits["train"], splits["validation"] = carve_validation(splits["train"], cfg.validation_fraction,
                                                                 training.seed, task.problem_type)
    splits = {k: _limit(splits[k], cfg.max_samples, training.seed)
              for k in ("train", "validation", "test") if k in splits}
    notes = shared_sequences(splits)
    for note in notes:
        log.warning(note)
    if carved:
        log.info("no validation split given: %d of %d training samples held out as validation (seed %d); "
                 "see split_mapping.json", len(splits["validation"]),
                 len(splits["validation"]) + len(splits["train"]), training.seed)
    return PreparedData(splits, task, carved, source, notes)
