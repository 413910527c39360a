"""Readers for CSV, TSV, JSON Lines, Parquet and FASTA files, a local split directory, and
HuggingFace hub datasets. Every reader returns `Table`s that know how to name a row for errors."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
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
    notes: list[str] = field(default_factory=list)  # what was done to read it (e.g. a sniffed delimiter)
    first_row: int = 0  # rows of the same file before this table (a chunk of a streamed file)

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
        local = self._locate(i)[1] + self.first_row
        if self.lines is not None:
            return f"{local + 1} (line {self.lines[i]})"
        return str(local + 1)

    def column(self, name: str) -> str | None:
        """Exact column name, else a case-insensitive match (FASTA header keys like LABEL=1)."""
        if name in self.df.columns:
            return name
        lowered = {str(c).lower(): c for c in self.df.columns}
        return lowered.get(name.lower())


COMPRESSED = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zip": "zip"}
_DELIMITERS = {",": "comma", "\t": "tab", ";": "';'"}
TABLE_SUFFIXES = tuple(SUFFIXES) + tuple(COMPRESSED)  # for file pickers


def _inner_suffix(path: Path | str) -> str:
    """The suffix under any compression suffix (data.csv.gz -> .csv; a zip member: archive.zip!x.tsv -> .tsv)."""
    name = str(path).split("!")[-1].lower()
    for ext in COMPRESSED:
        if name.endswith(ext) and ext != ".zip":
            name = name[: -len(ext)]
    return Path(name).suffix


def file_format(path: Path | str) -> str:
    """The table format from the file name (after any compression suffix: data.csv.gz is CSV)."""
    suffix = _inner_suffix(path)
    name = Path(path).name.lower()
    fmt = SUFFIXES.get(suffix)
    if fmt is None:
        raise DataError(f"unsupported file type {suffix or name!r}", file=str(path),
                        hint=f"use one of {', '.join(sorted(SUFFIXES))} (optionally compressed: "
                             f"{', '.join(COMPRESSED)})")
    return fmt


def _raw_bytes(p: Path) -> tuple[bytes, str, str]:
    """The file's bytes, decompressed; the format, and the name to use in messages."""
    suffix = p.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(p) as zf:
                members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
                if len(members) != 1:
                    raise DataError(f"the zip archive holds {len(members)} files; plmforge reads a zip with exactly "
                                    "one file" + (f" ({', '.join(m.filename for m in members[:5])})" if members else
                                                  " (it has no file)"),
                                    file=str(p), hint="unpack it and point at one file, or zip one file alone")
                member = members[0]
                return zf.read(member), file_format(member.filename), f"{p}!{member.filename}"
        except zipfile.BadZipFile as exc:
            raise DataError(f"cannot be read as a zip archive: {exc}", file=str(p)) from None
    fmt = file_format(p)
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix)
    if opener is None:
        return p.read_bytes(), fmt, str(p)
    try:
        with opener(p, "rb") as fh:
            return fh.read(), fmt, str(p)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise DataError(f"cannot be read as a {COMPRESSED[suffix]}-compressed file: {exc}", file=str(p),
                        hint="check the file is complete, or decompress it and point at the result") from None


