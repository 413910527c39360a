"""Bootstrap confidence intervals for test metrics.

Resampling is over the items a user has (proteins): for residue tasks a resample draws whole proteins
with all their residues, never single residues, because residues of one protein are not independent.
Resamples are drawn as sklearn.utils.resample draws them (numpy RandomState(seed).randint per
resample), so a run's intervals can be reproduced with scikit-learn alone.

A resample is a vector of counts (how often each protein was drawn), and the metrics below are computed
for a block of resamples at a time (about a million weights) from these counts as weights, which equals
computing them on the resampled arrays (tested against that, metric by metric); any other metric is
computed resample by resample. What does not depend on the weights (which units share a score, the
per-protein rows of f1_max) is computed once per call and shared by the blocks.
The interval is the percentile interval (2.5th and 97.5th percentiles for 95 %); resamples on which a
metric is undefined (e.g. AUROC when a resample holds one class) are left out and counted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

DEFAULT_RESAMPLES = 1000
_CELLS = 1_000_000  # resamples x units handled at once (8 MB a float64 array)


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    undefined: int = 0  # resamples on which the metric had no value

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, **({"undefined_resamples": self.undefined} if self.undefined else {})}


class Resamples:
    """The bootstrap resamples of n items as count vectors (how often each item is in a resample),
    drawn as sklearn.utils.resample draws them. They are drawn again, block by block, on every pass
    rather than held: resamples x n counts would be 4 GB for 1000 resamples of a million proteins."""

    def __init__(self, n: int, resamples: int, seed: int) -> None:
        self.n, self.resamples, self.seed = n, resamples, seed

    def __len__(self) -> int:
        return self.resamples

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        """(<= rows, n) int32 blocks of count rows, in order; the same rows on every call."""
        rs = np.random.RandomState(self.seed)
        for start in range(0, self.resamples, rows):
            block = np.empty((min(rows, self.resamples - start), self.n), dtype=np.int32)
            for r in range(len(block)):
                block[r] = np.bincount(rs.randint(0, self.n, size=self.n), minlength=self.n)
            yield block


class _Given(Resamples):
    """Count rows already drawn (tests, callers holding them)."""

    def __init__(self, counts: np.ndarray) -> None:
        super().__init__(counts.shape[1], len(counts), 0)
        self.counts = counts

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.counts), rows):
            yield self.counts[start:start + rows]


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: row r says how often each item is in resample r."""
    blocks = list(Resamples(n, resamples, seed).blocks(max(resamples, 1)))
    return np.concatenate(blocks) if blocks else np.zeros((0, n), dtype=np.int32)


