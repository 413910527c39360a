"""Tokenised datasets, batch samplers (fixed size or token budget) and padding collation.

Both samplers reshuffle every epoch from (seed, epoch) alone, so an interrupted run resumed at an
epoch boundary sees exactly the batches an uninterrupted run would, and no sample is ever dropped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from plmforge.tasks import ProblemType


@dataclass
class EncodedSplit(Dataset):
    """A tokenised split: every named model input per sequence (special tokens included), where the
    special tokens are, and the training targets (per sequence, or per token for residue tasks). The
    per-sequence lists may be on-disk `Ragged` columns (data.storage)."""

    inputs: dict[str, list[np.ndarray]]
    special: list[np.ndarray]
    labels: np.ndarray | list[np.ndarray] | None

    def __len__(self) -> int:
        return len(self.special)

    def __getitem__(self, i: int) -> dict:
        return {"idx": i, "inputs": {k: v[i] for k, v in self.inputs.items()}, "special": self.special[i],
                "label": None if self.labels is None else self.labels[i]}

    @property
    def lengths(self) -> np.ndarray:
        if hasattr(self.special, "lengths"):  # on disk: from the offsets, without reading the tokens
            return self.special.lengths
        return np.fromiter((len(x) for x in self.special), dtype=np.int64, count=len(self.special))


class Collator:
    """Pads a list of samples to the longest one: each named input with its family's pad value, the
    labels as the problem type says; masks mark real tokens and residue tokens."""

    def __init__(self, pad_values: dict[str, int], problem: ProblemType) -> None:
        self.pad_values = pad_values
        self.problem = problem

    def __call__(self, samples: list[dict]) -> dict:
        width = max(len(s["special"]) for s in samples)
        n = len(samples)
        inputs = {name: torch.full((n, width), pad, dtype=torch.long) for name, pad in self.pad_values.items()}
        attention = torch.zeros((n, width), dtype=torch.long)
        residue = torch.zeros((n, width), dtype=torch.bool)
        for row, s in enumerate(samples):
            k = len(s["special"])
            for name, values in s["inputs"].items():
                inputs[name][row, :k] = torch.from_numpy(values)
            attention[row, :k] = 1
            residue[row, :k] = torch.from_numpy(~s["special"])
        batch = {"idx": torch.tensor([s["idx"] for s in samples]), "inputs": inputs,
                 "attention_mask": attention, "residue_mask": residue}
        if samples[0]["label"] is not None:
            batch["labels"] = self.problem.collate_labels([s["label"] for s in samples], width)
        return batch


class _EpochSampler(Sampler[list[int]]):
    """An epoch's batches of sample indices, kept as int64 arrays (8 bytes a sample; lists of Python ints
    took about 36) and handed out as lists."""

    def __init__(self, lengths: np.ndarray, seed: int, shuffle: bool) -> None:
        self.lengths = lengths
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self._cached: list[np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._cached = None

    def _generator(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def batches(self) -> list[np.ndarray]:
        if self._cached is None:
            self._cached = self._make()
        return self._cached

    def _make(self) -> list[np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def pack_by_tokens(order: np.ndarray, lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Consecutive runs of `order` whose padded size (rows x longest row) stays within `max_tokens`; a row
    longer than that gets a run of its own."""
    batches: list[np.ndarray] = []
    current: list[int] = []
    longest = 0
    for start in range(0, len(order), 65_536):  # Python ints for a part of the order at a time
        part = order[start:start + 65_536]
        for i, length in zip(part.tolist(), lengths[part].tolist(), strict=True):
            if current and max(longest, length) * (len(current) + 1) > max_tokens:
                batches.append(np.array(current, dtype=np.int64))
                current, longest = [], 0
            current.append(i)
            longest = max(longest, length)
    if current:
        batches.append(np.array(current, dtype=np.int64))
    return batches


def micro_batches(batch: dict, max_tokens: int, per_residue: bool) -> list[dict] | None:
    """A collated training batch as length-sorted parts of at most `max_tokens` padded tokens, each cut to
    its own longest row (padding is on the right), with its labels (residue labels cut alike); None when
    the batch fits whole or is not a token batch with labels."""
    mask = batch.get("attention_mask")
    if not max_tokens or mask is None or batch.get("labels") is None or mask.numel() <= max_tokens:
        return None
    lengths = mask.sum(1).cpu().numpy()
    groups = pack_by_tokens(np.argsort(-lengths, kind="stable"), lengths, max_tokens)
    if len(groups) == 1:
        return None
    parts = []
    for rows in groups:
        index, width = torch.from_numpy(rows).to(mask.device), int(lengths[rows[0]])

        def cut(t: torch.Tensor, index: torch.Tensor = index, width: int = width) -> torch.Tensor:
            return t.index_select(0, index.to(t.device))[:, :width]

        labels = batch["labels"]
        parts.append({"idx": batch["idx"].index_select(0, index.to(batch["idx"].device)),
                      "inputs": {k: cut(v) for k, v in batch["inputs"].items()},
                      "attention_mask": cut(mask), "residue_mask": cut(batch["residue_mask"]),
                      "labels": cut(labels) if per_residue else labels.index_select(0, index.to(labels.device))})
    return parts


class SizeBatchSampler(_EpochSampler):
    """Fixed-size batches; shuffled per epoch for training, longest-first for evaluation."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, shuffle: bool) -> None:
        super().__init__(lengths, seed, shuffle)
        self.batch_size = batch_size

    def _make(self) -> list[np.ndarray]:
        n = len(self.lengths)
        order = self._generator().permutation(n) if self.shuffle else np.argsort(-self.lengths, kind="stable")
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]


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

    def _pack(self, order: np.ndarray) -> list[np.ndarray]:
        return pack_by_tokens(order, self.lengths, self.max_tokens)

    def _make(self) -> list[np.ndarray]:
        if not self.shuffle:
            return self._pack(np.argsort(-self.lengths, kind="stable"))
        rng = self._generator()
        order = rng.permutation(len(self.lengths))
        mean_len = max(float(self.lengths.mean()), 1.0)
        pool = max(int(self.pool_batches * self.max_tokens / mean_len), 1)
        batches: list[np.ndarray] = []
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
