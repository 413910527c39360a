"""Tokenised datasets, batch samplers (fixed size or token budget) and padding collation.

Both samplers reshuffle every epoch from (seed, epoch) alone, so an interrupted run resumed at an
epoch boundary sees exactly the batches an uninterrupted run would, and no sample is ever dropped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from plmforge.data.residue import IGNORE
from plmforge.tasks import is_residue


@dataclass
class EncodedSplit(Dataset):
    input_ids: list[np.ndarray]
    special: list[np.ndarray]
    labels: np.ndarray | list[np.ndarray] | None  # (N,) or (N, C); per-token arrays for residue tasks

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"idx": i, "input_ids": self.input_ids[i], "special": self.special[i],
                "label": None if self.labels is None else self.labels[i]}

    def residue_labels(self) -> list[np.ndarray] | None:
        """Residue tasks: each sequence's labels at its residue tokens only (special tokens dropped)."""
        if self.labels is None:
            return None
        return [y[~sp] for y, sp in zip(self.labels, self.special, strict=True)]

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


class Collator:
    """Pads a list of samples to the longest one; masks mark real tokens and residue tokens."""

    def __init__(self, pad_id: int, label_dtype: torch.dtype, residue: bool = False) -> None:
        self.pad_id = pad_id
        self.label_dtype = label_dtype
        self.residue = residue  # labels are per token: padded with IGNORE (classes) or NaN (values)

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(s["input_ids"]) for s in samples)
        n = len(samples)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        residue = torch.zeros((n, width), dtype=torch.bool)
        for row, s in enumerate(samples):
            k = len(s["input_ids"])
            ids[row, :k] = torch.from_numpy(s["input_ids"])
            attention[row, :k] = 1
            residue[row, :k] = torch.from_numpy(~s["special"])
        batch = {"idx": torch.tensor([s["idx"] for s in samples]), "input_ids": ids,
                 "attention_mask": attention, "residue_mask": residue}
        if samples[0]["label"] is not None and self.residue:
            first = np.asarray(samples[0]["label"])
            fill = IGNORE if first.dtype.kind == "i" else np.nan
            labels = np.full((n, width, *first.shape[1:]), fill, dtype=first.dtype)
            for row, s in enumerate(samples):
                labels[row, : len(s["label"])] = s["label"]
            batch["labels"] = torch.as_tensor(labels, dtype=self.label_dtype)
        elif samples[0]["label"] is not None:
            batch["labels"] = torch.as_tensor(np.stack([np.asarray(s["label"]) for s in samples]),
                                              dtype=self.label_dtype)
        return batch


class _EpochSampler(Sampler[list[int]]):
    def __init__(self, lengths: np.ndarray, seed: int, shuffle: bool) -> None:
        self.lengths = lengths
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self._cached: list[list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._cached = None

    def _generator(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def batches(self) -> list[list[int]]:
        if self._cached is None:
            self._cached = self._make()
        return self._cached

    def _make(self) -> list[list[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class SizeBatchSampler(_EpochSampler):
    """Fixed-size batches; shuffled per epoch for training, longest-first for evaluation."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, shuffle: bool) -> None:
        super().__init__(lengths, seed, shuffle)
        self.batch_size = batch_size

    def _make(self) -> list[list[int]]:
        n = len(self.lengths)
        order = self._generator().permutation(n) if self.shuffle else np.argsort(-self.lengths, kind="stable")
        return [order[i:i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]


class TokenBudgetBatchSampler(_EpochSampler):
    """Batches whose padded size (rows x longest row) stays within `max_tokens`.

    Training: shuffle, sort within pools of ~50 batches so lengths in a batch are similar, pack,
    then shuffle the batch order. A sequence longer than the budget gets a batch of its own."""

    def __init__(self, lengths: np.ndarray, max_tokens: int, seed: int, shuffle: bool, pool_batches: int = 50) -> None:
        super().__init__(lengths, seed, shuffle)
        self.max_tokens = max_tokens
        self.pool_batches = pool_batches

    @property
    def over_budget(self) -> int:
        return int((self.lengths > self.max_tokens).sum())

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order.tolist():
            length = int(self.lengths[i])
            if current and max(longest, length) * (len(current) + 1) > self.max_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, length)
        if current:
            batches.append(current)
        return batches

    def _make(self) -> list[list[int]]:
        if not self.shuffle:
            return self._pack(np.argsort(-self.lengths, kind="stable"))
        rng = self._generator()
        order = rng.permutation(len(self.lengths))
        mean_len = max(float(self.lengths.mean()), 1.0)
        pool = max(int(self.pool_batches * self.max_tokens / mean_len), 1)
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(self._pack(chunk))
        return [batches[i] for i in rng.permutation(len(batches))]


def make_batch_sampler(lengths: np.ndarray, mode: str, batch_size: int, max_tokens: int, seed: int,
                       shuffle: bool) -> _EpochSampler:
    if mode == "tokens":
        return TokenBudgetBatchSampler(lengths, max_tokens, seed, shuffle)
    return SizeBatchSampler(lengths, batch_size, seed, shuffle)


def collator_for(problem_type: str, pad_id: int) -> Collator:
    dtype = torch.long if problem_type.endswith("single_label_classification") else torch.float32
    return Collator(pad_id, dtype, residue=is_residue(problem_type))
