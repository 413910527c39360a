"""Turn raw tables into validated records: clean sequences and typed labels, or a DataError that
names the file, row, column, character and position, and says what to do."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from plmforge.config import DataConfig
from plmforge.data.notation import read_wild_type, variant_sequence
from plmforge.data.ondisk import on_disk, take
from plmforge.data.readers import Table
from plmforge.errors import DataError
from plmforge.tasks import PROBLEM_TYPES, is_missing

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
RARE = "BZUOX"  # Asx, Glx, selenocysteine, pyrrolysine, unknown: mapped per model family (models/zoo.py)
ALPHABET = set(STANDARD + RARE)
_INVALID = re.compile(f"[^{STANDARD}{RARE}]")


@dataclass
class Records:
    """One split: ids, upper-case sequences, labels (None when the split has none), row names, and
    further per-residue fields by column name (e.g. structure tokens) that a model family reads. With
    data.storage=disk the text columns and per-residue labels are on-disk `Ragged` columns (read like
    lists); per-protein labels and groups are lists either way."""

    ids: list[str]
    sequences: list[str]
    labels: list | None
    rows: list[str]  # human-readable row locations for messages
    source: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    groups: list[str] | None = None  # data.group_column: samples of one group stay on one side of a split

    def __len__(self) -> int:
        return len(self.sequences)

    def inputs(self) -> dict[str, list[str]]:
        """Every per-residue field, the amino-acid sequence as 'sequence'."""
        return {"sequence": self.sequences, **self.fields}

    def subset(self, idx: Sequence[int] | np.ndarray) -> Records:
        """These rows in this order (on-disk columns stay on disk: a view of the same files)."""
        return Records(take(self.ids, idx), take(self.sequences, idx),
                       None if self.labels is None else take(self.labels, idx), take(self.rows, idx), self.source,
                       {k: take(v, idx) for k, v in self.fields.items()},
                       None if self.groups is None else take(self.groups, idx))

    @property
    def on_disk(self) -> bool:
        return on_disk(self.sequences)


def concat_records(a: Records, b: Records) -> Records:
    """Two splits as one (cross-validation pools training and validation data)."""
    if (a.labels is None) != (b.labels is None) or (a.groups is None) != (b.groups is None) \
            or set(a.fields) != set(b.fields):
        raise DataError("the training and validation data do not have the same columns (labels, groups or "
                        "per-residue inputs)", file=f"{a.source} + {b.source}",
                        hint="give both files the same columns")
    return Records(a.ids + b.ids, a.sequences + b.sequences, None if a.labels is None else a.labels + b.labels,
                   a.rows + b.rows, f"{a.source} + {b.source}", {k: a.fields[k] + b.fields[k] for k in a.fields},
                   None if a.groups is None else a.groups + b.groups)


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


def table_to_records(table: Table, cfg: DataConfig, problem_type: str | None, with_labels: bool = True,
                     fields: tuple[str, ...] = ()) -> Records:
    """Validated records of one table: labels parsed by the problem type; `fields` are further
    per-residue columns (one symbol per residue) that the model family takes as inputs."""
    from plmforge.data.columns import columns_for_table

    cfg = columns_for_table(table, cfg, with_labels)
    seq_col = require_column(table, cfg.sequence_column, "sequence")
    lab_col = require_column(table, cfg.label_column, "label") if with_labels else None
    df = table.df
    if df.empty:
        raise DataError("no records (the file has a header but no rows)", file=table.source,
                        hint="add sequences to the file, or leave it out")
    raw = df[seq_col].tolist()
    if cfg.mutant_column is not None:  # each row: the wild type with its substitutions
        wild_type = read_wild_type(cfg.wild_type or "")
        seqs = [variant_sequence(str(v), wild_type, f"{table.source_of(i)}, row {table.where(i)}, column {seq_col}")
                for i, v in enumerate(raw)]
    else:
        seqs = [clean_sequence(v, table, i, seq_col) for i, v in enumerate(raw)]
    lower = sum(isinstance(v, str) and any(c.islower() for c in v) for v in raw)
    if lower and cfg.mutant_column is None:
        table.notes.append(f"{table.source}: {lower} sequence(s) written in lower-case letters were upper-cased")
    labels = None
    if lab_col is not None:
        if problem_type is None:
            raise DataError("labels cannot be read without a problem type", hint="set data.problem_type")
        mask_col = require_column(table, cfg.mask_column, "mask") if cfg.mask_column else None
        masks = df[mask_col].tolist() if mask_col else None
        labels = PROBLEM_TYPES[problem_type].parse_labels(df[lab_col].tolist(), seqs, masks, cfg,
                                                          _where(table), lab_col, mask_col)
    id_col = _id_column(table, cfg)
    ids = [str(v) for v in df[id_col].tolist()] if id_col else \
        [f"{table.source_of(i)}#{table.where(i).split()[0]}" for i in range(len(df))]
    rows = [f"{table.source_of(i)}, {table.kind} {table.where(i)}" for i in range(len(df))]
    extra = {name: _residue_field(table, name, seqs) for name in fields}
    return Records(ids, seqs, labels, rows, table.source, extra, _groups(table, cfg.group_column))


def _groups(table: Table, name: str | None) -> list[str] | None:
    """The group of each row (data.group_column), or None when the option is unset or the table lacks the
    column (a test file needs none; the training data is checked for it where the groups are used)."""
    col = table.column(name) if name else None
    if col is None:
        return None
    out = []
    for i, value in enumerate(table.df[col].tolist()):
        if is_missing(value) or not str(value).strip():
            raise DataError("missing group", file=table.source_of(i), row=table.where(i), column=col,
                            hint="give every row a group (e.g. its sequence cluster), or unset data.group_column")
        out.append(str(value).strip())
    return out


def _where(table: Table):  # type: ignore[no-untyped-def]
    return lambda i, column: dict(file=table.source_of(i), row=table.where(i), column=column)


def _id_column(table: Table, cfg: DataConfig) -> str | None:
    if cfg.id_column:
        return require_column(table, cfg.id_column, "id")
    for candidate in ("id", "name", "entry", "protein_id"):
        if table.column(candidate):
            return table.column(candidate)
    return None


_STRUCTURE_FIX = ("create it from PDB/mmCIF files with: plmforge structure --dataset DATA.csv --structures DIR "
                  "--id-column name --out DATA_with_structure.csv (it reports rows without a structure)")
STRUCTURE_HINTS = {"foldseek_seq": _STRUCTURE_FIX, "ss8_seq": _STRUCTURE_FIX + "; 8 states need mkdssp installed",
                   "ss3_seq": _STRUCTURE_FIX + " (ss3_seq is written when mkdssp is not installed)"}


# whole numbers separated by commas or spaces, optionally in brackets ("[12, 5, 7]"); "0101" stays 4 symbols
_NUMBERS = re.compile(r"\s*\[?\s*\d+(\s*[,\s]\s*\d+)+\s*\]?\s*")


def _residue_field(table: Table, name: str, seqs: list[str]) -> list[str]:
    """A per-residue column as long as each sequence: one symbol per residue (whitespace ignored), or
    whole-number tokens separated by commas or spaces (structure-quantizer tokens); digits written
    without separators are symbols (an alphabet such as "01")."""
    col = table.column(name)
    hint = STRUCTURE_HINTS.get(name)
    if col is None:
        cols = ", ".join(map(str, table.df.columns))
        raise DataError(f"the run needs a per-residue column {name!r}; the columns are: {cols}", file=table.source,
                        hint=hint or f"add the {name!r} column (one symbol per residue) or choose another model")
    out = []
    for i, (value, seq) in enumerate(zip(table.df[col].tolist(), seqs, strict=True)):
        text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
        if _NUMBERS.fullmatch(text):  # whole-number tokens (e.g. ProSST's structure tokens), kept comma-joined
            tokens = re.findall(r"\d+", text)
            text, count = ",".join(tokens), len(tokens)
        else:
            text = re.sub(r"\s+", "", text)
            count = len(text)
        if not text:
            raise DataError("empty: this row has no symbols", file=table.source_of(i), row=table.where(i),
                            column=col, hint=hint or "give exactly one symbol per residue")
        if count != len(seq):
            raise DataError(f"{count} symbols for a sequence of {len(seq)} residues", file=table.source_of(i),
                            row=table.where(i), column=col, hint="give exactly one symbol per residue")
        out.append(text)
    return out
