"""The training loss of a classification run with class weights and/or focal modulation.

- `training.class_weights=balanced`: weight_c = N / (C * n_c) from the training labels (residue tasks:
  labelled residues), scikit-learn's "balanced"; for multi-label, the positive-class weight of each
  label, negatives_j / positives_j. Explicit weights: one number per class (label).
- `training.focal_gamma=G`: every item's loss times (1 - p_t)^G, p_t the predicted probability of the true
  class (multi-label: of the true 0/1 value), so confidently right items count less (Lin et al., 2017).

Without either, the problem type's own loss is used unchanged. Validation and test losses stay the
plain loss, so runs with and without weights can be compared by them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from plmforge.errors import ConfigError
from plmforge.tasks.base import label_blocks
from plmforge.tasks.kinds import IGNORE

log = logging.getLogger("plmforge")


@dataclass
class Objective:
    kind: str  # 'classes' or 'multi_label'
    weights: torch.Tensor | None
    gamma: float | None

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = None if self.weights is None else self.weights.to(logits.device)
        if self.kind == "classes":
            logits = logits.float().reshape(-1, logits.shape[-1])
            t = targets.long().reshape(-1)
            keep = t != IGNORE
            logp = torch.log_softmax(logits[keep], dim=-1).gather(1, t[keep][:, None])[:, 0]
            loss = -logp
            if self.gamma:
                loss = (1 - logp.exp()).clamp_min(0) ** self.gamma * loss
            if weights is None:
                return loss.mean()
            w = weights[t[keep]]
            return (w * loss).sum() / w.sum()
        x, y = logits.float(), targets.float()
        mask = ~torch.isnan(y)
        y0 = torch.nan_to_num(y)
        loss = F.binary_cross_entropy_with_logits(x, y0, pos_weight=weights, reduction="none")
        if self.gamma:
            p = torch.sigmoid(x)
            p_t = p * y0 + (1 - p) * (1 - y0)
            loss = (1 - p_t).clamp_min(0) ** self.gamma * loss
        return loss[mask].mean()

    def loss_units(self, targets: torch.Tensor) -> float:
        """What __call__ averages over: the counted targets, each with its class weight (single-label)."""
        if self.kind == "classes":
            t = targets.long().reshape(-1)
            t = t[t != IGNORE]
            return float(t.numel() if self.weights is None else self.weights[t.cpu()].sum())
        return float((~torch.isnan(targets.float())).sum())

    def describe(self) -> str:
        parts = []
        if self.weights is not None:
            what = "positive-class weights" if self.kind == "multi_label" else "class weights"
            parts.append(f"{what} " + ", ".join(f"{w:.3g}" for w in self.weights.tolist()))
        if self.gamma:
            parts.append(f"focal gamma {self.gamma:g}")
        return "; ".join(parts)


def make_objective(training: Any, task: Any, train_labels: list | None) -> Objective | None:
    """The objective `training` asks for, or None for the problem type's own loss."""
    spec, gamma = training.class_weights, training.focal_gamma
    if spec is None and gamma is None:
        return None
    kind = task.problem.kind.name
    if kind not in ("classes", "multi_label"):
        given = "training.class_weights" if spec is not None else "training.focal_gamma"
        raise ConfigError(f"{given} applies to classification; {task.problem_type} has no classes",
                          )
    weights = None
    if spec == "balanced":
        weights = _balanced(task, train_labels or [])
    elif spec is not None:
        values = [float(v) for v in str(spec).replace(";", ",").split(",") if v.strip()]
        if len(values) != task.num_labels:
            raise ConfigError(f"training.class_weights has {len(values)} numbers but the task has {task.num_labels} "
                              f"{'labels' if kind == 'multi_label' else 'classes'}; give one per class, or 'balanced'")
        weights = np.asarray(values)
    objective = Objective(kind, None if weights is None else torch.as_tensor(weights, dtype=torch.float32), gamma)
    log.info("training loss: %s", objective.describe())
    return objective


def _balanced(task: Any, labels: list) -> np.ndarray:
    problem, n = task.problem, task.num_labels
    multi = problem.kind.name == "multi_label"
    pos, units, counts = np.zeros(n), 0, np.zeros(n)
    for stacked in _label_parts(problem, labels, n):
        if multi:
            y = problem.kind.metric_labels(stacked)
            pos, units = pos + y.sum(0), units + len(y)
        else:
            counts += np.bincount(stacked.astype(np.int64), minlength=n)[:n]
    if multi:
        return np.where(pos > 0, (units - pos) / np.maximum(pos, 1), 1.0)
    present = counts > 0
    weights = np.ones(n)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _label_parts(problem: Any, labels: Any, n: int, proteins: int = 10_000) -> Any:
    """The training targets in parts (residue tasks: the counted residues of 10,000 proteins at a time,
    so that a split of millions of proteins is never stacked whole)."""
    if not problem.per_residue:
        yield problem.kind.stack(labels, n)
        return
    for block in label_blocks(labels, proteins):
        part = problem.kind.stack(list(np.concatenate(block)), n)
        yield part[problem.kind.counted(part)]
