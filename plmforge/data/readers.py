"""Readers for CSV, TSV, JSON Lines, Parquet and FASTA files, a local split directory, and
HuggingFace hub datasets. Every reader returns `Table`s that know how to name a row for errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plmforge.errors import DataError

SUFFIXES = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
    ".pq": "parquet", ".fasta": "fasta", ".fa": "fasta", ".faa": "fasta", ".fas": "fasta",
}
SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
_HEADER_FIELD = re.compile(r"(\S+?)=(\S*)")


@dataclass
class Table:
    """A split's raw rows (all cells as read) plus where each row came from."""

    df: pd.DataFrame
    source: str
    lines: list[int] | None = None  # line of each row in a text file (for messages)
    kind: str = "row"
    extra: dict[str, str] = field(default_factory=dict)
    parts: list[tuple[str, int]] | None = None  # several files: (file, rows) in order

    def _locate(self, i: int) -> tuple[str, int]:
        """The file a row came from and its row number (0-based) within that file."""
        if self.parts is None:
            return self.source, i
        for source, n in self.parts:
            if i < n:
                return source, i
            i -= n
        raise IndexError(i)

    def source_of(self, i: int) -> str:
        return self._locate(i)[0]

    def where(self, i: int) -> str:
        local = self._locate(i)[1]
        if self.lines is not None:
            return f"{local + 1} (line {self.lines[i]})"
        return str(local + 1)

    def column(self, name: str) -> str | None:
        """Exact column name, else a case-insensitive match (FASTA header keys like LABEL=1)."""
        if name in self.df.columns:
            return name
        lowered = {str(c).lower(): c for c in self.df.columns}
        return lowered.get(name.lower())


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unsupported file type {path.suffix!r}", file=str(path),
                        hint=f"use one of {', '.join(sorted(SUFFIXES))}")
    return fmt


def read_file(path: str | Path, sequence_column: str = "aa_seq") -> Table:
    p = Path(path)
    if not p.is_file():
        raise DataError("file does not exist", file=str(p), hint="check the path (relative paths in a config "
                                                                 "file are relative to that file)")
    fmt = file_format(p)
    try:
        if fmt == "fasta":
            return read_fasta(p, sequence_column)
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(p, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False,
                             skipinitialspace=True)
            return Table(df, str(p), lines=[i + 2 for i in range(len(df))])
        if fmt == "jsonl":
            df = pd.read_json(p, lines=True, dtype=False)
            return Table(df, str(p), lines=[i + 1 for i in range(len(df))])
        return Table(pd.read_parquet(p), str(p))
    except DataError:
        raise
    except (ValueError, pd.errors.ParserError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot be read as {fmt.upper()}: {str(exc).splitlines()[0]}", file=str(p),
                        hint=f"check that the file is valid {fmt.upper()}") from None


def sequences_table(sequences: list[str] | dict[str, str], sequence_column: str, id_column: str = "id") -> Table:
    """Sequences given in code as a table: an {id: sequence} dict, or a list (ids sequence_1, ...)."""
    ids = list(sequences) if isinstance(sequences, dict) else [f"sequence_{i + 1}" for i in range(len(sequences))]
    seqs = list(sequences.values()) if isinstance(sequences, dict) else list(sequences)
    return Table(pd.DataFrame({sequence_column: seqs, id_column: ids}), "input sequences")


