"""Which sample goes to which cross-validation fold, and which to a carved validation split.

Folds are stratified by the problem type's strata (classes; binned values for regression) and keep
groups apart when the user names a group column (a sequence-cluster or family id): every member of a
group lands in the same fold, so homologous proteins never sit on both sides of a split. Everything is
seeded, so a fold sub-run re-creates its split from the config alone.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from plmforge.errors import ConfigError, DataError

log = logging.getLogger("plmforge")


def assign_folds(n: int, k: int, seed: int, strata: np.ndarray | None = None, groups: list[str] | None = None,
                 *, source: str = "", group_column: str | None = None) -> np.ndarray:
    """The fold (0..k-1) of each of `n` samples."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {k}")
    if n < k:
        raise DataError(f"only {n} samples to split into {k} folds", file=source,
                        hint="use fewer folds (cv.folds), or more data")
    if groups is not None:
        distinct = len(set(groups))
        if distinct < k:
            raise DataError(f"only {distinct} distinct groups in column {group_column!r}: {k} folds cannot keep "
                            "groups apart", file=source, hint="use fewer folds, or finer groups")
        splitter = (StratifiedGroupKFold(k, shuffle=True, random_state=seed) if strata is not None
                    else GroupKFold(k, shuffle=True, random_state=seed))
    elif strata is not None:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(k, shuffle=True, random_state=seed)
    if strata is not None:
        values, counts = np.unique(strata, return_counts=True)
        few = [str(v) for v, c in zip(values, counts) if c < k]
        if few:
            log.warning("stratum(s) %s have fewer than %d samples: not every fold can hold one of each",
                        ", ".join(few[:5]), k)
    fold = np.full(n, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn's "least populated class" (said above)
        for i, (_, held) in enumerate(splitter.split(np.zeros(n), strata, groups)):
            fold[held] = i
    sizes = np.bincount(fold, minlength=k)
    if (sizes == 0).any():
        raise DataError(f"fold sizes {sizes.tolist()}: a fold is empty", file=source,
                        hint="use fewer folds, or finer groups")
    return fold


def group_split(n: int, fraction: float, seed: int, strata: np.ndarray | None, groups: list[str], *,
                source: str = "", group_column: str | None = None) -> tuple[list[int], list[int]]:
    """Train and validation indices with whole groups on one side: the first of round(1/fraction) group
    folds (its size is close to, not exactly, the fraction)."""
    k = max(2, int(round(1 / fraction)))
    fold = assign_folds(n, k, seed, strata, groups, source=source, group_column=group_column)
    return np.flatnonzero(fold != 0).tolist(), np.flatnonzero(fold == 0).tolist()


def straddling_groups(a: list[str], b: list[str]) -> set[str]:
    return set(a) & set(b)
