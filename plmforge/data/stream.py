"""A table file read in chunks of rows, so that millions of rows can be validated in bounded memory.

Each chunk is a `Table` whose rows and lines are numbered as in the whole file (`Table.first_row`), so
an error in row 2,000,017 names that row and its line exactly as reading the file whole would. The
formats, compression, UTF-8 rule and delimiter sniffing are those of `readers.read_file`."""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from plmforge.data.readers import (
    COMPRESSED,
    Table,
    fasta_records,
    file_format,
    json_line,
    not_utf8,
    read_file,
    read_header,
)
from plmforge.errors import DataError

CHUNK_ROWS = 20_000
CHUNKED_ABOVE = 64 * 2**20  # bytes on disk from which data check, training and predict read in chunks of rows


def local_size(paths: Iterable[str | Path]) -> int:
    """Bytes of those paths that are local files (a hub id counts 0)."""
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def read_in_chunks(path: str | Path, flag: bool | None = None) -> bool:
    """The caller's choice (--stream / --no-stream), else whether the file reaches CHUNKED_ABOVE bytes."""
    return flag if flag is not None else local_size([path]) >= CHUNKED_ABOVE


@contextmanager
def _binary(p: Path) -> Iterator[tuple[BinaryIO, Callable[[], int], str, str]]:
    """The decompressed byte stream, how far into the file on disk it has read, the format and the name."""
    suffix = p.suffix.lower()
    with open(p, "rb") as raw:
        if suffix == ".zip":
            try:
                zf = zipfile.ZipFile(raw)
            except zipfile.BadZipFile as exc:
                raise DataError(f"cannot be read as a zip archive: {exc}", file=str(p)) from None
            members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
            if len(members) != 1:
                zf.close()
                read_file(p)  # refuses, naming the members
            with zf.open(members[0]) as fh:
                yield fh, raw.tell, file_format(members[0].filename), f"{p}!{members[0].filename}"
            return
        opener = {".gz": gzip.GzipFile, ".bz2": bz2.BZ2File, ".xz": lzma.LZMAFile}.get(suffix)
        fmt = file_format(p)
        if opener is None:
            yield raw, raw.tell, fmt, str(p)
            return
        with opener(fileobj=raw) if suffix == ".gz" else opener(raw) as fh:
            yield fh, raw.tell, fmt, str(p)


