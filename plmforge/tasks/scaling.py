"""Label normalisation (regression): statistics come from the training split, are saved with the run,
and are inverted at prediction so values come out in the user's units."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np

from plmforge.errors import DataError


@dataclass(frozen=True)
class LabelScaler:
    kind: str  # 'none', 'standard' or 'min_max'
    shift: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, kind: str, values: np.ndarray) -> LabelScaler:
        return cls.fit_parts(kind, lambda: iter([np.asarray(values, dtype=np.float64)]))

    @classmethod
    def fit_parts(cls, kind: str, parts: Callable[[], Iterator[np.ndarray]]) -> LabelScaler:
        """Statistics over values that come in parts (`parts()` starts them again; a split on disk is never
        held whole): one part gives numpy's own mean and std, several the same two-pass sums."""
        if kind == "none":
            return cls("none")
        if kind == "standard":
            head = list(islice(parts(), 2))
            if len(head) == 1:
                mean, std = float(np.mean(head[0])), float(np.std(head[0]))
            else:
                n, total = 0, 0.0
                for p in parts():
                    n, total = n + len(p), total + float(p.sum())
                mean = total / max(n, 1)
                std = float(np.sqrt(sum(float(((p - mean) ** 2).sum()) for p in parts()) / max(n, 1)))
            if std == 0.0 or not np.isfinite(std):
                raise DataError("all training labels are equal, so they cannot be standardised",
                                hint="check the label column, or set data.label_normalisation=none")
            return cls(kind, mean, std)
        lo = hi = None
        for p in parts():
            if len(p):
                lo = float(np.min(p)) if lo is None else min(lo, float(np.min(p)))
                hi = float(np.max(p)) if hi is None else max(hi, float(np.max(p)))
        if hi == lo:
            raise DataError("all training labels are equal, so min-max scaling is undefined",
                            hint="check the label column, or set data.label_normalisation=none")
        return cls(kind, lo, hi - lo)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.shift) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale + self.shift

    def to_dict(self) -> dict:
        return asdict(self)
