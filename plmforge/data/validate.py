"""Turn raw tables into validated records: clean sequences and typed labels, or a DataError that
names the file, row, column, character and position, and says what to do."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from plmforge.config import DataConfig
from plmforge.data.readers import Table
from plmforge.data.residue import IGNORE, apply_mask, parse_mask, parse_residue_labels
from plmforge.errors import DataError
from plmforge.tasks import is_residue

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
RARE = "BZUOX"  # Asx, Glx, selenocysteine, pyrrolysine, unknown: mapped per model family (models/zoo.py)
ALPHABET = set(STANDARD + RARE)
_INVALID = re.compile(f"[^{STANDARD}{RARE}]")
MISSING = {"", "nan", "none", "null", "na", "n/a"}


@dataclass
class Records:
    """One split: ids, upper-case sequences, labels (None when the split has none), row names."""

    ids: list[str]
    sequences: list[str]
    labels: list | None
    rows: list[str]  # human-readable row locations for messages
    source: str

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, idx: list[int]) -> Records:
        return Records([self.ids[i] for i in idx], [self.sequences[i] for i in idx],
                       None if self.labels is None else [self.labels[i] for i in idx],
                       [self.rows[i] for i in idx], self.source)


def require_column(table: Table, name: str, what: str) -> str:
    col = table.column(name)
    if col is None:
        cols = ", ".join(map(str, table.df.columns))
        raise DataError(f"no {what} column {name!r}; the columns are: {cols}", file=table.source,
                        hint=f"rename the column, or set data.{what}_column to one of them")
    return col


def clean_sequence(raw: object, table: Table, i: int, column: str) -> str:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        raw = ""
    seq = re.sub(r"\s+", "", str(raw)).upper()
    if not seq:
        raise DataError("empty sequence", file=table.source_of(i), row=table.where(i), column=column,
                        hint="remove the row or fill in its sequence")
    bad = _INVALID.search(seq)
    if bad:
        pos = bad.start() + 1
        raise DataError(f"unknown residue {bad.group()!r} at position {pos} of {len(seq)}", file=table.source_of(i),
                        row=table.where(i), column=column,
                        hint=f"sequences use the one-letter codes {STANDARD} plus {RARE} "
                             "(B/Z/U/O/X are mapped per model family); remove or replace that character")
    return seq


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING


def parse_label(value: object, problem_type: str, table: Table, i: int, column: str) -> object:
    err = dict(file=table.source_of(i), row=table.where(i), column=column)
    if _is_missing(value):
        raise DataError("missing label", hint="fill in the label or remove the row", **err)
    if problem_type == "regression":
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DataError(f"label {value!r} is not a number", hint="regression labels are real numbers",
                            **err) from None
        if not math.isfinite(number):
            raise DataError(f"label {value!r} is not finite", hint="use a finite real number", **err)
        return number
    if problem_type == "multi_label_classification":
        return _parse_multi(value, err)
    return _parse_class(value, err, 'single-label classes are integers 0, 1, 2, ...')


def _parse_class(value: object, err: dict, hint: str) -> int:
    if isinstance(value, bool):
        raise DataError(f"label {value!r} is not a class index", hint=hint, **err)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise DataError(f"label {value!r} is not a class index", hint=hint, **err) from None
    if not number.is_integer() or number < 0:
        raise DataError(f"label {value!r} is not a class index (a whole number >= 0)", hint=hint, **err)
    return int(number)


def _parse_multi(value: object, err: dict) -> list[int]:
    hint = 'multi-label labels are comma-separated class indices, e.g. "3,17,42"'
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = list(value)
    else:
        text = str(value).strip().strip("[]")
        parts = [p.strip() for p in text.split(",")]
        if any(p == "" for p in parts):
            raise DataError(f"malformed multi-label string {value!r} (empty item)", hint=hint, **err)
    classes = [_parse_class(p, err, hint) for p in parts]
    if len(set(classes)) != len(classes):
        raise DataError(f"multi-label string {value!r} repeats a class", hint=hint, **err)
    return sorted(classes)


def table_to_records(table: Table, cfg: DataConfig, problem_type: str | None, with_labels: bool = True) -> Records:
    """Validated records of one table; residue tasks get per-residue label arrays (masked if asked)."""
    seq_col = require_column(table, cfg.sequence_column, "sequence")
    lab_col = require_column(table, cfg.label_column, "label") if with_labels else None
    id_column = cfg.id_column
    id_col = None
    if id_column:
        id_col = require_column(table, id_column, "id")
    else:
        for candidate in ("id", "name", "entry", "protein_id"):
            id_col = table.column(candidate)
            if id_col:
                break
    df = table.df
    seqs = [clean_sequence(v, table, i, seq_col) for i, v in enumerate(df[seq_col].tolist())]
    labels = None
    if lab_col is not None:
        assert problem_type is not None
        if is_residue(problem_type):
            labels = _residue_labels(table, cfg, problem_type, seqs, lab_col)
        else:
            labels = [parse_label(v, problem_type, table, i, lab_col) for i, v in enumerate(df[lab_col].tolist())]
    ids = [str(v) for v in df[id_col].tolist()] if id_col else [f"{table.source_of(i)}#{table.where(i).split()[0]}" for i in range(len(df))]
    rows = [f"{table.source_of(i)}, {table.kind} {table.where(i)}" for i in range(len(df))]
    return Records(ids, seqs, labels, rows, table.source)


def _residue_labels(table: Table, cfg: DataConfig, problem_type: str, seqs: list[str], column: str) -> list:
    mask_col = require_column(table, cfg.mask_column, "mask") if cfg.mask_column else None
    masks = table.df[mask_col].tolist() if mask_col else [None] * len(seqs)
    out = []
    for i, (value, seq, mask) in enumerate(zip(table.df[column].tolist(), seqs, masks, strict=True)):
        err = dict(file=table.source_of(i), row=table.where(i), column=column)
        if cfg.label_format == "positions" and _is_missing(value):
            value = ""  # no labelled position: every residue is 0
        elif not isinstance(value, (list, np.ndarray)) and _is_missing(value):
            raise DataError("missing residue labels", hint="fill in the labels or remove the row", **err)
        labels = parse_residue_labels(value, len(seq), problem_type, cfg.residue_classes, cfg.label_format, err)
        if mask_col:
            labels = apply_mask(labels, parse_mask(mask, len(seq), dict(err, column=mask_col)))
        out.append(labels)
    return out


def check_label_range(records: Records, problem_type: str, num_labels: int, column: str) -> None:
    if records.labels is None or problem_type.endswith("regression"):
        return
    for i, label in enumerate(records.labels):
        classes = label if isinstance(label, list) else [label]
        if isinstance(label, np.ndarray):  # residue labels
            flat = [c for x in label for c in (x if isinstance(x, list) else [x])] if label.dtype == object \
                else label[label != IGNORE].tolist()
            classes = [int(c) for c in flat if c is not None]
        for c in classes:
            if c >= num_labels:
                raise DataError(f"class index {c} is out of range for num_labels={num_labels} "
                                f"(allowed 0..{num_labels - 1})", file=records.rows[i], column=column,
                                hint="fix the label, or set data.num_labels to the real number of classes")


def label_array(records: Records, problem_type: str, num_labels: int) -> np.ndarray:
    assert records.labels is not None
    if problem_type == "multi_label_classification":
        out = np.zeros((len(records), num_labels), dtype=np.float32)
        for i, classes in enumerate(records.labels):
            out[i, classes] = 1.0
        return out
    if problem_type == "regression":
        return np.asarray(records.labels, dtype=np.float64)
    return np.asarray(records.labels, dtype=np.int64)
