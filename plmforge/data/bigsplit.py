"""Read a split in chunks of rows into on-disk Records: every chunk is validated exactly as a whole
file would be (same messages, same row numbers), then its ids, sequences, row names, per-residue
fields and array labels are appended to files on disk; per-protein labels and groups stay lists."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from plmforge.config import DataConfig
from plmforge.data.ondisk import Workspace, data_root
from plmforge.data.readers import give_label
from plmforge.data.stream import iter_chunks, merge_chunk_notes
from plmforge.data.validate import Records, table_to_records
from plmforge.errors import DataError

log = logging.getLogger("plmforge")


class _SplitWriter:
    def __init__(self, ws: Workspace, name: str, fields: tuple[str, ...]) -> None:
        self.ws, self.name = ws, name
        self.text = {k: ws.writer(f"{name}-{k}", text=True) for k in ("ids", "sequences", "rows")}
        self.fields = {f: ws.writer(f"{name}-field-{f}", text=True) for f in fields}
        self.labels: list | None = None
        self.label_writer: Any = None
        self.groups: list[str] | None = None
        self.n = 0
        self.sources: list[str] = []

    def add(self, recs: Records) -> None:
        if self.n and (recs.labels is None) != (self.labels is None and self.label_writer is None):
            raise DataError("some files of this split have labels and others not", file=recs.source,
                            hint="give every file of the split a label column (or '::label')")
        if self.n and (recs.groups is None) != (self.groups is None):
            raise DataError("some files of this split have the group column and others not", file=recs.source,
                            hint="give every file of the split the group column")
        for key, values in (("ids", recs.ids), ("sequences", recs.sequences), ("rows", recs.rows)):
            self.text[key].extend(values)
        for f, w in self.fields.items():
            w.extend(recs.fields[f])
        if recs.labels is not None:
            if self.label_writer is None and self.labels is None:
                if recs.labels and isinstance(recs.labels[0], np.ndarray):  # one value (or row) per residue
                    self.label_writer = self.ws.writer(f"{self.name}-labels")
                else:
                    self.labels = []
            if self.label_writer is not None:
                self.label_writer.extend(recs.labels)
            else:
                assert self.labels is not None
                self.labels.extend(recs.labels)
        if recs.groups is not None:
            self.groups = self.groups if self.groups is not None else []
            self.groups.extend(recs.groups)
        if recs.source not in self.sources:
            self.sources.append(recs.source)
        self.n += len(recs)

    def finish(self) -> Records:
        text = {k: w.finish() for k, w in self.text.items()}
        labels = self.label_writer.finish() if self.label_writer is not None else self.labels
        fields = {f: w.finish() for f, w in self.fields.items()}
        return Records(text["ids"], text["sequences"], labels, text["rows"],  # type: ignore[arg-type]
                       " + ".join(self.sources), fields, self.groups)  # type: ignore[arg-type]


def read_split(name: str, parts: list[tuple[str, str | None]], cfg: DataConfig, problem_type: str | None,
               with_labels: bool, fields: tuple[str, ...], ws: Workspace, notes: list[str],
               progress: bool = True) -> Records:
    """The split's files (in order, each `(path, label or None)`) as one on-disk Records; the chunks'
    reading notes are appended to `notes`."""
    out = _SplitWriter(ws, name, fields)
    for path, label in parts:
        seen: list[str] = []  # columns of earlier chunks: a JSONL chunk without a key still has its column
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        with tqdm(total=size, desc=f"reading {name}: {os.path.basename(path)}", unit="B", unit_scale=True,
                  disable=not progress, mininterval=1.0, leave=False, delay=1.0) as bar:
            update: Callable[[int, int], None] = lambda done, _, b=bar: b.update(done - b.n)  # noqa: E731
            for chunk in iter_chunks(path, cfg.sequence_column, progress=update):
                if label is not None:
                    give_label(chunk, cfg.label_column, label, path)
                for column in seen:
                    if column not in chunk.df.columns:
                        chunk.df[column] = None
                seen += [c for c in chunk.df.columns if c not in seen]
                out.add(table_to_records(chunk, cfg, problem_type, with_labels, fields))
                notes += chunk.notes
    if not out.n:
        raise DataError("no records (the file has a header but no rows)", file=parts[0][0],
                        hint="add sequences to the file, or leave it out")
    return out.finish()


def read_splits(files: dict[str, list[tuple[str, str | None]]], cfg: DataConfig, problem_type: str | None,
                with_labels: bool, fields: tuple[str, ...]) -> tuple[dict[str, Records], list[str]]:
    """Every split's files (`{split: [(path, label or None), ...]}`) as on-disk Records in one new workspace
    (removed when the last column goes), and the merged reading notes; warns when the disk is nearly full."""
    ws = Workspace()
    log.info("splits on disk in %s (removed when no longer used)", ws.dir)
    notes: list[str] = []
    splits = {name: read_split(name, parts, cfg, problem_type, with_labels, fields, ws, notes)
              for name, parts in files.items()}
    free = shutil.disk_usage(data_root()).free
    if free < 2**30:
        log.warning("%.2f GB left on the disk of %s, which also takes the tokenised splits: set PLMFORGE_DATA_DIR "
                    "to a larger disk if the run stops on a full disk", free / 1e9, data_root())
    return splits, merge_chunk_notes(notes)
