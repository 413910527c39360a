"""A persistent store of frozen-backbone outputs (HDF5 via h5py), shared by every run on this machine.

Layout: `<root>/<fingerprint digest>/` holds `fingerprint.json` (everything that changes the output:
model source and a weights signature, tokenizer vocabulary, family tokenisation rules, max length,
layer, what is stored and its dtype) and shards `shard-<uuid>.h5`. A shard holds `keys` (N,),
`offsets` (N + 1,) and `values` (T, H): entry i is `values[offsets[i]:offsets[i + 1]]` — one row for a
pooled vector, one row per token for per-residue states. Entries are keyed by a hash of the record's
per-residue inputs (the sequence, plus e.g. structure tokens), so identical sequences are stored once
and reused across runs, heads, learning rates and datasets; a changed fingerprint is another
directory, so stale vectors are never returned.

Writes are atomic: a shard is written under a temporary name and renamed when complete, so a killed
run leaves at most an ignored `.tmp` file, and the next run computes only what is missing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plmforge.errors import ConfigError

FORMAT = 1
log = logging.getLogger("plmforge")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ConfigError("the embedding store needs h5py: pip install h5py") from None
    return h5py


def cache_root(configured: str | None = None) -> Path:
    """The store's root: the configured directory, $PLMFORGE_CACHE_DIR, or the user cache directory."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("PLMFORGE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plmforge" / "embeddings"


def record_key(fields: dict[str, str]) -> str:
    """Key of one record's inputs: the sequence and any further per-residue fields, by name."""
    text = "\x1f".join(f"{k}={fields[k]}" for k in sorted(fields))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def weights_signature(source: str) -> str:
    """A digest of the full content of every weight file of a model directory: it changes whenever any
    byte of the weights does. Each file's sha256 is computed once and remembered by path, size, mtime and
    inode (file_hashes.json next to the store). A hub id in the local hub cache is named by its revision
    (the cache's snapshot directory is the commit sha); one not downloaded yet by its id."""
    path = Path(source).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = Path(snapshot_download(source, local_files_only=True))
        except LocalEntryNotFoundError:  # not downloaded yet: loading it downloads the current revision
            log.info("embedding store: %s is not in the local hub cache; its entries are keyed by the id", source)
            return f"hub:{source}"
        return f"hub:{source}@{snapshot.name}"
    files = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt", ".h5", ".msgpack"))
    if not files:
        return f"dir:{path.resolve()}"
    h = hashlib.sha256()
    known = _FileHashes.load()
    for f in files:
        h.update(f"{f.relative_to(path)}:{known.sha256(f)}".encode())
    known.save()
    return h.hexdigest()[:20]


class _FileHashes:
    """sha256 of files, remembered by (resolved path, size, mtime, inode) in the store's root."""

    def __init__(self, path: Path, table: dict[str, str]) -> None:
        self.path, self.table, self.changed = path, table, False

    @classmethod
    def load(cls) -> _FileHashes:
        path = cache_root() / "file_hashes.json"
        try:
            table = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):  # a damaged record: hash again (it is only a cache)
            log.warning("embedding store: %s is unreadable; file hashes are computed again", path)
            table = {}
        return cls(path, table if isinstance(table, dict) else {})

    def sha256(self, f: Path) -> str:
        st = f.stat()
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        if key not in self.table:
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(8 << 20), b""):
                    h.update(chunk)
            self.table[key] = h.hexdigest()
            self.changed = True
        return self.table[key]

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"file_hashes.{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(self.table))
            tmp.replace(self.path)
        except OSError as exc:  # a read-only cache directory: the hashes are computed again next time
            log.warning("embedding store: cannot remember file hashes in %s (%s)", self.path, exc)


