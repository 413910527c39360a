"""Stacked copies of a small MLP head (K folds' heads as (K, ...) weights) and an AdamW that steps each copy
as torch.optim.AdamW steps a head alone: the arithmetic of cross-validation's folds trained together
(train/folds.py). A copy can sit a step out (no batch) and keeps its weights, moments and dropout stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from plmforge.models.dropout import FastDropout, _MaskedScale, keep_masks


class StackedMLP:
    """K copies of one MLP (Linear / GELU / Dropout layers) as (K, ...) leaf tensors: the fold heads'
    weights stacked, trained here, copied back into the heads with `write_back`."""

    def __init__(self, mlps: list[nn.Sequential], generators: list[torch.Generator]) -> None:
        self.mlps, self.generators = mlps, generators
        self.layers: list[tuple[str, Any]] = []
        self.leaves: list[torch.Tensor] = []
        for i, layer in enumerate(mlps[0]):
            if isinstance(layer, nn.Linear):
                w = torch.stack([m[i].weight.detach() for m in mlps]).transpose(1, 2).contiguous()  # (K, in, out)
                b = torch.stack([m[i].bias.detach() for m in mlps]).unsqueeze(1).contiguous()  # (K, 1, out)
                w.requires_grad_(True)
                b.requires_grad_(True)
                self.layers.append(("linear", (len(self.leaves), len(self.leaves) + 1, i)))
                self.leaves += [w, b]
            elif isinstance(layer, nn.GELU):
                self.layers.append(("gelu", layer.approximate))
            else:
                self.layers.append(("dropout", (layer.p, isinstance(layer, FastDropout))))
        # every dropout's width: the input width of the next linear layer
        widths = [self.leaves[a[0]].shape[1] for kind, a in self.layers if kind == "linear"]
        drops = [(a, sum(kind == "linear" for kind, _ in self.layers[:n]))
                 for n, (kind, a) in enumerate(self.layers) if kind == "dropout"]
        same = {(p, hashed, widths[j]) for (p, hashed), j in drops if j < len(widths)}
        # one pass draws every layer's hashed masks when they share rate and width (seeds in layer order per fold)
        self.joint = next(iter(same)) if len(same) == 1 and len(drops) > 1 and next(iter(same))[1] else None
        self.n_drops = len(drops)

    def forward(self, x: torch.Tensor, training: bool, active: list[bool]) -> torch.Tensor:
        """x (K, B, in) -> (K, B, out); `active`: the folds that have a batch (the others' rows are padding)."""
        masks = self._joint_masks(x, training, active)
        for kind, arg in self.layers:
            if kind == "linear":
                x = torch.baddbmm(self.leaves[arg[1]], x, self.leaves[arg[0]])
            elif kind == "gelu":
                x = nn.functional.gelu(x, approximate=arg)
            elif masks is not None:
                x = _MaskedScale.apply(x, next(masks), 1.0 / (1.0 - arg[0]))
            else:
                x = self._dropout(x, *arg, training, active)
        return x

    def _joint_masks(self, x: torch.Tensor, training: bool, active: list[bool]) -> Iterator[torch.Tensor] | None:
        """Every dropout layer's masks from one keep_masks call, each fold's seeds drawn layer by layer from its
        own generator, as _dropout draws them one layer at a time (the same masks)."""
        if not training or self.joint is None or x.device.type != "cpu" or not 0.0 < self.joint[0] < 1.0:
            return None
        p, _, width = self.joint
        seeds = [[int(torch.randint(-(2**62), 2**62, (1,), generator=g).item()) if on else 0
                  for _ in range(self.n_drops)] for g, on in zip(self.generators, active, strict=True)]
        k = len(self.generators)
        masks = keep_masks((x.shape[1], width), p, [seeds[f][layer] for layer in range(self.n_drops) for f in range(k)])
        return iter(masks.view(self.n_drops, k, x.shape[1], width))

    def _dropout(self, x: torch.Tensor, p: float, hashed: bool, training: bool, active: list[bool]) -> torch.Tensor:
        """Hashed masks (CPU): each active fold's from a seed drawn from its own generator, so that a fold's
        masks do not depend on which folds train beside it (a mask's rows do not depend on the padding below
        them; a fold without a batch draws nothing). torch's dropout otherwise."""
        if not training or p == 0.0:
            return x
        if not hashed or x.device.type != "cpu":
            return nn.functional.dropout(x, p, True)
        if p >= 1.0:
            return x * 0.0
        seeds = [int(torch.randint(-(2**62), 2**62, (1,), generator=g).item()) if on else 0  # (0: padding only)
                 for g, on in zip(self.generators, active, strict=True)]
        mask = keep_masks(x.shape[1:], p, seeds)
        return _MaskedScale.apply(x, mask, 1.0 / (1.0 - p))

    @torch.no_grad()
    def write_back(self, k: int) -> None:
        """Fold k's weights into its own head."""
        for kind, arg in self.layers:
            if kind == "linear":
                w, b, i = arg
                self.mlps[k][i].weight.copy_(self.leaves[w][k].t())
                self.mlps[k][i].bias.copy_(self.leaves[b][k, 0])


class StackedAdamW:
    """AdamW over stacked leaves, fold by fold: torch's own functional AdamW (its fused kernel where torch has
    one: a single pass over the fold's weights, as the fold's own run takes) on each active fold's slices,
    with that fold's learning rate and step count. A fold without a batch in this step (its epoch has fewer
    batches) or stopped early keeps its weights and moments. Each fold's moments are exported as
    torch.optim.AdamW state for its checkpoints."""

    def __init__(self, leaves: list[torch.Tensor], folds: int, betas: tuple[float, float], eps: float,
                 weight_decay: float, fused: bool) -> None:
        self.leaves, self.k = leaves, folds
        self.b1, self.b2 = betas
        self.eps, self.wd, self.fused = eps, weight_decay, fused
        self.m = [torch.zeros_like(p) for p in leaves]
        self.v = [torch.zeros_like(p) for p in leaves]
        # float32 step counts where the fused kernel reads them: on the weights' device (as torch's AdamW keeps them)
        self.state_steps = [[torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu") for p in leaves]
                            for _ in range(folds)]
        self.steps = [0] * folds  # the same counts, read without a device sync

    @torch.no_grad()
    def step(self, lrs: list[float], active: list[bool]) -> None:
        from torch.optim.adamw import adamw

        kernel = getattr(torch, "_fused_adamw_", None) if self.fused else None

        def fused(args: tuple[Any, ...], lr: float) -> None:  # what torch.optim.AdamW(fused=True).step runs
            kernel(*args, lr=lr, beta1=self.b1, beta2=self.b2, weight_decay=self.wd, eps=self.eps, amsgrad=False,
                   maximize=False, grad_scale=None, found_inf=None)

        if kernel is not None and all(active) and len(set(lrs)) == 1 and len(set(self.steps)) == 1:
            # every fold at the same step and rate: one kernel call over the stacked tensors does each fold's
            # elementwise update exactly as its own call would (one step count, read from fold 0's counters)
            for k in range(self.k):
                torch._foreach_add_(self.state_steps[k], 1)
                self.steps[k] += 1
            fused(([p.data for p in self.leaves], [p.grad for p in self.leaves], self.m, self.v, [],
                   self.state_steps[0]), lrs[0])
            return
        for k in range(self.k):
            if not active[k]:
                continue
            self.steps[k] += 1
            args = ([p.data[k] for p in self.leaves], [p.grad[k] for p in self.leaves], [m[k] for m in self.m],
                    [v[k] for v in self.v], [], self.state_steps[k])
            if kernel is not None:  # (per fold, without torch.optim's per-call grouping)
                torch._foreach_add_(self.state_steps[k], 1)
                fused(args, lrs[k])
            else:  # torch's single-tensor AdamW
                adamw(*args, foreach=False, amsgrad=False, beta1=self.b1, beta2=self.b2, lr=lrs[k],
                      weight_decay=self.wd, eps=self.eps, maximize=False)

    def export(self, k: int, stacked: StackedMLP, optimizer: torch.optim.Optimizer) -> None:
        """Fold k's moments and step count as `optimizer`'s state (torch.optim.AdamW over its head)."""
        params = optimizer.param_groups[0]["params"]
        by_layer = []
        for kind, arg in stacked.layers:
            if kind == "linear":
                w, b, i = arg
                by_layer.append((stacked.mlps[k][i].weight, w, True))
                by_layer.append((stacked.mlps[k][i].bias, b, False))
        for param, j, transposed in by_layer:
            m, v = self.m[j][k], self.v[j][k]
            m, v = (m.t(), v.t()) if transposed else (m[0], v[0])
            optimizer.state[param] = {"step": torch.tensor(float(self.steps[k])),
                                      "exp_avg": m.contiguous().clone(), "exp_avg_sq": v.contiguous().clone()}
        assert all(p in optimizer.state for p in params)


def fold_seed(seed: int, fold: int) -> int:
    """The seed of a fold's own dropout generator."""
    return (seed * 1_000_003 + fold) % 2**63
