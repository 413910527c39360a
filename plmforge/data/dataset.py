"""Assemble the train/validation/test splits and the task they define from a DataConfig."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plmforge.config import CVConfig, DataConfig, TrainingConfig
from plmforge.data.catalogue import CatalogueEntry, lookup
from plmforge.data.folds import assign_folds, group_split
from plmforge.data.readers import (
    Table,
    find_split_files,
    flip_layout,
    load_hub_dataset,
    read_file,
    read_sources,
    spec_parts,
)
from plmforge.data.stream import CHUNKED_ABOVE, local_size
from plmforge.data.validate import Records, concat_records, table_to_records
from plmforge.errors import ConfigError, DataError
from plmforge.metrics import direction_of
from plmforge.tasks import PROBLEM_TYPES, ProblemType, TaskSpec

log = logging.getLogger("plmforge")


@dataclass
class PreparedData:
    splits: dict[str, Records]  # 'train', 'validation' and (optionally) 'test'
    task: TaskSpec
    validation_carved: bool
    source: str
    notes: list[str] = field(default_factory=list)
    cv: dict | None = None  # a cross-validation fold's run: {'folds': K, 'fold': i, 'group_column': ...}
    config: DataConfig | None = None  # the data config with the columns found in the file filled in
    test_carved: bool = False

    def split_mapping(self, seed: int, ids: bool = True) -> dict:
        return {
            "source": self.source,
            "seed": seed,
            "validation_carved_from_train": self.validation_carved,
            "test_carved_from_train": self.test_carved,
            **({"cross_validation": self.cv} if self.cv else {}),
            "counts": {k: len(v) for k, v in self.splits.items()},
            "samples": {name: list(recs.ids) if ids else [] for name, recs in self.splits.items()},
        }

    def write_split_mapping(self, path: Path, seed: int, block: int = 50_000) -> None:
        """split_mapping.json: the text of json.dumps(self.split_mapping(seed), indent=1), with the ids
        written in blocks (millions of ids never become one list or one string)."""
        head = {k: v for k, v in self.split_mapping(seed, ids=False).items() if k != "samples"}
        with path.open("w") as fh:
            fh.write(json.dumps(head, indent=1)[:-2] + ',\n "samples": {')
            for k, (name, recs) in enumerate(self.splits.items()):
                fh.write(("," if k else "") + f"\n  {json.dumps(name)}: [")
                for a in range(0, len(recs.ids), block):
                    fh.write(("," if a else "") + ",".join(f"\n   {json.dumps(i)}" for i in recs.ids[a:a + block]))
                fh.write("\n  ]" if len(recs.ids) else "]")
            fh.write("\n }\n}" if self.splits else "}\n}")


def read_tables(cfg: DataConfig) -> tuple[dict[str, Table], str, CatalogueEntry | None]:
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
    if path.is_file() and flip is None:
        tables = {"train": read_file(path, cfg.sequence_column)}
        for split in ("validation", "test"):  # a single file: data.validation / data.test add the other splits
            spec = getattr(cfg, split)
            if spec is not None:
                tables[split] = read_sources(spec, cfg.sequence_column, cfg.label_column)
        return tables, location, entry
    _no_extra_splits(cfg)
    if flip is not None:
        tables = flip
    elif path.is_dir():
        tables = {s: read_file(p, cfg.sequence_column) for s, p in find_split_files(path).items()}
    elif entry is not None and entry.bundled:
        raise DataError(f"bundled example {entry.name!r} is missing at {location}",
                        hint="run from a source checkout of plmforge, or point data.dataset at your own files")
    elif looks_like_hub_id(location):
        log.info("no local file or directory %s: loading it from the HuggingFace hub", location)
        tables = load_hub_dataset(location)
    else:
        raise DataError("no such file or directory" + ("" if "/" in location or "\\" in location else
                                                      ", and not a catalogue name"), file=location,
                        hint="check the path (relative paths are relative to the working directory, or to the "
                             "config file); `plmforge data list` shows the catalogue names; a hub dataset is "
                             "written owner/name")
    return tables, location, entry


def _no_extra_splits(cfg: DataConfig) -> None:
    given = [f"data.{s}" for s in ("validation", "test") if getattr(cfg, s) is not None]
    if given:
        raise ConfigError(f"{' and '.join(given)} cannot be combined with data.dataset={cfg.dataset!r}, which brings "
                          "its own splits; give data.train=FILE with data.validation/data.test instead, or drop them")


def split_files(cfg: DataConfig) -> dict[str, list[tuple[str, str | None]]] | None:
    """The files of each split and the label a file gives its records (`file::label`), when every split is
    local files that can be read in chunks; None for hub datasets and FLIP layouts (read whole)."""
    if cfg.train is not None:
        return {s: spec_parts(getattr(cfg, s)) for s in ("train", "validation", "test") if getattr(cfg, s)}
    entry = lookup(cfg.dataset or "")
    path = Path(entry.location if entry else cfg.dataset or "").expanduser()
    if not path.exists() or flip_layout(path, cfg.sequence_column, cfg.label_column) is not None:
        return None
    if path.is_dir():
        _no_extra_splits(cfg)
        return {s: [(str(p), None)] for s, p in find_split_files(path).items()}
    return {"train": [(str(path), None)],
            **{s: spec_parts(getattr(cfg, s)) for s in ("validation", "test") if getattr(cfg, s)}}


def looks_like_hub_id(text: str) -> bool:
    """owner/name with no file suffix and no local parent directory of that name: anything else that does
    not exist is a missing file, never a hub query."""
    from plmforge.data.readers import is_table_file

    if text.count("/") != 1 or text.startswith((".", "/", "~")) or "\\" in text:
        return False
    owner = text.split("/")[0]
    return not is_table_file(text) and not Path(owner).is_dir()


def _problem(cfg: DataConfig, entry: CatalogueEntry | None) -> ProblemType:
    name = cfg.problem_type or (entry.problem_type if entry else None)
    if name is None:
        raise ConfigError("data.problem_type is not set; choose one of " + ", ".join(PROBLEM_TYPES))
    return PROBLEM_TYPES[name]


def resolve_task(cfg: DataConfig, training: TrainingConfig, entry: CatalogueEntry | None,
                 train: Records | None, train_classes: set[int] | None = None, source: str | None = None) -> TaskSpec:
    """`train_classes` and `source` stand in for `train` when the training file was read in chunks."""
    problem = _problem(cfg, entry)
    same = entry is not None and problem.name == entry.problem_type  # the catalogue's choices apply
    try:
        num_labels = problem.resolve_num_labels(cfg.num_labels, cfg.residue_classes,
                                                entry.num_labels if entry else None,
                                                train.labels if train is not None else None, train_classes)
    except DataError as exc:
        if exc.file is None and (train is not None or source):
            exc.file, exc.column = train.source if train is not None else source, cfg.label_column
        raise
    norm = cfg.label_normalisation or (entry.label_normalisation if entry else None) or problem.default_normalisation
    if norm != "none" and problem.default_normalisation == "none":
        raise ConfigError(f"data.label_normalisation={norm!r} only applies to regression")
    metrics = training.metrics or (entry.metrics if same else None) or problem.default_metrics
    problem.check_metrics(tuple(metrics))
    monitor = training.monitor or (entry.monitor if same else None) or problem.default_monitor
    if monitor != "loss":
        problem.check_metrics((monitor,))
        if monitor not in metrics:
            metrics = (*metrics, monitor)
    direction = training.direction or direction_of(monitor)
    return TaskSpec(problem.name, num_labels, norm, tuple(metrics), monitor, direction)


def carve_validation(train: Records, fraction: float, seed: int, problem: ProblemType,
                     group_column: str | None = None, name: str = "validation") -> tuple[Records, Records]:
    """Hold out a validation (or test) split: stratified by class when every class can be kept on both
    sides; whole groups on one side when the records have groups."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(train))  # arrays, not lists of ints: a split on disk may have millions of rows
    n_val = max(1, int(round(fraction * len(idx))))
    stratify = problem.stratify(train.labels)
    if stratify is not None:
        n_classes = len(np.unique(stratify))
        if n_val < n_classes or len(idx) - n_val < n_classes:
            stratify = None  # too few samples to keep every class in both parts
    if len(idx) < 4:
        raise DataError(f"only {len(idx)} training samples: too few to carve a {name} split",
                        file=train.source, hint=f"provide a {name} file" + (" or set data.test_fraction=0"
                                                                           if name == "test" else ""))
    if train.groups is not None:
        tr, va = group_split(len(idx), fraction, seed, stratify, train.groups, source=train.source,
                             group_column=group_column)
        log.info("%s carved by group (%s): %d groups, %d of %d samples (%.1f%%; whole groups, so not "
                 "exactly the fraction asked for)", name, group_column, len({train.groups[i] for i in va}), len(va),
                 len(idx), 100 * len(va) / len(idx))
    else:
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    return train.subset(np.sort(tr)), train.subset(np.sort(va))


