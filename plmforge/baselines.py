"""Baselines fitted on the run's own splits, so that a PLM's test metrics can be read against what cheap
models reach: a PLM that does not beat a composition model has not shown that it learned anything a
sequence's amino-acid content does not already tell.

- `majority`: training-set class frequencies (or label frequencies, or the training mean) for every
  protein (every residue, for residue tasks);
- `composition`: amino-acid and dipeptide frequencies (20 + 400 features) into a logistic regression
  (classes), ridge regression (values; multi-label: one ridge per label, clipped to 0..1);
- `one_hot_position`: for inputs that all have one length (site windows, mutational scans), the residue
  at each position one-hot;
- `zero_shot` and `augmented` (data given as mutants of a wild type, a model with a masked-LM head): the
  model's zero-shot score alone, and with the one-hot positions (Hsu et al. 2022's augmented regression);
- residue tasks: `window`, each residue's neighbourhood (+-3 residues) one-hot into the same models.

The regularisation strength is chosen on the validation split by the run's monitored metric (the first
metric when the monitor is the loss). Training sets beyond 50,000 proteins (residue tasks: 200,000
residues) are subsampled, seeded, and the settings say so."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

log = logging.getLogger("plmforge")

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
_INDEX = np.full(256, 20, dtype=np.int64)  # anything else (X, B, Z, U, O) is symbol 20
_INDEX[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(20)
MAX_TRAIN, MAX_RESIDUES, WINDOW = 50_000, 200_000, 3
FEATURE_ROWS = 20_000  # validation and test proteins featurised at a time
STRENGTHS = {"classes": (0.01, 0.1, 1.0, 10.0), "values": (0.1, 1.0, 10.0, 100.0)}  # C, or ridge alpha


@dataclass
class Baseline:
    name: str
    description: str
    scores: Any  # test scores shaped like the PLM's predictions
    settings: dict[str, Any] = field(default_factory=dict)


def _codes(seq: str) -> np.ndarray:
    return _INDEX[np.frombuffer(seq.encode(), dtype=np.uint8)]


def composition(sequences: list[str]) -> np.ndarray:
    """(n, 420): amino-acid frequencies, then dipeptide frequencies (other symbols ignored)."""
    out = np.zeros((len(sequences), 420))
    for i, seq in enumerate(sequences):
        c = _codes(seq)
        aa = c[c < 20]
        if len(aa):
            out[i, :20] = np.bincount(aa, minlength=20) / len(aa)
        pairs = c[:-1] * 20 + c[1:]
        pairs = pairs[(c[:-1] < 20) & (c[1:] < 20)]
        if len(pairs):
            out[i, 20:] = np.bincount(pairs, minlength=400) / len(pairs)
    return out


def one_hot_positions(sequences: list[str]) -> sparse.csr_matrix:
    """(n, L * 21) for sequences of one length L."""
    length = len(sequences[0])
    codes = np.stack([_codes(s) for s in sequences])
    cols = (np.arange(length) * 21)[None, :] + codes
    rows = np.repeat(np.arange(len(sequences)), length)
    return sparse.csr_matrix((np.ones(rows.size), (rows, cols.ravel())), shape=(len(sequences), length * 21))


def residue_windows(sequences: list[str], lengths: list[int] | None = None) -> sparse.csr_matrix:
    """(residues, (2 * WINDOW + 1) * 22): each residue's neighbours one-hot (symbol 21 = beyond the end);
    `lengths` keeps only the first residues of each sequence."""
    blocks = []
    width = 2 * WINDOW + 1
    for k, seq in enumerate(sequences):
        c = np.concatenate([np.full(WINDOW, 21), _codes(seq), np.full(WINDOW, 21)])
        n = len(seq) if lengths is None else lengths[k]
        idx = np.arange(n)[:, None] + np.arange(width)[None, :]
        blocks.append(c[idx] + (np.arange(width) * 22)[None, :])
    cols = np.concatenate(blocks) if blocks else np.zeros((0, width), dtype=np.int64)
    rows = np.repeat(np.arange(len(cols)), width)
    return sparse.csr_matrix((np.ones(rows.size), (rows, cols.ravel())), shape=(len(cols), width * 22))


# ---- fitting ----------------------------------------------------------------------------------------

def _model(kind: str, strength: float, num_labels: int) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    if kind == "classes":
        return make_pipeline(MaxAbsScaler(), LogisticRegression(C=strength, max_iter=3000))
    return make_pipeline(MaxAbsScaler(), Ridge(alpha=strength))


def _predict(model: Any, x: Any, kind: str, num_labels: int) -> np.ndarray:
    if kind == "classes":
        probs = np.zeros((x.shape[0], num_labels))
        probs[:, model.classes_] = model.predict_proba(x)
        return probs
    out = model.predict(x)
    return np.clip(out, 0.0, 1.0) if kind == "multi_label" else out


class _Blocks:
    """A split's features a block of proteins at a time: `make(a, b)` featurises proteins a..b-1. Validation
    and test sets of millions of proteins are never featurised whole; a split of one block is kept."""

    def __init__(self, make: Callable[[int, int], Any], n: int, rows: int = FEATURE_ROWS) -> None:
        self.make, self.n, self.rows = make, n, rows
        self.only = make(0, n) if n <= rows else None

    def __iter__(self) -> Iterator[Any]:
        if self.only is not None:
            yield self.only
            return
        for a in range(0, self.n, self.rows):
            yield self.make(a, min(a + self.rows, self.n))


def _fit(kind: str, x_train: Any, y_train: np.ndarray, blocks: dict[str, _Blocks], n_test: int, num_labels: int,
         judge: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The model with the best validation score; its test predictions (n_test rows) and the settings."""
    present = np.unique(y_train) if kind == "classes" else None
    if kind == "classes" and len(present) == 1:  # one class: nothing to fit
        probs = np.zeros((n_test, num_labels))
        probs[:, int(present[0])] = 1.0
        return probs, {"note": "training labels hold one class"}
    strengths = STRENGTHS["classes" if kind == "classes" else "values"]
    models = [_model("classes" if kind == "classes" else "values", s, num_labels).fit(x_train, y_train)
              for s in strengths]
    parts: list[list[np.ndarray]] = [[] for _ in models]
    for x in blocks["validation"]:  # one pass over the validation features for every strength
        for part, model in zip(parts, models, strict=True):
            part.append(_predict(model, x, kind, num_labels))
    tried, best = {}, None
    for s, model, part in zip(strengths, models, parts, strict=True):
        score = judge(np.concatenate(part))
        tried[s] = score
        if np.isfinite(score) and (best is None or score > best[0]):
            best = (score, s, model)
    if best is None:  # no strength has a validation score: the second, a moderate one
        best = (np.nan, strengths[1], models[1])
    name = "C" if kind == "classes" else "alpha"
    return (np.concatenate([_predict(best[2], x, kind, num_labels) for x in blocks["test"]]),
            {name: best[1], f"validation score by {name}": tried})


