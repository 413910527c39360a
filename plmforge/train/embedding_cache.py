"""Frozen-backbone outputs for training, from the persistent embedding store (plmforge/store.py), so
the backbone runs once per distinct sequence — in this run and in every later run that shares the
model, its settings and the sequences. What is kept follows the head: one pooled vector per protein
for mean pooling, per-token states for the other heads and for residue tasks. Batches read their
entries from disk, so memory does not grow with the dataset."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from plmforge.heads import masked_mean
from plmforge.store import EmbeddingStore

Encode = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


class StoreCache:
    def __init__(self, store: EmbeddingStore, keys: dict[str, np.ndarray], pooled: bool, dtype: str) -> None:
        self.store = store
        self.keys = keys  # per split, the store key (bytes) of every sample
        self.pooled = pooled
        self.dtype = np.dtype(dtype)

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

    def hidden(self, split: str, batch: dict, encode: Encode) -> torch.Tensor:
        """Pooled vectors (B, H) or per-token states (B, L, H) for the batch; what is missing is computed
        and stored first, so a batch always sees the stored values (also when stored as float16)."""
        self.fill(split, batch, encode)
        keys = [self.keys[split][i] for i in batch["idx"].tolist()]
        items = [torch.from_numpy(np.asarray(self.store.get(k), dtype=np.float32)) for k in keys]
        device = batch["attention_mask"].device
        if self.pooled:
            return torch.stack([x.reshape(-1) for x in items]).to(device)  # (B, H)
        out = items[0].new_zeros((len(items), batch["attention_mask"].shape[1], items[0].shape[-1]))  # (B, L, H)
        for row, item in enumerate(items):
            out[row, : item.shape[0]] = item
        return out.to(device)