def cv_split(pool: Records, cv: CVConfig, seed: int, problem: ProblemType,
             group_column: str | None) -> tuple[Records, Records]:
    """Fold `cv.fold` of `cv.folds` as validation, the other folds as training (seeded: every fold's run
    computes the same assignment)."""
    assert cv.fold is not None
    fold = assign_folds(len(pool), cv.folds, seed, problem.cv_strata(pool.labels, cv.folds), pool.groups,
                        source=pool.source, group_column=group_column)
    return pool.subset(np.flatnonzero(fold != cv.fold - 1)), pool.subset(np.flatnonzero(fold == cv.fold - 1))


def _check_groups(splits: dict[str, Records], group_column: str | None) -> list[str]:
    """The training data must have the group column; notes for groups shared with the test split."""
    if not group_column:
        return []
    if splits["train"].groups is None:
        raise DataError(f"no group column {group_column!r} in the training data", file=splits["train"].source,
                        hint="add the column (e.g. a sequence-cluster id per row), or unset data.group_column")
    notes = []
    for name in ("validation", "test"):
        if name in splits and splits[name].groups is not None:
            common = set(splits["train"].groups or ()) & set(splits[name].groups)
            if common:
                notes.append(f"{len(common)} group(s) of {group_column!r} appear in both train and {name} "
                             f"(e.g. {sorted(common)[0]}): metrics on {name} may be optimistic")
    return notes