# ---- per problem type -------------------------------------------------------------------------------

def fit_baselines(task: Any, splits: dict[str, Any], test_labels: Any, test_scores_like: Any,
                  seed: int = 0, zero_shot: dict[str, np.ndarray] | None = None) -> list[Baseline]:
    """Baselines for the run's task. `splits`: Records of train/validation/test; `test_labels` and
    `test_scores_like`: the PLM's test labels and scores (their shape and, for residue tasks, the residues
    that were predicted). `zero_shot`: per split, a pretrained model's zero-shot score of every record (a
    deep mutational scan): it becomes the `zero_shot` baseline (the score, rescaled by the same fitted
    models) and, with one-hot positions, the `augmented` one (Hsu et al. 2022's augmented regression)."""
    problem = task.problem
    metric = task.monitor if task.monitor != "loss" else task.metrics[0]
    from plmforge.metrics import METRICS

    sign = 1.0 if METRICS[metric].direction == "max" else -1.0
    kind = "classes" if problem.kind.name == "classes" else ("multi_label" if problem.kind.name == "multi_label"
                                                             else "values")
    if getattr(problem, "per_residue", False) or isinstance(test_labels, list):
        return _residue_baselines(task, splits, test_labels, test_scores_like, kind, metric, sign, seed)
    rng = np.random.default_rng(seed)
    train = splits["train"]
    keep = np.sort(rng.choice(len(train), MAX_TRAIN, replace=False)) if len(train) > MAX_TRAIN else None
    seqs = {s: splits[s].sequences for s in ("train", "validation", "test")}
    if keep is not None:
        seqs["train"] = [seqs["train"][i] for i in keep]
    y = {s: problem.kind.stack(splits[s].labels, task.num_labels) for s in ("train", "validation")}
    if keep is not None:
        y["train"] = y["train"][keep]
    val_labels = problem.kind.metric_labels(y["validation"]) if kind == "multi_label" else y["validation"]

    def judge(scores: np.ndarray) -> float:
        return sign * problem.metrics((metric,), val_labels, scores)[metric]

    shape = np.shape(test_scores_like)
    out = [Baseline("majority", _majority_text(kind), _majority(kind, y["train"], len(seqs["test"]),
                                                                task.num_labels).reshape(shape))]
    # features of rows a..b-1 of a split, by name
    fits: dict[str, tuple[str, Callable[[str, int, int], Any]]] = {
        "composition": ("amino-acid + dipeptide frequencies", lambda s, a, b: composition(seqs[s][a:b]))}
    lengths = {len(s) for part in seqs.values() for s in part}
    if len(lengths) == 1 and next(iter(lengths)) <= 2000:
        fits["one_hot_position"] = (f"one-hot residue at each of the {next(iter(lengths))} positions",
                                    lambda s, a, b: one_hot_positions(seqs[s][a:b]))
    if zero_shot is not None:
        z = {s: np.asarray(zero_shot[s], dtype=float).reshape(-1, 1) for s in ("train", "validation", "test")}
        if keep is not None:
            z["train"] = z["train"][keep]
        fits["zero_shot"] = ("the pretrained model's zero-shot score (masked marginal)", lambda s, a, b: z[s][a:b])
        if "one_hot_position" in fits:
            fits["augmented"] = ("one-hot positions + the zero-shot score (augmented model)",
                                 lambda s, a, b: sparse.hstack([one_hot_positions(seqs[s][a:b]),
                                                                sparse.csr_matrix(z[s][a:b])]).tocsr())
    for name, (text, features) in fits.items():
        blocks = {s: _Blocks(lambda a, b, f=features, split=s: f(split, a, b), len(seqs[s]))
                  for s in ("validation", "test")}
        scores, settings = _fit(kind, features("train", 0, len(seqs["train"])), y["train"], blocks, len(seqs["test"]),
                                task.num_labels, judge)
        if keep is not None:
            settings["trained_on"] = f"{MAX_TRAIN} of {len(train)} training proteins (seeded sample)"
        out.append(Baseline(name, f"{text} -> {_model_text(kind)}", scores.reshape(shape), settings))
    return out