def _lines(fh: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    """Numbered text lines, UTF-8 checked (the first bad byte named by file offset), any line ending."""
    offset, lineno = 0, 0
    for k, raw in enumerate(fh):
        if k == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise not_utf8(raw[exc.start], offset + exc.start, lineno + 1, name) from None
        offset += len(raw)
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        for part in text.split("\r"):  # old Mac line endings
            lineno += 1
            yield lineno, part


def iter_chunks(path: str | Path, sequence_column: str = "aa_seq", rows: int = CHUNK_ROWS,
                progress: Callable[[int, int], None] | None = None) -> Iterator[Table]:
    """The file's rows as consecutive tables of at most `rows` rows. `progress(done, total)` is called
    with bytes of the file on disk after each chunk. A JSON array, a Parquet file inside a compressed
    container and a zip that is not one file come as a single table (they cannot be read in parts)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file does not exist", file=str(p), hint="check the path (relative paths in a config "
                                                                 "file are relative to that file)")
    total = os.path.getsize(p)
    try:
        with _binary(p) as (fh, position, fmt, name):
            if fmt == "parquet" and p.suffix.lower() not in COMPRESSED:
                chunks = _parquet(p, rows)
            elif fmt == "parquet" or (fmt == "jsonl" and _starts_with_bracket(fh)):
                chunks = iter([read_file(p, sequence_column)])
            else:
                lines = _lines(fh, name)
                chunks = {"fasta": _fasta, "jsonl": _jsonl}.get(fmt, _delimited)(lines, fmt, name, sequence_column,
                                                                                  rows)
            for chunk in chunks:
                if progress:
                    progress(position(), total)
                yield chunk
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        kind = COMPRESSED.get(p.suffix.lower())
        raise DataError(f"cannot be read{f' as a {kind}-compressed file' if kind else ''}: {exc}", file=str(p),
                        hint="check the file is complete, or decompress it and point at the result") from None
    except csv.Error as exc:
        raise DataError(f"cannot be read as {fmt.upper()}: {exc}", file=name) from None


def _starts_with_bracket(fh: BinaryIO) -> bool:
    head = fh.peek(64) if hasattr(fh, "peek") else b""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _delimited(lines: Iterator[tuple[int, str]], fmt: str, name: str, _: str, rows: int) -> Iterator[Table]:
    numbered = ((n, line) for n, line in lines if line.strip())
    first = next(numbered, None)
    if first is None:
        raise DataError("the file is empty", file=name, hint="add a header line and rows")
    notes: list[str] = []
    sep, header = read_header(first[1], first[0], fmt, name, notes)
    starts: list[int] = []
    line_of = _LineTracker(numbered)
    reader = csv.reader(line_of, delimiter=sep, skipinitialspace=True)
    batch: list[list[str]] = []
    done = 0
    for record in reader:
        if not record or record == [""]:
            continue
        if len(record) > len(header):
            raise DataError(f"{len(record)} fields where the header has {len(header)}", file=name,
                            row=f"line {line_of.start}", hint="quote fields that contain the delimiter")
        batch.append(record + [""] * (len(header) - len(record)))
        starts.append(line_of.start)
        if len(batch) == rows:
            yield Table(pd.DataFrame(batch, columns=header, dtype=str), name, lines=starts, notes=notes,
                        first_row=done)
            done += len(batch)
            batch, starts, notes = [], [], []
    if batch:
        yield Table(pd.DataFrame(batch, columns=header, dtype=str), name, lines=starts, notes=notes, first_row=done)


class _LineTracker:
    """Feeds csv.reader text lines and remembers the line on which the current record started."""

    def __init__(self, numbered: Iterator[tuple[int, str]]) -> None:
        self._numbered = numbered
        self._in_record = False
        self.start = 0

    def __iter__(self) -> _LineTracker:
        return self

    def __next__(self) -> str:
        n, line = next(self._numbered)
        if not self._in_record:
            self.start = n
        # a record continues while its quotes are unbalanced
        self._in_record = (line.count('"') + (1 if self._in_record else 0)) % 2 == 1
        return line + "\n"


def _jsonl(lines: Iterator[tuple[int, str]], fmt: str, name: str, _: str, rows: int) -> Iterator[Table]:
    batch: list[dict] = []
    starts: list[int] = []
    done = 0
    for n, line in lines:
        if not line.strip():
            continue
        batch.append(json_line(line, n, name))
        starts.append(n)
        if len(batch) == rows:
            yield Table(pd.DataFrame(batch), name, lines=starts, first_row=done)
            done += len(batch)
            batch, starts = [], []
    if not batch and not done:
        raise DataError("the file is empty", file=name, hint="write one JSON object per line")
    if batch:
        yield Table(pd.DataFrame(batch), name, lines=starts, first_row=done)


def _fasta(lines: Iterator[tuple[int, str]], fmt: str, name: str, sequence_column: str,
           rows: int) -> Iterator[Table]:
    batch: list[dict[str, str]] = []
    starts: list[int] = []
    done = 0
    for n, record in fasta_records(lines, name, sequence_column):
        batch.append(record)
        starts.append(n)
        if len(batch) == rows:
            yield Table(pd.DataFrame(batch).fillna(""), name, lines=starts, kind="record", first_row=done)
            done += len(batch)
            batch, starts = [], []
    if not batch and not done:
        raise DataError("no FASTA records found", file=name, hint="records start with '>ID'")
    if batch:
        yield Table(pd.DataFrame(batch).fillna(""), name, lines=starts, kind="record", first_row=done)


def _parquet(p: Path, rows: int) -> Iterator[Table]:
    try:
        import pyarrow.parquet as pq

        done = 0
        for batch in pq.ParquetFile(p).iter_batches(batch_size=rows):
            yield Table(batch.to_pandas(), str(p), first_row=done)
            done += batch.num_rows
    except ImportError:
        raise DataError("reading Parquet needs pyarrow", file=str(p), hint="pip install pyarrow") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot be read as PARQUET: {str(exc).splitlines()[0]}", file=str(p),
                        hint="check that the file is valid PARQUET") from None


_LOWER = re.compile(r"^(.*): (\d+) (sequence\(s\) written in lower-case letters were upper-cased)$")


def merge_chunk_notes(notes: list[str]) -> list[str]:
    """The notes of every chunk, each said once; per-chunk counts of upper-cased sequences added up."""
    out: list[str] = []
    lowered: dict[str, int] = {}
    for note in notes:
        m = _LOWER.match(note)
        if m:
            lowered[m.group(1)] = lowered.get(m.group(1), 0) + int(m.group(2))
        elif note not in out:
            out.append(note)
    return out + [f"{src}: {n} sequence(s) written in lower-case letters were upper-cased" for src, n in lowered.items()]
