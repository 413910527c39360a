"""Label normalisation (regression): statistics come from the training split, are saved with the run,
and are inverted at prediction so values come out in the user's units."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from plmforge.errors import DataError


@dataclass(frozen=True)
class LabelScaler:
    kind: str  # 'none', 'standard' or 'min_max'
    shift: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, kind: str, values: np.ndarray) -> LabelScaler:
        if kind == "none":
            return cls("none")
        if kind == "standard":
            std = float(np.std(values))
            if std == 0.0:
                raise DataError("all training labels are equal, so they cannot be standardised",
                                hint="check the label column, or set data.label_normalisation=none")
            return cls(kind, float(np.mean(values)), std)
        lo, hi = float(np.min(values)), float(np.max(values))
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