def resampled_metrics(problem: Any, names: tuple[str, ...], labels: Any, scores: Any,
                      counts: Resamples | np.ndarray) -> dict[str, np.ndarray]:
    """Each metric on each resample: {name: (resamples,)}. `labels`/`scores` as the problem type's
    metrics take them (per protein; residue tasks: one array per protein). Memory is bounded by
    blocks of resamples x units (_CELLS), whatever the number of proteins."""
    draws = counts if isinstance(counts, Resamples) else _Given(counts)
    (y, p), owner, per_item = _units(problem, labels, scores)
    parts: dict[str, list[np.ndarray]] = {}
    has = np.isfinite(per_item) if per_item is not None else None
    per_sequence = has is not None and "accuracy_per_sequence" in problem.metrics((), labels[:1], scores[:1])
    width = y.shape[1] if y.ndim == 2 and "auprc" in names else 1  # multi-label auprc: (resamples, units x labels)
    _local.cache = {}
    try:
        for block in draws.blocks(max(1, _CELLS // max(len(owner) * width, draws.n, 1))):
            w = block[:, owner].astype(np.float64)
            for name in names:
                if name in WEIGHTED:
                    parts.setdefault(name, []).append(WEIGHTED[name](y, p, w))
            if per_sequence:  # the mean of per-protein accuracies over proteins with labelled residues
                assert per_item is not None and has is not None
                with np.errstate(invalid="ignore", divide="ignore"):
                    parts.setdefault("accuracy_per_sequence", []).append(
                        (block[:, has] @ per_item[has]) / block[:, has].sum(1))
    finally:
        _local.cache = None
    out = {k: np.concatenate(v) for k, v in parts.items()}
    slow = tuple(n for n in names if n not in WEIGHTED)
    if slow:
        out.update({k: v for k, v in _loop(problem, slow, labels, scores, draws).items() if k in slow})
    return out


def _units(problem: Any, labels: Any, scores: Any) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray,
                                                            np.ndarray | None]:
    """The flattened metric inputs, for each unit the index of the protein it belongs to, and (residue
    tasks with classes) each protein's accuracy."""
    y, p = problem.flat(labels, scores)
    if not isinstance(labels, list):
        return (y, p), np.arange(len(y)), None
    per = [problem.flat([lab], [sc]) for lab, sc in zip(labels, scores, strict=True)]
    acc = np.array([float((pp.argmax(1) == yy).mean()) if len(yy) and pp.ndim == 2 and yy.ndim == 1 else np.nan
                    for yy, pp in per])
    return (y, p), np.repeat(np.arange(len(per)), [len(yy) for yy, _ in per]), acc


def _loop(problem: Any, names: tuple[str, ...], labels: Any, scores: Any,
          counts: Resamples | np.ndarray) -> dict[str, np.ndarray]:
    """Metrics computed on each resample's arrays (the reference the weighted forms are tested against)."""
    draws = counts if isinstance(counts, Resamples) else _Given(counts)
    rows: dict[str, list[float]] = {}
    for c in (row for block in draws.blocks(16) for row in block):
        idx = np.repeat(np.arange(len(c)), c)
        if isinstance(labels, list):
            lab, sc = [labels[i] for i in idx], [scores[i] for i in idx]
        else:
            lab, sc = labels[idx], scores[idx]
        for k, v in problem.metrics(names, lab, sc).items():
            rows.setdefault(k, []).append(v)
    return {k: np.asarray(v, dtype=float) for k, v in rows.items()}


def intervals(values: dict[str, np.ndarray], level: float = 0.95) -> dict[str, Interval]:
    out = {}
    for name, v in values.items():
        finite = v[np.isfinite(v)]
        if not len(finite):
            out[name] = Interval(None, None, len(v))
            continue
        lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
        out[name] = Interval(float(lo), float(hi), int(len(v) - len(finite)))
    return out


def metric_intervals(problem: Any, names: tuple[str, ...], labels: Any, scores: Any, resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0, level: float = 0.95) -> dict[str, Interval]:
    counts = Resamples(len(labels), resamples, seed)
    return intervals(resampled_metrics(problem, names, labels, scores, counts), level)


def paired_difference(problem: Any, name: str, labels: Any, scores_a: Any, scores_b: Any,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> Interval:
    """The interval of metric(a) - metric(b), both computed on the same resamples (paired)."""
    counts = Resamples(len(labels), resamples, seed)
    a = resampled_metrics(problem, (name,), labels, scores_a, counts)[name]
    b = resampled_metrics(problem, (name,), labels, scores_b, counts)[name]
    return intervals({name: a - b}, level)[name]


# ---- metrics from resample weights: w is (R, m) over the m units, y/p the units' labels and scores ----

def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den != 0)


_local = threading.local()  # .cache: what one resampled_metrics call's blocks share (per thread)


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    """`make()`, shared by the blocks of one resampled_metrics call under `key` (what it was made from:
    the call's labels and scores do not change between blocks); outside a call, made each time."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _grouping(key: tuple, make: Callable[[], np.ndarray]) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The (groups, units) indicator of the group ids `make()` gives (units with equal values, or one
    confusion cell), and the ids."""
    def build() -> tuple[sparse.csr_matrix, np.ndarray]:
        group = make()
        n = len(group)
        return sparse.csr_matrix((np.ones(n), (group, np.arange(n))), shape=(int(group.max(initial=-1)) + 1, n)), group

    return _cached(key, build)


def _value_groups(v: np.ndarray) -> np.ndarray:
    return np.unique(v, return_inverse=True)[1].reshape(-1)


def _confusion(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(R, C, C) weighted confusion matrices [true, predicted] of single-label predictions."""
    c = p.shape[1]
    ind, _ = _grouping(("confusion",), lambda: y.astype(np.int64) * c + p.argmax(axis=1))
    sums = np.zeros((len(w), c * c))
    sums[:, :ind.shape[0]] = np.asarray(ind.dot(w.T).T)
    return sums.reshape(len(w), c, c)


def _binary_cells(truth: np.ndarray, pred: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """tp, fp, fn, tn weighted sums; truth/pred (m, k) 0/1 counted over all k columns of a unit."""
    t, q = truth.astype(float), pred.astype(float)
    tp, fp, fn = w @ (t * q).sum(1), w @ ((1 - t) * q).sum(1), w @ (t * (1 - q)).sum(1)
    tn = w @ ((1 - t) * (1 - q)).sum(1)
    return tp, fp, fn, tn


def _class_rates(kind: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def fn(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        if y.ndim == 2:  # multi-label: micro over (protein, label) pairs at 0.5
            tp, fp, fn_, tn = _binary_cells(y, p >= 0.5, w)
            tp, fp, fn_ = tp[:, None], fp[:, None], fn_[:, None]
            tn = tn[:, None]
        else:
            cm = _confusion(y, p, w)
            tp = np.diagonal(cm, axis1=1, axis2=2)
            fp, fn_ = cm.sum(1) - tp, cm.sum(2) - tp
            tn = cm.sum((1, 2))[:, None] - tp - fp - fn_
        value = {"precision": _safe(tp, tp + fp), "recall": _safe(tp, tp + fn_), "f1": _safe(2 * tp, 2 * tp + fp + fn_),
                 "specificity": _safe(tn, tn + fp)}[kind]
        if y.ndim == 2:
            return value[:, 0]
        return value[:, 1] if p.shape[1] == 2 else value.mean(1)

    return fn


def _accuracy(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    right = (y == (p >= 0.5)).all(1) if y.ndim == 2 else y == p.argmax(1)
    return w @ right.astype(float) / w.sum(1)


def _mcc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    if y.ndim == 2:
        tp, fp, fn, tn = _binary_cells(y, p >= 0.5, w)
        cm = np.stack([np.stack([tn, fp], 1), np.stack([fn, tp], 1)], 1)
    else:
        cm = _confusion(y, p, w)
    t, q = cm.sum(2), cm.sum(1)  # true and predicted counts per class
    c, s = np.trace(cm, axis1=1, axis2=2), cm.sum((1, 2))
    cov_tq = c * s - (t * q).sum(1)
    den = np.sqrt((s ** 2 - (q ** 2).sum(1)) * (s ** 2 - (t ** 2).sum(1)))
    return _safe(cov_tq, den)


def _binary_auroc(truth: np.ndarray, score: np.ndarray, w: np.ndarray, key: tuple) -> np.ndarray:
    """Weighted Mann-Whitney AUROC (ties count one half); NaN where a resample lacks a class."""
    ind, _ = _grouping(key, lambda: _value_groups(score))
    pos = np.asarray(ind.dot((w * truth).T).T)
    neg = np.asarray(ind.dot((w * (1 - truth)).T).T)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    below = np.cumsum(neg, axis=1)
    below -= 0.5 * neg  # negatives below, and half of the tied ones
    auc = np.einsum("ij,ij->i", pos, below)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), auc / (n_pos * n_neg), np.nan)


def _auroc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    if y.ndim == 2:  # macro over labels with both classes in the resample
        per = np.stack([_binary_auroc(y[:, j].astype(float), p[:, j], w, ("column", j)) for j in range(y.shape[1])], 1)
        with np.errstate(all="ignore"):
            return np.where(np.isfinite(per).any(1), np.nanmean(np.where(np.isfinite(per), per, np.nan), 1), np.nan)
    if p.shape[1] == 2:
        return _binary_auroc((y == 1).astype(float), p[:, 1], w, ("column", 1))
    per = np.stack([_binary_auroc((y == c).astype(float), p[:, c], w, ("column", c)) for c in range(p.shape[1])], 1)
    out = per.mean(1)  # NaN where a class is missing: those resamples are computed the metric's own way
    missing = ~np.isfinite(out)
    if missing.any():
        from plmforge.metrics import auroc

        for r in np.flatnonzero(missing):
            idx = np.repeat(np.arange(len(y)), w[r].astype(np.int64))
            out[r] = auroc(y[idx], p[idx])
    return out


def _binary_ap(truth: np.ndarray, score: np.ndarray, w: np.ndarray, key: tuple) -> np.ndarray:
    """Weighted average precision (scikit-learn's step form: sum over thresholds of recall gained times
    precision, ties in one step); 0 where a resample has no positive."""
    ind, _ = _grouping(key, lambda: _value_groups(score))
    pos = np.asarray(ind.dot((w * truth).T).T)[:, ::-1]  # highest score first
    neg = np.asarray(ind.dot((w * (1 - truth)).T).T)[:, ::-1]
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos = tp[:, -1:]
    precision = _safe(tp, tp + fp)
    recall = _safe(tp, np.broadcast_to(n_pos, tp.shape))
    gained = np.diff(recall, axis=1, prepend=0.0)
    return (gained * precision).sum(1)


def _auprc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    if y.ndim == 2:  # micro: every (protein, label) pair one unit
        return _binary_ap(y.ravel().astype(float), p.ravel(), np.repeat(w, y.shape[1], axis=1), ("all",))
    if p.shape[1] == 2:
        return _binary_ap((y == 1).astype(float), p[:, 1], w, ("column", 1))
    return np.mean([_binary_ap((y == c).astype(float), p[:, c], w, ("column", c)) for c in range(p.shape[1])],
                   axis=0)


_F1_ROWS_KEPT = 2_000_000  # units x thresholds up to which f1_max's per-unit rows are kept for the blocks


def _f1_max(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    if y.ndim == 1:
        y = np.eye(p.shape[1], dtype=int)[y]
    thresholds = np.linspace(0.0, 1.0, 101)
    true = y.sum(1)
    step = max(1, _CELLS // (p.shape[1] * len(thresholds)))  # units at a time: (units, C, T) cells stay bounded

    def rows(a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Units a..a+step: covered (some score >= t), precision and recall rows over the thresholds t."""
        pred = p[a:a + step, :, None] >= thresholds  # (units, C, T)
        n_pred = pred.sum(1)
        tp = (pred & (y[a:a + step, :, None] == 1)).sum(1)
        part = true[a:a + step, None]
        return (n_pred > 0).astype(float), _safe(tp, n_pred), np.divide(tp, part, out=np.zeros(tp.shape),
                                                                            where=part > 0)

    starts = range(0, len(p), step)
    kept = _cached(("f1_max rows",), lambda: [rows(a) for a in starts]) \
        if len(p) * len(thresholds) <= _F1_ROWS_KEPT else None
    prec_w, rec_w, cov_w = (np.zeros((len(w), len(thresholds))) for _ in range(3))
    for k, a in enumerate(starts):
        covered, prec_rows, rec_rows = kept[k] if kept is not None else rows(a)
        wb = w[:, a:a + step]
        cov_w += wb @ covered
        prec_w += wb @ prec_rows
        rec_w += wb @ rec_rows
    precision = _safe(prec_w, cov_w)
    recall = rec_w / w.sum(1)[:, None]
    f1 = _safe(2 * precision * recall, precision + recall)
    f1 = np.where(cov_w > 0, f1, 0.0)
    return f1.max(1)


def _moments(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    total = w.sum(1)
    my, mp = w @ y / total, w @ p / total
    vy = w @ y ** 2 / total - my ** 2
    vp = w @ p ** 2 / total - mp ** 2
    cov = w @ (y * p) / total - my * mp
    return total, my, vy, vp, cov


def _pearson_w(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    _, _, vy, vp, cov = _moments(y, p, w)
    scale = np.maximum(np.abs(vy), np.abs(vp)) + 1e-300
    ok = (vy > 1e-12 * scale) & (vp > 1e-12 * scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, np.clip(cov / np.sqrt(vy * vp), -1, 1), np.nan)


def _pearson(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    yc, pc = y - y.mean(), p - p.mean()  # centred first, for accuracy
    return _pearson_w(yc, pc, w)


def _ranks(v: np.ndarray, w: np.ndarray, key: tuple) -> np.ndarray:
    """Each unit's average rank within each resample (ties share their mean rank, as scipy does)."""
    ind, group = _grouping(key, lambda: _value_groups(v))
    per = np.asarray(ind.dot(w.T).T)
    rank = np.cumsum(per, axis=1) - per + (per + 1) / 2
    return rank[:, group]


def _spearman(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson of the ranks within each resample (ranks differ per resample: (R, m) arrays)."""
    ry, rp = _ranks(y, w, ("labels",)), _ranks(p, w, ("scores",))
    total = w.sum(1)
    my, mp = (w * ry).sum(1) / total, (w * rp).sum(1) / total
    dy, dp = ry - my[:, None], rp - mp[:, None]
    vy, vp, cov = (w * dy * dy).sum(1), (w * dp * dp).sum(1), (w * dy * dp).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((vy > 1e-9) & (vp > 1e-9), np.clip(cov / np.sqrt(vy * vp), -1, 1), np.nan)


def _mse(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w @ (y - p) ** 2 / w.sum(1)


def _mae(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w @ np.abs(y - p) / w.sum(1)


def _r2(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    yc = y - y.mean()
    total, my, vy, _, _ = _moments(yc, yc, w)
    ss_tot = vy * total
    ss_res = w @ (y - p) ** 2
    flat = ss_tot <= 1e-12 * (w @ yc ** 2 + 1e-300)
    return np.where(flat, np.where(ss_res == 0, 1.0, 0.0), 1 - _safe(ss_res, np.where(flat, 1.0, ss_tot)))


WEIGHTED: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy, "precision": _class_rates("precision"), "recall": _class_rates("recall"),
    "sensitivity": _class_rates("recall"), "f1": _class_rates("f1"), "specificity": _class_rates("specificity"),
    "mcc": _mcc, "auroc": _auroc, "auprc": _auprc, "f1_max": _f1_max, "pearson": _pearson, "spearman_corr": _spearman,
    "mse": _mse, "mae": _mae, "r2": _r2,
}