def _low_n(records: Records, n: int, seed: int, draw: int) -> Records:
    """data.train_samples: n training samples drawn at random (seeded; `draw` picks another subset), in file
    order."""
    if n > len(records):
        raise DataError(f"data.train_samples={n} asks for more training samples than there are ({len(records)})",
                        hint=f"use at most {len(records)} (a few-shot size above the data's size is not a few-shot)")
    log.info("low-N: %d of %d training samples drawn (seed %d, draw %d)", n, len(records), seed, draw)
    rng = np.random.default_rng([seed, n, draw])
    return records.subset(np.sort(rng.choice(len(records), size=n, replace=False)))


def _limit(records: Records, n: int | None, seed: int) -> Records:
    if n is None or len(records) <= n:
        return records
    rng = np.random.default_rng(seed)
    return records.subset(np.sort(rng.choice(len(records), size=n, replace=False)))


def sequence_digests(sequences: Sequence[str], block: int = 65_536) -> np.ndarray:
    """A 64-bit hash per sequence (to find identical sequences without holding the sequences)."""
    parts = [np.frombuffer(b"".join(hashlib.blake2b(sequences[i].encode(), digest_size=8).digest()
                                    for i in range(a, min(len(sequences), a + block))), dtype=np.uint64)
             for a in range(0, len(sequences), block)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def shared_sequences(splits: dict[str, Records]) -> list[str]:
    """Warnings for identical sequences that appear in more than one split."""
    digests = {name: sequence_digests(recs.sequences) for name, recs in splits.items()}
    notes = []
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = np.intersect1d(digests[a], digests[b])
            if len(common):
                where = np.flatnonzero(np.isin(digests[b], common))[:10_000]
                example = min(splits[b].sequences[int(k)] for k in where)
                notes.append(f"{len(common)} identical sequence(s) appear in both {a} and {b} "
                             f"(e.g. {example[:30]}...); metrics on {b} may be optimistic")
    return notes


MIN_TO_CARVE_TEST = 20  # training samples from which data.test_fraction holds out a test split
DISK_ABOVE = CHUNKED_ABOVE  # bytes of local split files from which data.storage=auto keeps the splits on disk


def disk_files(cfg: DataConfig) -> dict[str, list[tuple[str, str | None]]] | None:
    """The split files to read in chunks onto disk (data.storage), or None to read the splits into memory."""
    if cfg.storage == "memory":
        return None
    files = split_files(cfg)
    if files is None:
        if cfg.storage == "disk":
            raise ConfigError("data.storage=disk reads local split files in chunks; hub datasets and FLIP layouts "
                              "(one file with a split column) are read whole: write the splits as files "
                              "(data.train / data.validation / data.test), or drop data.storage")
        return None
    if cfg.storage == "auto":
        size = local_size(p for parts in files.values() for p, _ in parts)
        if size < DISK_ABOVE:
            return None
        log.info("the split files hold %.0f MB: they are read in chunks and kept on disk while training "
                 "(data.storage=memory reads them whole)", size / 2**20)
    return files


def _read_splits(cfg: DataConfig, with_labels: bool, fields: tuple[str, ...],
                 pool: bool) -> tuple[dict[str, Records], str, CatalogueEntry | None, list[str]]:
    """Every split as validated Records (in memory, or on disk per data.storage) and the reading notes;
    `pool`: training and validation files as one split (cross-validation)."""
    files = disk_files(cfg)
    if files is None:
        tables, source, entry = read_tables(cfg)
        problem_name = _problem(cfg, entry).name
        splits = {name: table_to_records(t, cfg, problem_name, with_labels, fields) for name, t in tables.items()}
        if pool and "validation" in splits:
            splits["train"] = concat_records(splits["train"], splits.pop("validation"))
        return splits, source, entry, [n for t in tables.values() for n in t.notes]
    from plmforge.data.bigsplit import read_splits

    entry = lookup(cfg.dataset) if cfg.train is None and cfg.dataset else None
    source = cfg.train or (entry.location if entry else cfg.dataset) or ""
    problem_name = _problem(cfg, entry).name
    if pool and "validation" in files:
        files = {**files, "train": files["train"] + files["validation"]}
        del files["validation"]
    splits, notes = read_splits(files, cfg, problem_name, with_labels, fields)
    return splits, source, entry, notes


def load_data(cfg: DataConfig, training: TrainingConfig, *, with_labels: bool = True,
              fields: tuple[str, ...] = (), cv: CVConfig | None = None) -> PreparedData:
    """Every split validated; `fields` are the further per-residue columns the model family reads.
    With `cv.fold` set, training and validation data are pooled and that fold becomes the validation.
    Large local files (data.storage) are read in chunks and kept on disk; the result is the same."""
    folding = cv is not None and cv.fold is not None
    return _complete(_load_pool(cfg, training, with_labels, fields, folding), training, cv if folding else None)


def load_folds(cfg: DataConfig, training: TrainingConfig, cv: CVConfig, *,
               fields: tuple[str, ...] = ()) -> list[PreparedData]:
    """Every fold's data of a cross-validation, each as load_data gives it with cv.fold = 1..K, from one
    reading of the files."""
    pool = _load_pool(cfg, training, True, fields, True)
    return [_complete(pool, training, dataclasses.replace(cv, fold=i)) for i in range(1, cv.folds + 1)]


@dataclass
class _Pool:
    cfg: DataConfig
    splits: dict[str, Records]
    source: str
    entry: CatalogueEntry | None
    problem: ProblemType
    task: TaskSpec
    notes: list[str]
    test_carved: bool


def _load_pool(cfg: DataConfig, training: TrainingConfig, with_labels: bool, fields: tuple[str, ...],
               folding: bool) -> _Pool:
    """The splits as read and checked, with a carved test split (for cross-validation, train and validation
    pooled as train)."""
    from plmforge.data.columns import resolve_columns

    cfg, _ = resolve_columns(cfg)
    splits, source, entry, read_notes = _read_splits(cfg, with_labels, fields, folding)
    problem = _problem(cfg, entry)
    task = resolve_task(cfg, training, entry, splits["train"])
    for recs in splits.values():
        if recs.labels is not None:
            problem.check_label_range(recs.labels, task.num_labels, recs.rows, cfg.label_column)
    group_notes = _check_groups(splits, cfg.group_column)
    test_carved = "test" not in splits and cfg.test_fraction > 0 and len(splits["train"]) >= MIN_TO_CARVE_TEST
    if "test" not in splits and cfg.test_fraction > 0 and not test_carved:
        log.warning("only %d training samples: no test split is carved (that needs %d); the run reports validation "
                    "metrics only", len(splits["train"]), MIN_TO_CARVE_TEST)
    if test_carved:  # one file: hold out a test split first, so every run ends with test metrics
        whole = len(splits["train"])
        splits["train"], splits["test"] = carve_validation(splits["train"], cfg.test_fraction, training.seed,
                                                           problem, cfg.group_column, "test")
        log.info("no test split given: %d of %d training samples held out as test (data.test_fraction=%g, seed %d); "
                 "see split_mapping.json", len(splits["test"]), whole, cfg.test_fraction, training.seed)
    return _Pool(cfg, splits, source, entry, problem, task, read_notes + group_notes, test_carved)


def _complete(pool: _Pool, training: TrainingConfig, cv: CVConfig | None) -> PreparedData:
    """The run's splits from the pool: a cross-validation fold (cv.fold), else a carved validation split
    where none was given; max_samples applied."""
    cfg, problem, test_carved = pool.cfg, pool.problem, pool.test_carved
    splits = dict(pool.splits)
    fold_info = None
    if cv is not None:
        whole = splits["train"]
        splits["train"], splits["validation"] = cv_split(whole, cv, training.seed, problem, cfg.group_column)
        fold_info = {"folds": cv.folds, "fold": cv.fold, "group_column": cfg.group_column,
                     "pooled": len(whole)}
        log.info("cross-validation fold %d of %d: %d training, %d validation samples%s", cv.fold, cv.folds,
                 len(splits["train"]), len(splits["validation"]),
                 f" (groups of {cfg.group_column} kept apart)" if cfg.group_column else "")
    if cfg.train_samples is not None:
        splits["train"] = _low_n(splits["train"], cfg.train_samples, training.seed, cfg.train_draw)
    carved = "validation" not in splits
    if carved:
        fraction = cfg.validation_fraction / (1 - cfg.test_fraction) if test_carved else cfg.validation_fraction
        splits["train"], splits["validation"] = carve_validation(splits["train"], fraction,
                                                                 training.seed, problem, cfg.group_column)
    splits = {k: _limit(splits[k], cfg.max_samples, training.seed)
              for k in ("train", "validation", "test") if k in splits}
    notes = pool.notes + shared_sequences(splits)
    entry = pool.entry
    if entry is not None and entry.unsupported_metrics:
        notes.append(f"the {entry.name} benchmark also reports {', '.join(entry.unsupported_metrics)}, which "
                     "plmforge does not compute")
    for note in notes:
        log.warning(note)
    if carved:
        log.info("no validation split given: %d of %d training samples held out as validation (seed %d); "
                 "see split_mapping.json", len(splits["validation"]),
                 len(splits["validation"]) + len(splits["train"]), training.seed)
    return PreparedData(splits, pool.task, carved, pool.source, notes, fold_info, cfg, test_carved)
