"""Splits kept on disk: validated records and their tokens in files read by position, so a run on
millions of rows holds only a few numbers per row in memory (offsets, per-protein labels).

A `Ragged` is many variable-length arrays in one flat file; item i is read when it is asked for.
Records and tokenised splits take them wherever they would take lists (indexing, iteration, len,
`take` for subsets), so the rest of plmforge does not know where a split lives. Files go to a fresh
directory under $PLMFORGE_DATA_DIR (default: the user cache), removed once no column written there is
left, or at exit."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plmforge.errors import ConfigError

log = logging.getLogger("plmforge")

READ_ROWS = 4096  # rows read together when a whole Ragged is iterated


class RowFile:
    """A file of rows of one dtype (and trailing shape), read by position: nothing of it is mapped into
    the process (a memory map would count every page read towards the resident set), and reads at a
    position are safe in forked data-loader workers, which share the file offset."""

    def __init__(self, path: Path, dtype: Any, trailing: tuple[int, ...] = ()) -> None:
        self.path, self.dtype, self.trailing = Path(path), np.dtype(dtype), tuple(trailing)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.trailing, dtype=np.int64))
        self._open()

    def _open(self) -> None:
        self._fh = open(self.path, "rb", buffering=0)
        self._lock = threading.Lock()
        weakref.finalize(self, self._fh.close)

    def __getstate__(self) -> dict:
        return {"path": self.path, "dtype": self.dtype, "trailing": self.trailing, "row_bytes": self.row_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def read(self, start: int, end: int) -> np.ndarray:
        out = np.empty((end - start, *self.trailing), self.dtype)
        if out.nbytes:
            view = memoryview(out).cast("B")
            if hasattr(os, "preadv"):
                got = os.preadv(self._fh.fileno(), [view], start * self.row_bytes)
            elif hasattr(os, "pread"):
                data = os.pread(self._fh.fileno(), out.nbytes, start * self.row_bytes)
                view[:len(data)] = data
                got = len(data)
            else:  # no positional reads (Windows): a lock, and workers are spawned with their own handle
                with self._lock:
                    self._fh.seek(start * self.row_bytes)
                    got = self._fh.readinto(view)
            if got != out.nbytes:
                raise OSError(f"{self.path}: {got} of {out.nbytes} bytes read: the on-disk split was changed")
        return out


class Ragged(Sequence):
    """Items `rows[starts[i]:ends[i]]` of a RowFile; each read when asked for, a fresh array."""

    def __init__(self, rows: RowFile, starts: np.ndarray, ends: np.ndarray, owner: Any = None) -> None:
        self.rows, self.starts, self.ends = rows, starts, ends
        self.owner = owner  # the Workspace whose files these are: kept alive while any view of them is

    def __len__(self) -> int:
        return len(self.starts)

    def _wrap(self, block: np.ndarray) -> Any:
        return block

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        i = int(i)
        return self._wrap(self.rows.read(int(self.starts[i]), int(self.ends[i])))

    def __iter__(self) -> Iterator[Any]:
        for a in range(0, len(self), READ_ROWS):
            starts, ends = self.starts[a:a + READ_ROWS], self.ends[a:a + READ_ROWS]
            if (starts[1:] == ends[:-1]).all():  # consecutive rows: one read
                block = self.rows.read(int(starts[0]), int(ends[-1]))
                yield from (self._wrap(block[x:y]) for x, y in zip(starts - starts[0], ends - starts[0], strict=True))
            else:
                yield from (self[k] for k in range(a, a + len(starts)))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    @property
    def lengths(self) -> np.ndarray:
        return (self.ends - self.starts).astype(np.int64)

    def take(self, idx: Sequence[int] | np.ndarray) -> Ragged:
        idx = np.asarray(idx, dtype=np.int64)
        return type(self)(self.rows, self.starts[idx], self.ends[idx], self.owner)

    def __add__(self, other: object) -> Any:
        raise TypeError("on-disk columns are pooled when they are read (bigsplit.read_split), not concatenated")


class Strings(Ragged):
    """UTF-8 text per item."""

    def _wrap(self, block: np.ndarray) -> str:
        return block.tobytes().decode("utf-8")


class Objects(Strings):
    """Object arrays (e.g. a set of classes or None per residue), stored as JSON text per item."""

    def _wrap(self, block: np.ndarray) -> np.ndarray:
        items = json.loads(super()._wrap(block))
        out = np.empty(len(items), dtype=object)
        for k, x in enumerate(items):
            out[k] = x
        return out


class RaggedWriter:
    """Appends items to `path` and returns them as a Ragged column. Numeric arrays are stored as they
    are; object arrays (items of Python lists) as JSON text."""

    def __init__(self, path: Path, dtype: Any = None, text: bool = False, owner: Any = None) -> None:
        self.path, self.text, self.owner = path, text, owner
        self.objects = False
        self.dtype = np.dtype(np.uint8 if text else dtype) if (text or dtype is not None) else None
        self.trailing: tuple[int, ...] | None = None
        self._fh = open(path, "wb")
        self._lengths: list[np.ndarray] = []

    def extend(self, items: Sequence[Any]) -> None:
        try:
            self._extend(items)
        except OSError as exc:  # e.g. a full disk
            self._fh.close()
            raise ConfigError(f"could not write the on-disk split {self.path}: {exc.strerror or exc}. Free some "
                              "space, set PLMFORGE_DATA_DIR to a directory on a larger disk, or read the splits into "
                              "memory (data.storage=memory)") from None

    def _extend(self, items: Sequence[Any]) -> None:
        if not self.text and not self._lengths and len(items) and np.asarray(items[0]).dtype == object:
            self.text = self.objects = True
            self.dtype = np.dtype(np.uint8)
        if self.objects:
            items = [json.dumps([_plain(x) for x in item], default=lambda v: v.item()) for item in items]
        if self.text:
            blobs = [s.encode("utf-8") for s in items]
            self._fh.write(b"".join(blobs))
            self._lengths.append(np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)))
            return
        arrays = [np.asarray(x) for x in items]
        if not arrays:
            return
        if any(a.dtype == object for a in arrays):
            raise ValueError(f"{self.path.name}: object arrays after numeric ones")
        if self.dtype is None:
            self.dtype = arrays[0].dtype
        if self.trailing is None:
            self.trailing = arrays[0].shape[1:]
        for a in arrays:
            if a.shape[1:] != self.trailing:
                raise ValueError(f"{self.path.name}: item of shape {a.shape} among items of shape (n, {self.trailing})")
        self._fh.write(np.ascontiguousarray(np.concatenate(arrays).astype(self.dtype, copy=False)).tobytes())
        self._lengths.append(np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays)))

    def finish(self) -> Ragged:
        self._fh.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        rows = RowFile(self.path, self.dtype or np.dtype(np.int64), self.trailing or ())
        return (Objects if self.objects else Strings if self.text else Ragged)(rows, starts, ends, self.owner)


def _plain(x: Any) -> Any:
    return x.tolist() if isinstance(x, np.ndarray) else list(x) if isinstance(x, tuple) else x


def take(column: Any, idx: Sequence[int]) -> Any:
    """A subset of a list or of an on-disk column, in the order of `idx`."""
    if isinstance(column, Ragged):
        return column.take(idx)
    if isinstance(column, np.ndarray):
        return column[np.asarray(idx, dtype=np.int64)]
    return [column[i] for i in idx]


def on_disk(column: Any) -> bool:
    return isinstance(column, Ragged)


# ---- where the files go --------------------------------------------------------------------------
def data_root() -> Path:
    """$PLMFORGE_DATA_DIR, else plmforge/ondisk in the user cache directory (a real disk: /tmp is often
    memory)."""
    env = os.environ.get("PLMFORGE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plmforge" / "ondisk"


class Workspace:
    """A fresh directory for one load of the data, removed when no column written into it is left
    (or when the process exits)."""

    def __init__(self) -> None:
        root = data_root()
        root.mkdir(parents=True, exist_ok=True)
        _remove_orphans(root)
        self.dir = Path(tempfile.mkdtemp(prefix=f"split-{os.getpid()}-", dir=root))
        self._n = 0
        weakref.finalize(self, shutil.rmtree, self.dir, True)

    def writer(self, name: str, dtype: Any = None, text: bool = False) -> RaggedWriter:
        self._n += 1
        return RaggedWriter(self.dir / f"{self._n:03d}-{name}.bin", dtype, text, owner=self)


def _remove_orphans(root: Path) -> None:
    """Directories left by processes that were killed (kill -9, out of memory) before they could clean up."""
    for d in root.glob("split-*-*"):
        try:
            pid = int(d.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or a platform that cannot tell: leave it
    return True