def digest(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Shard:
    path: Path
    offsets: np.ndarray
    handle: Any = None

    def read(self, i: int) -> np.ndarray:
        if self.handle is None:
            self.handle = _h5py().File(self.path, "r")
        return self.handle["values"][int(self.offsets[i]):int(self.offsets[i + 1])]

    def read_rows(self, rows: np.ndarray) -> list[np.ndarray]:
        """Several entries with one read of the value rows that span them (views into that block)."""
        if self.handle is None:
            self.handle = _h5py().File(self.path, "r")
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        first = int(starts.min())
        block = self.handle["values"][first:int(ends.max())]
        return [block[a - first:b - first] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


class _Index:
    """Where each stored key is: sorted key bytes and, per key, (shard number << 40 | row) in int64 arrays,
    about 50 bytes an entry (a dict of strings and tuples took about 250); looked up by binary search.
    The first shard (in path order) that holds a key is the one read."""

    def __init__(self, shards: list[tuple[_Shard, np.ndarray]] | None = None) -> None:
        shards = shards or []
        self.shards = [shard for shard, _ in shards]
        keys = [np.asarray(k, dtype="S40") for _, k in shards]
        where = [(n << 40) + np.arange(len(k), dtype=np.int64) for n, k in enumerate(keys)]
        both = np.concatenate(keys) if keys else np.zeros(0, dtype="S40")
        self.keys, first = np.unique(both, return_index=True)  # a stable sort: the first shard of a key wins
        self.where = np.concatenate(where)[first] if where else np.zeros(0, dtype=np.int64)

    def add(self, shard: _Shard, keys: np.ndarray) -> None:
        """A shard just written: its keys go in at their places (those held already keep their entry)."""
        self.shards.append(shard)
        keys = np.asarray(keys, dtype="S40")
        rows = np.argsort(keys, kind="stable")
        keys = keys[rows]
        pos = np.searchsorted(self.keys, keys)
        held = np.zeros(len(keys), dtype=bool)
        inside = pos < len(self.keys)
        held[inside] = self.keys[pos[inside]] == keys[inside]
        where = (len(self.shards) - 1 << 40) + rows.astype(np.int64)
        self.keys = np.insert(self.keys, pos[~held], keys[~held])
        self.where = np.insert(self.where, pos[~held], where[~held])

    def find(self, key: bytes) -> tuple[_Shard, int] | None:
        pos = int(np.searchsorted(self.keys, key))
        if pos == len(self.keys) or self.keys[pos] != key:
            return None
        where = int(self.where[pos])
        return self.shards[where >> 40], where & ((1 << 40) - 1)

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Per key (S40 bytes), its packed place (shard << 40 | row), or -1 when it is not indexed."""
        pos = np.searchsorted(self.keys, keys)
        out = np.full(len(keys), -1, dtype=np.int64)
        inside = pos < len(self.keys)
        found = np.zeros(len(keys), dtype=bool)
        found[inside] = self.keys[pos[inside]] == keys[inside]
        out[found] = self.where[pos[found]]
        return out

    def __len__(self) -> int:
        return len(self.keys)


def _bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


class EmbeddingStore:
    """Entries of one fingerprint; `put` buffers, `flush` writes one shard atomically. Keys are
    record_key strings (or their bytes)."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], flush_mb: int = 256) -> None:
        self.dir = root / digest(fingerprint)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "fingerprint.json"
        if not meta.is_file():
            tmp = meta.with_name(f"fingerprint.{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps({"format": FORMAT, **fingerprint}, indent=1, sort_keys=True))
            os.replace(tmp, meta)
        self.fingerprint = fingerprint
        self.flush_bytes = flush_mb << 20
        self.pending: dict[bytes, np.ndarray] = {}
        self.pending_bytes = 0
        self.computed = 0
        self.refresh()

    def refresh(self) -> None:
        """Index every complete shard (also those other processes wrote since)."""
        self.close()
        h5py = _h5py()
        shards = []
        for path in sorted(self.dir.glob("shard-*.h5")):
            with h5py.File(path, "r") as fh:
                shards.append((_Shard(path, fh["offsets"][()]), fh["keys"][()]))
        self.index = _Index(shards)
        os.utime(self.dir)  # last use, for `plmforge cache info`

    def __contains__(self, key: str | bytes) -> bool:
        key = _bytes(key)
        return key in self.pending or self.index.find(key) is not None

    def holds_all(self, keys: np.ndarray) -> bool:
        """Whether every key (an S40 array) is stored or pending: one vectorised look-up."""
        missing = np.asarray(keys, dtype="S40")[self.index.locate(np.asarray(keys, dtype="S40")) < 0]
        return all(_bytes(k) in self.pending for k in missing)

    def __len__(self) -> int:
        return len(self.index) + sum(self.index.find(k) is None for k in self.pending)

    def get(self, key: str | bytes) -> np.ndarray:
        key = _bytes(key)
        if key in self.pending:
            return self.pending[key]
        found = self.index.find(key)
        if found is None:
            raise KeyError(key)
        shard, i = found
        return shard.read(i)

    def get_many(self, keys: np.ndarray) -> list[np.ndarray]:
        """The entries of many keys (S40 bytes) in their order, read shard by shard in one block each:
        what `get` returns key by key, at a fraction of the cost (one HDF5 read per shard, not per key)."""
        keys = np.asarray(keys, dtype="S40")
        places = self.index.locate(keys)
        out: list[np.ndarray | None] = [None] * len(keys)
        for i in np.flatnonzero(places < 0).tolist():
            if keys[i] not in self.pending:
                raise KeyError(keys[i])
            out[i] = self.pending[keys[i]]
        held = np.flatnonzero(places >= 0)
        shards = places[held] >> 40
        for n in np.unique(shards).tolist():
            mine = held[shards == n]
            rows = places[mine] & ((1 << 40) - 1)
            for i, value in zip(mine.tolist(), self.index.shards[n].read_rows(rows), strict=True):
                out[i] = value
        return out  # type: ignore[return-value]

    def put(self, key: str | bytes, value: np.ndarray) -> None:
        if key in self:
            return
        value = np.ascontiguousarray(value)
        self.pending[_bytes(key)] = value
        self.pending_bytes += value.nbytes
        self.computed += 1
        if self.pending_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        keys = list(self.pending)
        arrays = [self.pending[k].reshape(-1, self.pending[k].shape[-1]) for k in keys]
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        name = f"shard-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}.h5"
        tmp = self.dir / (name + ".tmp")
        with _h5py().File(tmp, "w") as fh:
            fh.create_dataset("keys", data=np.array(keys, dtype="S40"))
            fh.create_dataset("offsets", data=offsets)
            fh.create_dataset("values", data=np.concatenate(arrays), chunks=True)
        os.replace(tmp, self.dir / name)  # complete or absent, never half-written
        self.index.add(_Shard(self.dir / name, offsets), np.array(keys, dtype="S40"))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        for shard in getattr(self, "index", _Index()).shards:
            if shard.handle is not None:
                shard.handle.close()
                shard.handle = None


@dataclass(frozen=True)
class StoreInfo:
    digest: str
    fingerprint: dict[str, Any]
    entries: int
    megabytes: float
    incomplete_files: int
    last_used: float


def store_infos(root: Path) -> list[StoreInfo]:
    """What the store under `root` holds, one row per fingerprint."""
    h5py = _h5py()
    out = []
    for d in sorted(p for p in root.glob("*") if (p / "fingerprint.json").is_file()):
        entries = 0
        for path in d.glob("shard-*.h5"):
            with h5py.File(path, "r") as fh:
                entries += len(fh["keys"])
        size = sum(p.stat().st_size for p in d.iterdir() if p.is_file()) / 2**20
        out.append(StoreInfo(d.name, json.loads((d / "fingerprint.json").read_text()), entries, round(size, 2),
                             len(list(d.glob("*.tmp"))), d.stat().st_mtime))
    return out


def clear_store(root: Path, model: str | None = None) -> list[str]:
    """Delete every fingerprint directory (or those whose model source contains `model`)."""
    removed = []
    for info in store_infos(root):
        if model is None or model in info.fingerprint.get("source", ""):
            shutil.rmtree(root / info.digest)
            removed.append(info.digest)
    return removed
