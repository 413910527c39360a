"""`plmforge data check` and `data list`: validate and summarise a dataset, list the catalogue.

`check_dataset` returns a DatasetSummary object (the CLI renders it as text; the UI draws its counts
and lengths); data errors stay exceptions that name the file, row and field."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from plmforge.config import DataConfig, RunConfig, load_config
from plmforge.data.catalogue import catalogue, lookup
from plmforge.data.dataset import load_data, read_tables, resolve_task, sequence_digests, split_files
from plmforge.data.readers import Table, give_label
from plmforge.data.stream import CHUNK_ROWS, CHUNKED_ABOVE, iter_chunks, local_size, merge_chunk_notes
from plmforge.data.validate import Records, require_column, table_to_records
from plmforge.errors import DataError
from plmforge.tasks import PROBLEM_TYPES, LabelSummary, ProblemType, TaskSpec

STREAM_ABOVE = CHUNKED_ABOVE  # bytes on disk: larger datasets are checked in chunks of rows


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
    streamed: bool = False  # read in chunks: a validation (and test) split to carve is still inside train
    test_carved: bool = False
    test_fraction: float = 0.0

    def render(self) -> str:
        task = self.task
        lines = [f"dataset: {self.source}", f"problem type: {task.problem_type}  (labels: {task.num_labels}; "
                 f"loss: {self.loss})", f"metrics: {', '.join(task.metrics)}; monitor {task.monitor} ({task.direction})"]
        if self.streamed:
            lines.append(f"read in chunks of {CHUNK_ROWS:,} rows (a large dataset); memory stays bounded")
        if self.test_carved:
            lines.append(f"test: carved from train ({self.test_fraction:.0%}, seed {self.seed}; data.test_fraction=0 "
                         "keeps no test split)" + ("; the train line below still includes it" if self.streamed else ""))
        if self.validation_carved:
            lines.append(f"validation: carved from train ({self.validation_fraction:.0%}, seed {self.seed}); "
                         "training records it in split_mapping.json"
                         + ("; the train line below still includes it" if self.streamed else ""))
        lines += [s.line() for s in self.splits.values()]
        lines += [f"warning: {n}" for n in self.warnings]
        lines.append("OK: every row is valid")
        return "\n".join(lines)


def summarise(config: RunConfig, residue_limit: int | None = None, stream: bool | None = None,
              progress: bool = False) -> DatasetSummary:
    """Read and validate every split exactly as training would, and describe what was found;
    `residue_limit`: the model's length limit, to count the sequences it would truncate. Local files
    of STREAM_ABOVE bytes or more (or any, with `stream=True`) are read in chunks of rows, so memory
    does not grow with the sequences; `progress` shows a bar per file."""
    from plmforge.data.columns import resolve_columns

    config = config.replace(data=resolve_columns(config.data)[0])
    files = split_files(config.data)
    if stream is None:
        stream = files is not None and local_size(p for parts in files.values() for p, _ in parts) >= STREAM_ABOVE
    if stream and files is not None:
        return _summarise_streamed(config, files, residue_limit, progress)
    data = load_data(config.data, config.training)
    task = data.task
    splits = {name: SplitSummary(name, len(recs), np.array([len(s) for s in recs.sequences]),
                                 task.problem.summary(recs.labels, task.num_labels) if recs.labels else None,
                                 _head(recs))
              for name, recs in data.splits.items()}
    lengths = {name: s.lengths for name, s in splits.items()}
    notes = list(data.notes) + _length_notes(config, lengths, residue_limit)
    if stream:
        notes.append("read whole: hub datasets and FLIP layouts cannot be read in chunks")
    return DatasetSummary(data.source, task, task.problem.loss_name, data.validation_carved,
                          config.data.validation_fraction, config.training.seed, splits, notes,
                          test_carved=data.test_carved, test_fraction=config.data.test_fraction)


def _length_notes(config: RunConfig, lengths: dict[str, np.ndarray], limit: int | None) -> list[str]:
    """How many sequences a model taking `limit` residues would truncate."""
    if limit is None:
        return []
    if config.model.max_length is not None:
        limit = min(limit, config.model.max_length)
    notes = []
    for name, values in lengths.items():
        longer = int((values > limit).sum())
        if longer:
            notes.append(f"{name}: {longer} of {len(values)} sequences are longer than {limit} residues "
                         f"({config.model.name}) and will be truncated to it")
    return notes


@dataclass
class _SplitDigest:
    """What a split read in chunks leaves behind: per row a length and a 64-bit hash of the sequence
    (12 bytes), class indices seen with the row of their first appearance, label summaries per chunk."""

    lengths: list[np.ndarray] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)
    first_row_of_class: dict[int, str] = field(default_factory=dict)
    labels: list[LabelSummary] = field(default_factory=list)
    head: tuple[dict[str, str], ...] = ()
    notes: list[str] = field(default_factory=list)

    def add(self, recs: Records, problem: ProblemType, num_labels: int | None, column: str) -> None:
        if not self.head:
            self.head = _head(recs)
        self.lengths.append(np.fromiter((len(s) for s in recs.sequences), dtype=np.int32, count=len(recs)))
        self.hashes.append(sequence_digests(recs.sequences))
        if recs.labels is None:
            return
        if num_labels is not None:
            problem.check_label_range(recs.labels, num_labels, recs.rows, column)
        found: set[int] = set()
        for i, label in enumerate(recs.labels):
            for c in problem.classes_in(label):
                if c not in self.first_row_of_class:
                    self.first_row_of_class[c] = recs.rows[i]
                found.add(c)
        top = max(found, default=0)
        if top > 1_000_000 and top + 1 > 10 * len(self.first_row_of_class) + 100:  # before a bincount that large
            try:
                problem.infer_num_labels(set(self.first_row_of_class))  # raises, saying why
            except DataError as exc:
                exc.file, exc.column = self.first_row_of_class[top], column
                raise
        self.labels.append(problem.summary(recs.labels, max(num_labels or 0, top + 1)))

    def summary(self, name: str, problem: ProblemType, num_labels: int) -> SplitSummary:
        lengths = np.concatenate(self.lengths)
        labels = problem.merge_summaries(self.labels, num_labels) if self.labels else None
        return SplitSummary(name, len(lengths), lengths, labels, self.head)


def _summarise_streamed(config: RunConfig, files: dict[str, list[tuple[str, str | None]]],
                        residue_limit: int | None, progress: bool) -> DatasetSummary:
    from tqdm.auto import tqdm

    cfg = config.data
    entry = lookup(cfg.dataset or "") if cfg.train is None else None
    problem = PROBLEM_TYPES[cfg.problem_type or (entry.problem_type if entry else "")] \
        if cfg.problem_type or entry else None
    if problem is None:
        raise DataError("data.problem_type is not set", hint="choose one of " + ", ".join(PROBLEM_TYPES))
    known = cfg.num_labels or (len(cfg.residue_classes) if cfg.residue_classes else None) or \
        (entry.num_labels if entry else None) or (1 if problem.kind.num_outputs(2) == 1 else None)
    digests: dict[str, _SplitDigest] = {}
    task = None
    for split in ("train", "validation", "test"):
        if split not in files:
            continue
        digest = digests[split] = _SplitDigest()
        for path, label in files[split]:
            with tqdm(total=local_size([path]), desc=f"checking {os.path.basename(path)}", unit="B",
                      unit_scale=True, disable=not progress, mininterval=0.5) as bar:
                for chunk in iter_chunks(path, cfg.sequence_column, progress=lambda done, _, b=bar: b.update(done - b.n)):
                    if label is not None:
                        give_label(chunk, cfg.label_column, label, path)
                    recs = table_to_records(chunk, cfg, problem.name)
                    digest.add(recs, problem, task.num_labels if task else known, cfg.label_column)
                    digest.notes += chunk.notes
        if not digest.lengths:
            raise DataError("no records (the file has a header but no rows)", file=files[split][0][0],
                            hint="add sequences to the file, or leave it out")
        if split == "train":
            task = resolve_task(cfg, config.training, entry, None, set(digest.first_row_of_class),
                                files["train"][0][0])
    assert task is not None
    splits = {name: d.summary(name, problem, task.num_labels) for name, d in digests.items()}
    notes = merge_chunk_notes([n for d in digests.values() for n in d.notes]) + _shared(digests)
    notes += _length_notes(config, {name: s.lengths for name, s in splits.items()}, residue_limit)
    if cfg.max_samples is not None:
        notes.append(f"data.max_samples={cfg.max_samples}: training keeps a random {cfg.max_samples} of each split")
    source = cfg.train or (entry.location if entry else cfg.dataset) or ""
    carve_test = "test" not in files and cfg.test_fraction > 0
    return DatasetSummary(source, task, problem.loss_name, "validation" not in files, cfg.validation_fraction,
                          config.training.seed, splits, notes, streamed=True, test_carved=carve_test,
                          test_fraction=cfg.test_fraction)


def _shared(digests: dict[str, _SplitDigest]) -> list[str]:
    """Identical sequences in two splits, found by their hashes."""
    hashes = {name: np.unique(np.concatenate(d.hashes)) for name, d in digests.items()}
    names = list(hashes)
    notes = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = len(np.intersect1d(hashes[a], hashes[b], assume_unique=True))
            if common:
                notes.append(f"{common} identical sequence(s) appear in both {a} and {b}; metrics on {b} may be "
                             "optimistic")
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


def check_dataset(overrides: list[str], residue_limit: Callable[[RunConfig], int | None] | None = None,
                  stream: bool | None = None, progress: bool = False) -> DatasetSummary:
    """`plmforge data check`: with no problem type set (and none from the catalogue), the likely one is
    inferred from the labels (of the first chunk, for a file read in chunks) and said so, with how to
    override it."""
    from plmforge.data.columns import resolve_columns

    config = load_config(None, overrides)
    data, said = resolve_columns(config.data)
    config = config.replace(data=data)
    note = None
    if config.data.problem_type is None and lookup(config.data.dataset or "") is None:
        problem, why, extra = infer_problem_type(_first_train_table(config.data, stream), config.data)
        note = (f"problem type inferred: {problem} ({why}); if that is wrong, pass --problem-type "
                f"(or data.problem_type=...)")
        config = load_config(None, [*overrides, f"data.problem_type={problem}", *extra])
    summary = summarise(config, residue_limit(config) if residue_limit else None, stream, progress)
    if note:
        summary.warnings.insert(0, note)
    for k, line in enumerate(said):
        text = (f"{line}; if that is wrong, pass --problem-type (or data.problem_type=...)"
                if line.startswith("problem type inferred") else
                f"inferred from the file: {line} (set data.{line.split()[0]}_column=... to choose another)")
        summary.warnings.insert(k, text)
    return summary


def _first_train_table(cfg: DataConfig, stream: bool | None) -> Table:
    files = split_files(cfg)
    if files is None or stream is False or (stream is None and local_size([files["train"][0][0]]) < STREAM_ABOVE):
        return read_tables(cfg)[0]["train"]
    path, label = files["train"][0]
    table = next(iter_chunks(path, cfg.sequence_column))
    if label is not None:
        give_label(table, cfg.label_column, label, path)
    return table


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
