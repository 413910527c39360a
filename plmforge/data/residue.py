"""Per-residue labels: parsing the accepted formats, masks, and alignment to tokens.

Accepted label values (one per sequence):
- a string with one symbol per residue, e.g. `NNPPN` or `HHEEC`; symbols map to classes through
  data.residue_classes (e.g. `N,P` -> N=0, P=1); without it the symbols must be digits;
- a list (JSON text, or a real list in Parquet/JSON Lines) of class indices, symbols or numbers;
- with data.label_format=positions: the 1-based positions labelled 1 (all others 0), e.g. `3,17`.
An optional mask column (string or list of 0/1) marks residues to ignore (0) in loss and metrics.
Masked or missing positions hold IGNORE (classification) or NaN (regression)."""

from __future__ import annotations

import json
import math

import numpy as np

from plmforge.errors import DataError

IGNORE = -100


def _as_items(value: object) -> list | str:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value).strip()
    if text.startswith("["):
        try:
            return list(json.loads(text))
        except json.JSONDecodeError:
            raise ValueError(f"not valid JSON: {text[:40]!r}") from None
    return text


def _class_of(item: object, classes: tuple[str, ...] | None, pos: int) -> int:
    if classes is not None and str(item) in classes:
        return classes.index(str(item))
    if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
        return int(item)
    if isinstance(item, float) and item.is_integer():
        return int(item)
    known = f"data.residue_classes is {','.join(classes)}" if classes else "data.residue_classes is not set"
    raise ValueError(f"unknown residue label {item!r} at position {pos} ({known})")


def parse_residue_labels(value: object, n: int, problem_type: str, classes: tuple[str, ...] | None,
                         label_format: str, err: dict) -> np.ndarray:
    """Labels of one sequence of n residues: int64 (n,), float64 (n,), or multi-label lists."""
    try:
        if label_format == "positions":
            out = np.zeros(n, dtype=np.int64)
            text = str(value).strip().strip("[]")
            for p in (x.strip() for x in text.split(",") if x.strip()):
                pos = int(p)
                if not 1 <= pos <= n:
                    raise ValueError(f"position {pos} is outside the sequence (1..{n})")
                out[pos - 1] = 1
            return out
        items = _as_items(value)
    except ValueError as exc:
        raise DataError(f"residue labels: {exc}", hint="see the residue label formats in the README", **err) from None
    if len(items) != n:
        raise DataError(f"{len(items)} residue labels for a sequence of {n} residues",
                        hint="give exactly one label per residue (or use data.label_format=positions)", **err)
    try:
        if problem_type == "residue_regression":
            vals = np.asarray([float(x) for x in items], dtype=np.float64)
            if not np.isfinite(vals[~np.isnan(vals)]).all():
                raise ValueError("labels must be finite numbers")
            return vals
        if problem_type == "residue_multi_label_classification":
            return np.asarray([_multi(x) for x in items], dtype=object)
        return np.asarray([_class_of(x, classes, i + 1) for i, x in enumerate(items)], dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"residue labels: {exc}", hint="fix the label string/list, or set data.residue_classes",
                        **err) from None


def _multi(item: object) -> list[int]:
    if isinstance(item, (list, tuple, np.ndarray)):
        return [int(x) for x in item]
    text = str(item).strip()
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def parse_mask(value: object, n: int, err: dict) -> np.ndarray:
    """True where the residue counts; the mask gives 1 (use) or 0 (ignore) per residue."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.ones(n, dtype=bool)
    items = _as_items(value)
    if len(items) != n:
        raise DataError(f"mask has {len(items)} entries for a sequence of {n} residues",
                        hint="give one 0/1 per residue", **err)
    bad = [x for x in items if str(x) not in ("0", "1", "True", "False")]
    if bad:
        raise DataError(f"mask value {bad[0]!r} is not 0 or 1", hint="use 1 for residues to score, 0 to ignore",
                        **err)
    return np.asarray([str(x) in ("1", "True") for x in items], dtype=bool)


def apply_mask(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = labels.copy()
    if out.dtype == np.float64:
        out[~mask] = np.nan
    elif out.dtype == object:
        out[~mask] = None
    else:
        out[~mask] = IGNORE
    return out


def token_labels(labels: np.ndarray, special: np.ndarray, problem_type: str, num_labels: int) -> np.ndarray:
    """Labels aligned to tokens: special tokens (CLS/BOS/EOS) get IGNORE/NaN; residues beyond a
    truncation are dropped by the caller (they have no token)."""
    n_res = int((~special).sum())
    kept = labels[:n_res]
    if problem_type == "residue_multi_label_classification":
        out = np.full((len(special), num_labels), np.nan, dtype=np.float32)
        rows = np.zeros((n_res, num_labels), dtype=np.float32)
        for i, classes in enumerate(kept):
            if classes is None:
                rows[i] = np.nan
            else:
                rows[i, classes] = 1.0
        out[~special] = rows
        return out
    if problem_type == "residue_regression":
        out = np.full(len(special), np.nan, dtype=np.float32)
        out[~special] = kept
        return out
    out = np.full(len(special), IGNORE, dtype=np.int64)
    out[~special] = kept
    return out


def counted(labels: np.ndarray) -> int:
    """Residues that count (not masked)."""
    if labels.dtype == object:
        return int(sum(x is not None for x in labels))
    if labels.dtype.kind == "f":
        return int((~np.isnan(labels)).sum())
    return int((labels != IGNORE).sum())
