"""Frozen-backbone outputs for training, from the persistent embedding store (plmforge/store.py), so
the backbone runs once per distinct sequence — in this run and in every later run that shares the
model, its settings and the sequences. What is kept follows the head: one pooled vector per protein
for mean pooling, per-token states for the other heads and for residue tasks.

Once a split's entries are all in the store, they are held in memory when they fit the budget
(`method.cache_memory_mb`; pooled vectors practically always do): every epoch, trial and fold then
indexes a tensor instead of reading the store batch by batch, and a pooled head's batches carry only
indices and labels (no tokens are padded). Values are the stored ones either way (float16 entries are
widened the same way), so a run gives the same numbers to the last digit whichever path it takes."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from plmforge.heads import masked_mean
from plmforge.store import EmbeddingStore

Encode = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
log = logging.getLogger("plmforge")
# splits held by earlier runs of this process (a sweep's trials, cross-validation's folds), by store
# directory, kind and the split's keys: the next run takes them without reading the store again
_HELD: OrderedDict[tuple[str, bool, str], tuple[torch.Tensor | _Ragged, float]] = OrderedDict()


def available_mb() -> float:
    """Memory the system has available now (MB); 8 GB when the platform does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return 8192.0


class _Ragged:
    """Per-token states of a split in one (tokens, H) tensor, each sample a view at its offset."""

    def __init__(self, items: list[np.ndarray]) -> None:
        lengths = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
        self.starts = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        self.values = torch.from_numpy(np.concatenate([np.asarray(x, dtype=np.float32) for x in items]))

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.values[self.starts[i]:self.starts[i + 1]]


class StoreCache:
    def __init__(self, store: EmbeddingStore, keys: dict[str, np.ndarray], pooled: bool, dtype: str,
                 memory_mb: float | None = None) -> None:
        self.store = store
        self.keys = keys  # per split, the store key (bytes) of every sample
        self.pooled = pooled
        self.dtype = np.dtype(dtype)
        self.budget_mb = available_mb() / 4 if memory_mb is None else float(memory_mb)
        self.memory: dict[str, torch.Tensor | _Ragged] = {}  # per split: (N, H) pooled, or per-token states
        self.used_mb = 0.0

    def missing(self, split: str, batch: dict) -> bool:
        return any(self.keys[split][i] not in self.store for i in batch["idx"].tolist())

    def fill(self, split: str, batch: dict, encode: Encode) -> None:
        """Compute and store the batch's entries that the store lacks."""
        keys = [self.keys[split][i] for i in batch["idx"].tolist()]
        if all(k in self.store for k in keys):
            return
        states = encode(batch["inputs"], batch["attention_mask"]).float()  # (B, L, H)
        values = masked_mean(states, batch["residue_mask"]) if self.pooled else states  # (B, H) or (B, L, H)
        lengths = batch["attention_mask"].sum(1).tolist()
        for key, row, n in zip(keys, values, lengths, strict=True):
            if key not in self.store:
                self.store.put(key, (row if self.pooled else row[:n]).cpu().numpy().astype(self.dtype))

    # ---- in memory ------------------------------------------------------------------------------
    def load(self, split: str, lengths: np.ndarray, hidden_size: int) -> bool:
        """Hold the split's stored entries in memory if all are stored and they fit what is left of the
        budget; returns whether the split is in memory."""
        if split in self.memory:
            return True
        keys = self.keys[split]
        width = 1 if self.pooled else int(lengths.sum()) / max(len(lengths), 1)
        need_mb = len(keys) * width * hidden_size * 4 / 2**20
        if self.budget_mb <= 0 or need_mb > self.budget_mb - self.used_mb:
            if self.budget_mb > 0:
                log.info("embedding store: the %s split's %s (%.0f MB) exceed the in-memory budget "
                         "(method.cache_memory_mb, %.0f MB left): its batches are read from the store", split,
                         "pooled vectors" if self.pooled else "per-token states", need_mb,
                         self.budget_mb - self.used_mb)
            return False
        shared = (str(self.store.dir), self.pooled, hashlib.sha1(keys.tobytes()).hexdigest())
        if shared in _HELD:
            _HELD.move_to_end(shared)
            self.memory[split] = _HELD[shared][0]
        elif not self.store.holds_all(keys):
            return False
        else:
            items = self.store.get_many(keys)
            if self.pooled:
                self.memory[split] = torch.from_numpy(np.stack([np.asarray(x, dtype=np.float32).reshape(-1)
                                                                for x in items]))  # (N, H)
            else:
                self.memory[split] = _Ragged(items)
            _keep(shared, self.memory[split], need_mb, self.budget_mb)
        self.used_mb += need_mb
        log.info("embedding store: the %s split's %d %s held in memory (%.1f MB)", split, len(keys),
                 "pooled vectors" if self.pooled else "per-token states", need_mb)
        return True

    def hidden(self, split: str, batch: dict, encode: Encode) -> torch.Tensor:
        """Pooled vectors (B, H) or per-token states (B, L, H) for the batch; what is missing is computed
        and stored first, so a batch always sees the stored values (also when stored as float16)."""
        idx = batch["idx"].cpu()
        held = self.memory.get(split)
        if self.pooled and isinstance(held, torch.Tensor):
            return held[idx].to(batch["idx"].device)  # (B, H)
        if held is not None:
            items = [held[i] for i in idx.tolist()]
        else:
            self.fill(split, batch, encode)
            keys = [self.keys[split][i] for i in idx.tolist()]
            items = [torch.from_numpy(np.asarray(self.store.get(k), dtype=np.float32)) for k in keys]
        device = batch["attention_mask"].device
        if self.pooled:
            return torch.stack([x.reshape(-1) for x in items]).to(device)  # (B, H)
        out = items[0].new_zeros((len(items), batch["attention_mask"].shape[1], items[0].shape[-1]))  # (B, L, H)
        for row, item in enumerate(items):
            out[row, : item.shape[0]] = item
        return out.to(device)


def _keep(key: tuple[str, bool, str], value: torch.Tensor | _Ragged, mb: float, budget_mb: float) -> None:
    """Remember a loaded split for later runs of this process, forgetting the oldest beyond the budget."""
    _HELD[key] = (value, mb)
    while sum(m for _, m in _HELD.values()) > budget_mb and len(_HELD) > 1:
        _HELD.popitem(last=False)


class PooledSplit(Dataset):
    """A split whose pooled vectors are in memory, as the batches of a pooled head need it: each sample
    is its index and label (the vectors are indexed from the cache; no tokens are read or padded). It
    answers the questions the samplers and the inference loop ask of a tokenised split."""

    def __init__(self, encoded: Any) -> None:
        self.encoded = encoded
        self.labels = encoded.labels
        self.special = encoded.special
        self._lengths = encoded.lengths  # the samplers group by length exactly as on the tokenised split

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, i: int) -> dict:
        return {"idx": i, "label": None if self.labels is None else self.labels[i]}


class PooledCollator:
    """Indices and labels of a batch of pooled samples."""

    def __init__(self, problem: Any) -> None:
        self.problem = problem

    def __call__(self, samples: list[dict]) -> dict:
        batch = {"idx": torch.tensor([s["idx"] for s in samples])}
        if samples[0]["label"] is not None:
            batch["labels"] = self.problem.collate_labels([s["label"] for s in samples], 0)
        return batch