def _text(data: bytes, name: str) -> str:
    """UTF-8 text (a byte-order mark dropped, every line ending made \\n). Other encodings are refused,
    naming the first bad byte, rather than guessed: a wrong guess silently changes sequences and ids."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(data[exc.start], exc.start, data.count(b"\n", 0, exc.start) + 1, name) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def not_utf8(byte: int, offset: int, line: int, name: str) -> DataError:
    return DataError(f"not UTF-8 text: byte 0x{byte:02x} at offset {offset} (line {line}) is not valid UTF-8",
                     file=name, hint="save the file as UTF-8 (spreadsheets: 'CSV UTF-8'); plmforge does not guess "
                                     "encodings")


def _sniff_delimiter(header: str, fmt: str, name: str, notes: list[str]) -> str:
    expected = "," if fmt == "csv" else "\t"
    counts = {d: header.count(d) for d in _DELIMITERS}
    if counts[expected] or not any(counts.values()):
        return expected
    found = max(counts, key=counts.get)
    notes.append(f"{name}: read as {_DELIMITERS[found]}-separated (its header has no "
                 f"{_DELIMITERS[expected]}s although the file is named .{fmt})")
    return found


def read_header(line: str, lineno: int, fmt: str, name: str, notes: list[str]) -> tuple[str, list[str]]:
    """The delimiter (sniffed when the named one is absent) and the column names of a header line."""
    sep = _sniff_delimiter(line, fmt, name, notes)
    header = next(csv.reader([line], delimiter=sep, skipinitialspace=True))
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"column name(s) {', '.join(map(repr, repeated))} appear more than once in the header",
                        file=name, row=f"line {lineno}", hint="rename or drop the repeated columns: plmforge "
                        "will not pick one of them for you")
    return sep, header


def _read_delimited(text: str, fmt: str, name: str) -> Table:
    notes: list[str] = []
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError("the file is empty", file=name, hint="add a header line and rows")
    sep, _ = read_header(lines[first], first + 1, fmt, name, notes)
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    row_lines = [i + 1 for i, line in enumerate(lines) if line.strip()][1:]
    if len(row_lines) != len(df):  # quoted fields spanning lines: row numbers stay right, lines unknown
        row_lines = None
    return Table(df, name, lines=row_lines, notes=notes)


def _read_json(text: str, name: str) -> Table:
    stripped = text.lstrip()
    if not stripped:
        raise DataError("the file is empty", file=name, hint="write one JSON object per line")
    if stripped.startswith("[") and _inner_suffix(name) == ".json":  # one JSON array of objects
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=name) from None
        rows, lines = items, None
    else:
        lines = [n for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        rows = [json_line(line, n, name) for n, line in zip(lines, (x for x in text.split("\n") if x.strip()),
                                                            strict=True)]
    for k, item in enumerate(rows):
        if not isinstance(item, dict):
            raise _not_an_object(item, name, f"item {k + 1}")
    return Table(pd.DataFrame(rows), name, lines=lines)


def json_line(line: str, lineno: int, name: str) -> dict:
    """One JSON Lines record (an object), or a DataError naming the line."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=name, row=f"line {lineno}",
                        hint="JSON Lines holds one complete JSON object per line") from None
    if not isinstance(item, dict):
        raise _not_an_object(item, name, f"line {lineno}")
    return item


def _not_an_object(item: object, name: str, where: str) -> DataError:
    return DataError(f"a {type(item).__name__} where an object ({{\"aa_seq\": ..., ...}}) is expected",
                     file=name, row=where, hint="each record is a JSON object with named fields")