def read_sources(spec: str, sequence_column: str, label_column: str) -> Table:
    """One file, or several joined into one split: `pos.fasta::1,neg.fasta::0` gives every record of a
    file the label after `::` (for site windows whose positives and negatives come as separate files)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()] if "::" in spec else [spec]
    if len(parts) == 1 and "::" not in parts[0]:
        return read_file(parts[0], sequence_column)
    tables = []
    for part in parts:
        path, sep, label = part.rpartition("::") if "::" in part else (part, "", "")
        table = read_file(path, sequence_column)
        if sep:
            existing = table.column(label_column)
            if existing is not None:
                raise DataError(f"has its own label column {existing!r} and is also given the label {label!r}",
                                file=path, hint="drop '::label' for this file, or the column from the file")
            table.df[label_column] = label
        tables.append(table)
    lines = [n for t in tables for n in (t.lines or [0] * len(t.df))]
    return Table(pd.concat([t.df for t in tables], ignore_index=True), " + ".join(t.source for t in tables),
                 lines=lines if all(t.lines for t in tables) else None, kind=tables[0].kind,
                 parts=[(t.source, len(t.df)) for t in tables])


def read_fasta(path: Path, sequence_column: str) -> Table:
    """Records `>ID key=value ...` then sequence lines; header fields become columns."""
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    current: dict[str, str] | None = None
    chunks: list[str] = []
    with path.open() as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                if current is not None:
                    current[sequence_column] = "".join(chunks)
                    rows.append(current)
                header = line[1:].strip()
                if not header:
                    raise DataError("FASTA header has no identifier", file=str(path), row=f"line {lineno}",
                                    hint="write '>ID' optionally followed by key=value fields")
                ident = header.split()[0]
                current = {"id": ident}
                current.update({k: v for k, v in _HEADER_FIELD.findall(header[len(ident):])})
                chunks = []
                lines.append(lineno)
            else:
                if current is None:
                    raise DataError("sequence text before the first '>' header", file=str(path),
                                    row=f"line {lineno}", hint="every record starts with a '>ID' line")
                chunks.append(line)
    if current is not None:
        current[sequence_column] = "".join(chunks)
        rows.append(current)
    if not rows:
        raise DataError("no FASTA records found", file=str(path), hint="records start with '>ID'")
    df = pd.DataFrame(rows).fillna("")
    return Table(df, str(path), lines=lines, kind="record")


def flip_layout(path: Path, sequence_column: str, label_column: str) -> dict[str, Table] | None:
    """FLIP-style residue benchmarks: `sequences.fasta` (residues), a labels FASTA whose headers carry
    `SET=train|test VALIDATION=True|False` (one label symbol per residue), and optionally `mask.fasta`
    (1 = resolved residue, 0 = ignore), all keyed by the record id. `path` is the directory (with one
    labels file) or the labels file itself. Returns None when `path` is not laid out like that."""
    directory = path if path.is_dir() else path.parent
    if not (directory / "sequences.fasta").is_file():
        return None
    if path.is_dir():
        candidates = [p for p in sorted(directory.glob("*.fasta")) if p.name not in ("sequences.fasta", "mask.fasta")]
        if len(candidates) != 1:
            raise DataError(f"FLIP layout with {len(candidates)} label files ({', '.join(p.name for p in candidates)})",
                            file=str(directory), hint="point data.dataset at the label file to use, e.g. "
                                                      f"{directory / 'sampled.fasta'}")
        path = candidates[0]
    labels = read_fasta(path, label_column)
    if labels.column("set") is None:
        return None
    seqs = read_fasta(directory / "sequences.fasta", sequence_column).df.drop_duplicates("id").set_index("id")
    df = labels.df.rename(columns={labels.column("set"): "set"})
    missing = sorted(set(df["id"]) - set(seqs.index))
    if missing:
        raise DataError(f"{len(missing)} labelled ids have no sequence in sequences.fasta (e.g. {missing[0]})",
                        file=str(path), hint="the label and sequence files must share record ids")
    df[sequence_column] = seqs.loc[df["id"], sequence_column].to_numpy()
    if (directory / "mask.fasta").is_file():
        masks = read_fasta(directory / "mask.fasta", "mask").df.drop_duplicates("id").set_index("id")
        df["mask"] = masks.reindex(df["id"])["mask"].fillna("").to_numpy()
    validation = df.get("VALIDATION", pd.Series(["False"] * len(df))).astype(str).str.lower() == "true"
    split = np.where(df["set"].str.lower() == "test", "test", np.where(validation, "validation", "train"))
    tables = {}
    for name in ("train", "validation", "test"):
        keep = np.flatnonzero(split == name)
        if len(keep):
            tables[name] = Table(df.iloc[keep].reset_index(drop=True), f"{path} [{name}]",
                                 lines=[labels.lines[i] for i in keep] if labels.lines else None, kind="record")
    return tables


def find_split_files(directory: Path) -> dict[str, Path]:
    """train/validation/test files in a directory, by file name (train.csv, valid.fasta, test.tsv...)."""
    found: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        if not p.is_file() or p.suffix.lower() not in SUFFIXES:
            continue
        stem = p.stem.lower()
        for split, names in SPLIT_NAMES.items():
            if stem in names:
                if split in found:
                    raise DataError(f"two {split} files: {found[split].name} and {p.name}", file=str(directory),
                                    hint=f"keep one {split} file in the directory")
                found[split] = p
    if "train" not in found:
        raise DataError("no training file found", file=str(directory),
                        hint="name files train.<ext>, validation.<ext> (or valid/val/dev) and test.<ext>, "
                             f"with <ext> one of {', '.join(sorted(SUFFIXES))}")
    return found


def load_hub_dataset(name: str) -> dict[str, Table]:
    """A HuggingFace dataset (hub id, or anything `datasets.load_dataset` accepts) as split tables."""
    try:
        import datasets
    except ImportError:
        raise DataError("the 'datasets' package is needed for hub datasets", hint="pip install datasets") from None
    try:
        dd = datasets.load_dataset(name)
    except Exception as exc:  # the library raises many types (connection, file not found, config)
        raise DataError(f"could not load dataset {name!r}: {str(exc).splitlines()[0]}",
                        hint="check the id (owner/name) and your network, or download the files and "
                             "point data.dataset at the directory") from None
    tables: dict[str, Table] = {}
    for split_name in dd:
        for split, names in SPLIT_NAMES.items():
            if str(split_name).lower() in names:
                tables[split] = Table(dd[split_name].to_pandas(), f"{name} [{split_name}]")
    if "train" not in tables:
        raise DataError(f"dataset {name!r} has no train split (it has {', '.join(dd)})")
    return tables