def _majority(kind: str, y: np.ndarray, n: int, num_labels: int) -> np.ndarray:
    if kind == "classes":
        freq = np.bincount(y, minlength=num_labels) / len(y)
        return np.tile(freq, (n, 1))
    return np.tile(np.nanmean(y, axis=0), (n, 1)) if kind == "multi_label" else np.full(n, float(np.nanmean(y)))


def _majority_text(kind: str) -> str:
    return {"classes": "training class frequencies for every protein", "multi_label": "training label frequencies",
            "values": "training mean"}[kind]


def _model_text(kind: str) -> str:
    return {"classes": "logistic regression", "multi_label": "ridge per label (clipped to 0..1)",
            "values": "ridge regression"}[kind]


def _protein_sample(train: Any, problem: Any, seed: int) -> tuple[Any, str]:
    """Training proteins enough for the residue sample: with far more labelled residues than MAX_RESIDUES
    (a split on disk may hold hundreds of millions), a seeded sample of proteins holding twice that many."""
    lengths = np.fromiter((problem.counted(lab) for lab in train.labels), dtype=np.int64, count=len(train))
    if lengths.sum() <= 4 * MAX_RESIDUES:
        return train, ""
    order = np.random.default_rng([seed, 1]).permutation(len(train))
    k = int(np.searchsorted(np.cumsum(lengths[order]), 2 * MAX_RESIDUES)) + 1
    return train.subset(np.sort(order[:k]).tolist()), f" of {k} sampled proteins (of {len(train)})"


def _residue_baselines(task: Any, splits: dict[str, Any], test_labels: list, test_scores_like: list, kind: str,
                       metric: str, sign: float, seed: int) -> list[Baseline]:
    problem = task.problem
    n = task.num_labels
    train, note = _protein_sample(splits["train"], problem, seed)
    stacked = {s: [problem.kind.stack(list(lab), n) for lab in part.labels]
               for s, part in (("train", train), ("validation", splits["validation"]))}
    rng = np.random.default_rng(seed)
    x_train = residue_windows(train.sequences)
    y_train = np.concatenate(stacked["train"])
    counted = problem.kind.counted(y_train)
    x_train, y_train = x_train[counted], problem.kind.metric_labels(y_train[counted]) if kind != "values" \
        else y_train[counted]
    settings: dict[str, Any] = {}
    if x_train.shape[0] > MAX_RESIDUES:
        keep = np.sort(rng.choice(x_train.shape[0], MAX_RESIDUES, replace=False))
        settings["trained_on"] = f"{MAX_RESIDUES} of {x_train.shape[0]} labelled training residues{note} (seeded sample)"
        x_train, y_train = x_train[keep], y_train[keep]
    val, test = splits["validation"], splits["test"]
    test_lengths = [len(lab) for lab in test_labels]
    blocks = {"validation": _Blocks(lambda a, b: residue_windows(val.sequences[a:b]), len(val)),
              "test": _Blocks(lambda a, b: residue_windows(test.sequences[a:b], test_lengths[a:b]), len(test))}

    def per_protein(flat: np.ndarray, lengths: list[int], like: list | None) -> list[np.ndarray]:
        parts = np.split(flat, np.cumsum(lengths)[:-1]) if lengths else []
        return [p.reshape(np.shape(s)) for p, s in zip(parts, like, strict=True)] if like is not None else parts

    val_lengths = [len(s) for s in val.sequences]

    def judge(scores: np.ndarray) -> float:
        return sign * problem.metrics((metric,), stacked["validation"], per_protein(scores, val_lengths, None))[metric]

    scores, fitted = _fit(kind, x_train, y_train, blocks, sum(test_lengths), n, judge)
    majority = _majority(kind, y_train, sum(test_lengths), n)
    return [Baseline("majority", _majority_text(kind).replace("protein", "residue"),
                     per_protein(majority, test_lengths, test_scores_like)),
            Baseline("window", f"residues within +-{WINDOW} one-hot -> {_model_text(kind)}",
                     per_protein(scores, test_lengths, test_scores_like), {**fitted, **settings})]
