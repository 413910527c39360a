"""Problem types with one label per residue (e.g. PTM sites, paratope, secondary structure).

Accepted label values (one per sequence):
- a string with one symbol per residue, e.g. `NNPPN` or `HHEEC`; symbols map to classes through
  data.residue_classes (e.g. `N,P` -> N=0, P=1); without it the symbols must be digits;
- a list (JSON text, or a real list in Parquet/JSON Lines) of class indices, symbols or numbers;
- with data.label_format=positions: the 1-based positions labelled 1 (all others 0), e.g. `3,17`.
An optional mask column (string or list of 0/1) marks residues to ignore (0) in loss and metrics.
Parsed labels hold IGNORE (classes), NaN (values) or None (label sets) where a residue does not count;
training targets are aligned to the model's tokens, special tokens holding the same values."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from plmforge.errors import ConfigError, DataError
from plmforge.tasks.base import LabelFormat, ProblemType, Where, label_blocks, register_problem_type
from plmforge.tasks.kinds import IGNORE, Classes, LabelSummary, MultiLabel, Values, is_missing
from plmforge.tasks.scaling import LabelScaler


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


def _label_set(item: object) -> list[int]:
    if isinstance(item, (list, tuple, np.ndarray)):
        return [int(x) for x in item]
    text = str(item).strip()
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def _values(items: list, classes: tuple[str, ...] | None) -> np.ndarray:
    vals = np.asarray([float(x) for x in items], dtype=np.float64)
    if not np.isfinite(vals[~np.isnan(vals)]).all():
        raise ValueError("labels must be finite numbers")
    return vals


def _sets(items: list, classes: tuple[str, ...] | None) -> np.ndarray:
    out = np.empty(len(items), dtype=object)  # 1-D, one list of classes per residue
    for i, x in enumerate(items):
        out[i] = _label_set(x)
    return out


def _indices(items: list, classes: tuple[str, ...] | None) -> np.ndarray:
    return np.asarray([_class_of(x, classes, i + 1) for i, x in enumerate(items)], dtype=np.int64)


def _positions(value: object, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    text = "" if is_missing(value) else str(value).strip().strip("[]")
    for p in (x.strip() for x in text.split(",") if x.strip()):
        pos = int(p)
        if not 1 <= pos <= n:
            raise ValueError(f"position {pos} is outside the sequence (1..{n})")
        out[pos - 1] = 1
    return out


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


class ResidueProblem(ProblemType):
    per_residue = True

    def __init__(self, name: str, kind: Any, parse_items: Any, missing: Any, **defaults: Any) -> None:
        super().__init__(name, kind, **defaults)
        self._parse_items = parse_items  # (items, classes) -> per-residue array
        self._missing = missing  # what a masked residue holds in parsed labels

    # ---- labels as read ---------------------------------------------------------------------------
    def parse_labels(self, values: list, sequences: list[str], masks: list | None, cfg: LabelFormat,
                     where: Where, column: str, mask_column: str | None) -> list:
        if cfg.label_format == "positions" and not isinstance(self.kind, Classes):
            raise ConfigError(f"data.label_format=positions marks the residues of class 1, so it applies to "
                              f"residue_single_label_classification, not {self.name}: give one label per residue")
        out = []
        for i, (value, seq) in enumerate(zip(values, sequences, strict=True)):
            err = where(i, column)
            if cfg.label_format != "positions" and not isinstance(value, (list, np.ndarray)) and is_missing(value):
                raise DataError("missing residue labels", hint=f"fill in the labels ({self.label_help}) or remove "
                                "the row", **err)
            labels = self.parse_one(value, len(seq), cfg, err)
            if masks is not None:
                keep = parse_mask(masks[i], len(seq), where(i, mask_column or ""))
                labels = labels.copy()
                labels[~keep] = self._missing
            out.append(labels)
        return out

    def parse_one(self, value: object, n: int, cfg: LabelFormat, err: dict) -> np.ndarray:
        try:
            if cfg.label_format == "positions":
                return _positions(value, n)
            items = _as_items(value)
        except ValueError as exc:
            raise DataError(f"residue labels: {exc}", hint="see the residue label formats in the README",
                            **err) from None
        if len(items) != n:
            raise DataError(f"{len(items)} residue labels for a sequence of {n} residues",
                            hint="give exactly one label per residue (or use data.label_format=positions)", **err)
        try:
            return self._parse_items(list(items), cfg.residue_classes)
        except ValueError as exc:
            raise DataError(f"residue labels: {exc}", hint="fix the label string/list, or set data.residue_classes",
                            **err) from None

    def classes_in(self, label: Any) -> list[int]:
        return [c for item in label for c in self.kind.classes_in(item)]

    def counted(self, labels: np.ndarray) -> int:
        """Residues of one sequence that count (not masked)."""
        if labels.dtype == object:
            return int(sum(x is not None for x in labels))
        return int(self.kind.counted(labels).sum())

    def scaler_values(self, labels: list) -> np.ndarray:
        values = np.concatenate(labels)
        return values[~np.isnan(values)]

    def scaler_parts(self, labels: Any, proteins: int = 10_000) -> Any:
        for block in label_blocks(labels, proteins):
            yield self.scaler_values(block)

    def summary(self, labels: list, num_labels: int) -> LabelSummary:
        targets = self.kind.stack(list(np.concatenate(labels)), num_labels)
        kept = targets[self.kind.counted(targets)]
        masked = len(targets) - len(kept)
        if not len(kept):
            return LabelSummary(f"no labelled residues ({masked} masked)", 0, masked)
        return self._residues(self.kind.summary(self.kind.metric_labels(kept), num_labels), masked)

    def merge_summaries(self, parts: list[LabelSummary], num_labels: int) -> LabelSummary:
        masked = sum(p.masked for p in parts)
        kept = [p for p in parts if p.units]
        if not kept:
            return LabelSummary(f"no labelled residues ({masked} masked)", 0, masked)
        return self._residues(self.kind.merge(kept, num_labels), masked)

    @staticmethod
    def _residues(inner: LabelSummary, masked: int) -> LabelSummary:
        return LabelSummary(f"{inner.units} residues ({masked} masked); {inner.text}", inner.units, masked,
                            inner.counts, inner.values)

    # ---- training targets and batches -------------------------------------------------------------
    def targets(self, labels: list, special: list[np.ndarray], num_labels: int,
                scaler: LabelScaler) -> tuple[list[np.ndarray], int]:
        """Labels aligned to tokens: special tokens (CLS/BOS/EOS) hold the kind's padding value; residues
        beyond a truncation have no token and are dropped (their count is returned)."""
        out, dropped = [], 0
        for y, sp in zip(labels, special, strict=True):
            n_res = int((~sp).sum())
            dropped += self.counted(y[n_res:])
            kept = self.kind.stack(list(y[:n_res]), num_labels)
            if self.kind.scaled:
                kept = scaler.transform(kept)
            row = np.full((len(sp), *kept.shape[1:]), self.kind.pad,
                          dtype=np.int64 if self.kind.pad == IGNORE else np.float32)
            row[~sp] = kept
            out.append(row)
        return out, dropped

    def collate_labels(self, labels: list[np.ndarray], width: int) -> torch.Tensor:
        first = np.asarray(labels[0])
        out = np.full((len(labels), width, *first.shape[1:]), self.kind.pad, dtype=first.dtype)
        for row, y in enumerate(labels):
            out[row, : len(y)] = y
        return torch.as_tensor(out, dtype=self.kind.target_dtype)

    def sample_output(self, logits: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        return logits[residue_mask]  # (L, C) -> (n_residues, C)

    def eval_targets(self, targets: Any, special: list[np.ndarray]) -> Any:
        if targets is None:
            return None
        return [y[~sp] for y, sp in zip(targets, special, strict=True)]

    def join(self, items: list) -> Any:
        if items and isinstance(items[0], torch.Tensor):
            return torch.cat(items)[None]  # (1, M, C): one long "sequence" of every residue
        return np.concatenate(items)

    def join_targets(self, targets: Any) -> np.ndarray:
        return np.concatenate(targets)[None]

    def split_scores(self, outputs: list[torch.Tensor], scaler: LabelScaler) -> list[np.ndarray]:
        scores = [self.scores(x).numpy() for x in outputs]
        return [scaler.inverse(x) for x in scores] if self.kind.scaled else scores

    def user_targets(self, targets: Any, scaler: LabelScaler) -> Any:
        if targets is None or not self.kind.scaled:
            return targets
        return [scaler.inverse(y) for y in targets]

    # ---- judging and reporting --------------------------------------------------------------------
    def flat(self, labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        """All unmasked residues of a split as one (M,) / (M, C) pair."""
        y, p = np.concatenate(labels), np.concatenate(scores)
        keep = self.kind.counted(y)
        return self.kind.metric_labels(y[keep]), p[keep]

    def metrics(self, names: tuple[str, ...], labels: Any, scores: Any) -> dict[str, float]:
        out = super().metrics(names, labels, scores)
        if isinstance(self.kind, Classes):  # also the mean of per-sequence accuracies
            per_seq = []
            for lab, sc in zip(labels, scores, strict=True):
                yy, pp = self.flat([lab], [sc])
                if len(yy):
                    per_seq.append(float((pp.argmax(1) == yy).mean()))
            out["accuracy_per_sequence"] = float(np.mean(per_seq)) if per_seq else float("nan")
        return out

    def named(self, classes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return classes

    def averaging(self, num_labels: int) -> str:
        return ("per residue, over all unmasked residues of the split (accuracy on 3/8-state secondary structure "
                "is Q3/Q8); accuracy_per_sequence averages each sequence's accuracy; "
                + self.kind.averaging(num_labels))

    def frames(self, ids: list[str], sequences: list[str], scores: Any, labels: Any = None,
               classes: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
        """A long table (id, position, residue, [label], prediction, probabilities) and, as
        `_sequences`, one row per sequence with the predictions as a compact string. With `classes`
        (data.residue_classes) and one class per residue, `label_class` and `predicted_class` name the
        label and the prediction by their symbols, next to their numbers (the prob_<j> columns keep
        the class numbers: j is the class of symbol classes[j])."""
        rows, compact = [], []
        for k, (ident, seq, sc) in enumerate(zip(ids, sequences, scores, strict=True)):
            n = len(sc)
            frame: dict[str, Any] = {"id": [ident] * n, "position": np.arange(1, n + 1), "residue": list(seq[:n])}
            if labels is not None:
                lab = labels[k]
                shown = self.kind.label_column(lab)
                # object column: a label prints as itself whichever other proteins share the table
                # (a float column would print 1 as 1.0 wherever some protein has a masked residue)
                frame["label"] = pd.Series([v if c else None for v, c in zip(shown, self.kind.counted(lab),
                                                                            strict=True)], dtype=object)
                named = self.kind.symbol_column(frame["label"], classes)
                if named is not None:
                    frame["label_class"] = pd.Series(named, dtype=object)
            frame["prediction"] = self.kind.prediction_column(sc)
            named = self.kind.symbol_column(frame["prediction"], classes)
            if named is not None:
                frame["predicted_class"] = named
            frame.update(self.kind.probability_columns(sc))
            rows.append(pd.DataFrame(frame))
            compact.append({"id": ident, "sequence": seq, "predicted": self.kind.compact(frame["prediction"], classes),
                            "n_residues_predicted": n})
        long = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        return {"": long, "_sequences": pd.DataFrame(compact)}


register_problem_type(ResidueProblem(
    "residue_single_label_classification", Classes(), _indices, IGNORE,
    metrics=("accuracy", "precision", "recall", "f1", "mcc", "auroc", "auprc", "specificity"), monitor="mcc",
    label_help='one class per residue: a symbol string such as "NNPPN" (with data.residue_classes), or a list',
    loss_name="cross-entropy over unmasked residues"))
register_problem_type(ResidueProblem(
    "residue_multi_label_classification", MultiLabel(), _sets, None,
    metrics=("f1", "precision", "recall", "auroc", "auprc"), monitor="f1",
    label_help="per residue, a list of class indices (JSON list of lists)",
    loss_name="binary cross-entropy per residue and label"))
register_problem_type(ResidueProblem(
    "residue_regression", Values(), _values, np.nan, label_help="a JSON list of numbers, one per residue",
    loss_name="mean squared error over unmasked residues (standardised)"))