def read_file(path: str | Path, sequence_column: str = "aa_seq") -> Table:
    """One table file (CSV, TSV, JSON Lines / JSON array, Parquet, FASTA), optionally gzip/bzip2/xz
    compressed or the only file of a zip archive."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file does not exist", file=str(p), hint="check the path (relative paths in a config "
                                                                 "file are relative to that file)")
    data, fmt, name = _raw_bytes(p)
    if not data.strip():
        raise DataError("the file is empty", file=name, hint="fill it, or leave it out")
    try:
        if fmt == "parquet":
            return Table(pd.read_parquet(io.BytesIO(data)), name)
        text = _text(data, name)
        if fmt == "fasta":
            return read_fasta_text(text, name, sequence_column)
        if fmt == "jsonl":
            return _read_json(text, name)
        return _read_delimited(text, fmt, name)
    except DataError:
        raise
    except (ValueError, pd.errors.ParserError, OSError, UnicodeDecodeError, ImportError) as exc:
        raise DataError(f"cannot be read as {fmt.upper()}: {str(exc).splitlines()[0]}", file=name,
                        hint=f"check that the file is valid {fmt.upper()}") from None


def sequences_table(sequences: list[str] | dict[str, str], sequence_column: str, id_column: str = "id") -> Table:
    """Sequences given in code as a table: an {id: sequence} dict, or a list (ids sequence_1, ...)."""
    ids = list(sequences) if isinstance(sequences, dict) else [f"sequence_{i + 1}" for i in range(len(sequences))]
    seqs = list(sequences.values()) if isinstance(sequences, dict) else list(sequences)
    return Table(pd.DataFrame({sequence_column: seqs, id_column: ids}), "input sequences")


def read_sources(spec: str, sequence_column: str, label_column: str) -> Table:
    """One file, or several joined into one split: `pos.fasta::1,neg.fasta::0` gives every record of a
    file the label after `::` (for site windows whose positives and negatives come as separate files)."""
    parts = spec_parts(spec)
    if len(parts) == 1 and parts[0][1] is None:
        return read_file(parts[0][0], sequence_column)
    tables = []
    for path, label in parts:
        table = read_file(path, sequence_column)
        if label is not None:
            give_label(table, label_column, label, path)
        tables.append(table)
    lines = [n for t in tables for n in (t.lines or [0] * len(t.df))]
    return Table(pd.concat([t.df for t in tables], ignore_index=True), " + ".join(t.source for t in tables),
                 lines=lines if all(t.lines for t in tables) else None, kind=tables[0].kind,
                 parts=[(t.source, len(t.df)) for t in tables], notes=[n for t in tables for n in t.notes])


def spec_parts(spec: str) -> list[tuple[str, str | None]]:
    """The files of a split spec and the label each file gives its records (None: the file's own column)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()] if "::" in spec else [spec]
    return [(part.rpartition("::")[0], part.rpartition("::")[2]) if "::" in part else (part, None) for part in parts]


def give_label(table: Table, label_column: str, label: str, path: str) -> None:
    existing = table.column(label_column)
    if existing is not None:
        raise DataError(f"has its own label column {existing!r} and is also given the label {label!r}",
                        file=path, hint="drop '::label' for this file, or the column from the file")
    table.df[label_column] = label


def read_fasta(path: Path, sequence_column: str) -> Table:
    """Records `>ID key=value ...` then sequence lines; header fields become columns."""
    if not path.is_file():
        raise DataError("file does not exist", file=str(path))
    return read_fasta_text(_text(path.read_bytes(), str(path)), str(path), sequence_column)


def read_fasta_text(text: str, name: str, sequence_column: str) -> Table:
    found = list(fasta_records(enumerate(text.split("\n"), start=1), name, sequence_column))
    if not found:
        raise DataError("no FASTA records found", file=name, hint="records start with '>ID'")
    df = pd.DataFrame([row for _, row in found]).fillna("")
    return Table(df, name, lines=[n for n, _ in found], kind="record")


def fasta_records(lines: Iterable[tuple[int, str]], name: str,
                  sequence_column: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(header line, record) for each `>ID key=value ...` record of numbered text lines."""
    current: dict[str, str] | None = None
    start = 0
    chunks: list[str] = []
    for lineno, raw in lines:
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if current is not None:
                current[sequence_column] = "".join(chunks)
                yield start, current
            header = line[1:].strip()
            if not header:
                raise DataError("FASTA header has no identifier", file=name, row=f"line {lineno}",
                                hint="write '>ID' optionally followed by key=value fields")
            ident = header.split()[0]
            current = {"id": ident}
            current.update({k: v for k, v in _HEADER_FIELD.findall(header[len(ident):])})
            chunks, start = [], lineno
        else:
            if current is None:
                raise DataError("sequence text before the first '>' header", file=name,
                                row=f"line {lineno}", hint="every record starts with a '>ID' line")
            chunks.append(line)
    if current is not None:
        current[sequence_column] = "".join(chunks)
        yield start, current


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


def is_table_file(p: Path | str) -> bool:
    """Whether the name is one of the readable table files (compressed ones included)."""
    try:
        file_format(p)
    except DataError:
        return False
    return True


def find_split_files(directory: Path) -> dict[str, Path]:
    """train/validation/test files in a directory, by file name (train.csv, valid.fasta, test.tsv...)."""
    found: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        if not p.is_file() or not is_table_file(p):
            continue
        stem = p.name.lower().split(".")[0]
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
