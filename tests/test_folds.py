"""The stacked fold heads of cross-validation (plmforge/train/folds.py, plmforge/train/stacked.py) against each fold's own modules:
forward, dropout masks, AdamW steps with folds sitting out, and the optimizer state a fold's checkpoint gets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plmforge.models.dropout import FastDropout
from plmforge.train.stacked import StackedAdamW, StackedMLP


def _heads(k: int = 3, width: int = 24, p: float = 0.3) -> list[nn.Sequential]:
    torch.manual_seed(0)
    return [nn.Sequential(FastDropout(p), nn.Linear(width, width), nn.GELU(), FastDropout(p), nn.Linear(width, 2))
            for _ in range(k)]


def _generators(k: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(100 + f) for f in range(k)]


def test_the_stacked_forward_is_every_heads_own_forward():
    heads = _heads()
    stacked = StackedMLP(heads, _generators(3))
    x = torch.randn(3, 7, 24)
    out = stacked.forward(x, False, [True] * 3)
    for k, head in enumerate(heads):
        head.eval()
        torch.testing.assert_close(out[k], head(x[k]), rtol=1e-5, atol=1e-6)


def test_joint_masks_are_the_layer_by_layer_masks_and_a_fold_sitting_out_draws_none():
    heads = _heads()
    x = torch.randn(3, 5, 24)
    joint = StackedMLP(heads, _generators(3))
    apart = StackedMLP(heads, _generators(3))
    assert joint.joint == (0.3, True, 24)
    apart.joint = None  # one keep_masks call per layer
    for active in ([True] * 3, [True, False, True], [True] * 3):
        a, b = joint.forward(x, True, active), apart.forward(x, True, active)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # fold 1 sat out once: its generator is one step behind folds 0 and 2, whose streams are untouched by it
    lone = StackedMLP([heads[2]], [torch.Generator().manual_seed(102)])
    for _ in range(3):
        y = lone.forward(x[2:], True, [True])
    torch.testing.assert_close(y[0], a[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused,shared", [(True, False), (False, False), (True, True)])
def test_stacked_adamw_steps_each_fold_as_torch_adamw_and_leaves_a_sitting_out_fold_alone(fused, shared,
                                                                                         monkeypatch):
    calls = []
    kernel = torch._fused_adamw_
    monkeypatch.setattr(torch, "_fused_adamw_", lambda params, *a, **k: (calls.append(params[0].dim()) if _ours(params[0]) else None,
                                                                        kernel(params, *a, **k)))
    heads = _heads(p=0.0)
    lone = [nn.Sequential(*[m for m in h]) for h in _heads(p=0.0)]  # the same initial weights, own copies
    stacked = StackedMLP(heads, _generators(3))
    ours = stacked.leaves[0].untyped_storage().data_ptr()

    def _ours(t):  # the stacked weights or a slice of them (not the lone heads' torch AdamW)
        return t.untyped_storage().data_ptr() == ours

    adam = StackedAdamW(stacked.leaves, 3, (0.9, 0.999), 1e-8, 0.01, fused=fused)
    optimizers = [torch.optim.AdamW(h.parameters(), lr=1e-2, weight_decay=0.01, fused=True) for h in lone]
    rng = torch.Generator().manual_seed(1)
    for step in range(4):
        active = [True, step != 2, True]  # fold 1 has no batch in the third step
        x = torch.randn(3, 6, 24, generator=rng)
        y = torch.randint(0, 2, (3, 6), generator=rng)
        for p in stacked.leaves:
            p.grad = None
        logits = stacked.forward(x, True, active)
        sum(nn.functional.cross_entropy(logits[k], y[k]) for k in range(3) if active[k]).backward()
        lrs = ([1e-2 * (1 - step / 10)] * 3 if shared  # one schedule: the folds step together while they can
               else [1e-2 * (1 - step / 10), 1e-2 * (1 - step / 9), 1e-2])  # a schedule per fold
        adam.step(lrs, active)
        for k in range(3):
            if not active[k]:
                continue
            optimizers[k].param_groups[0]["lr"] = lrs[k]
            optimizers[k].zero_grad()
            nn.functional.cross_entropy(lone[k](x[k]), y[k]).backward()
            optimizers[k].step()
    assert adam.steps == [4, 3, 4]
    if fused:  # one call over the stacked (K, in, out) weights while every fold is at the same step and rate
        # (the first step always; with one schedule also the second), else one call per active fold's slices
        assert calls == ([3, 3] + [2] * 2 + [2] * 3 if shared else [3] + [2] * 3 + [2] * 2 + [2] * 3)
    for k in range(3):
        stacked.write_back(k)
        for a, b in zip(heads[k].parameters(), lone[k].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        exported = torch.optim.AdamW(heads[k].parameters(), lr=1e-2, weight_decay=0.01)
        adam.export(k, stacked, exported)
        mine, theirs = exported.state_dict()["state"], optimizers[k].state_dict()["state"]
        assert mine.keys() == theirs.keys()
        for i in mine:
            assert float(mine[i]["step"]) == float(theirs[i]["step"])
            torch.testing.assert_close(mine[i]["exp_avg"], theirs[i]["exp_avg"], rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(mine[i]["exp_avg_sq"], theirs[i]["exp_avg_sq"], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("budget", [None, 2 * 3 * 4 * 6 * 4], ids=["one-window", "windows-of-two-steps"])
@pytest.mark.parametrize("targets_shape", [(), (3,)], ids=["class-labels", "multi-label"])
def test_an_epoch_gathered_up_front_gives_each_step_the_rows_the_step_would_gather(targets_shape, budget):
    """_EpochRows: for the leading steps where every running fold has a full batch, the step's rows and targets
    equal what gathering idx gives (a stopped fold: zero rows, no targets), also when a byte budget splits the
    epoch into windows gathered as the steps reach them; later steps gather as before."""
    from plmforge.train.folds import _EpochRows, _stack

    g = torch.Generator().manual_seed(0)
    held = [torch.randn(n, 6, generator=g) for n in (23, 21, 22)]
    targets = [torch.randint(0, 2, (len(h), *targets_shape), generator=g) for h in held]

    def batches_of(n: int) -> list[list[int]]:
        order = torch.randperm(n, generator=g).tolist()
        return [order[i:i + 4] for i in range(0, n, 4)]

    for running in ([True, True, True], [True, False, True]):
        batches = [batches_of(len(h)) if on else [] for h, on in zip(held, running, strict=True)]
        rows = _EpochRows(held, targets, batches, torch.device("cpu"), **({"budget": budget} if budget else {}))
        assert rows.steps == 5  # 21 rows: five full batches of 4, then one of 1
        assert (rows.window == 2) if budget else (rows.window >= 5)  # 2 steps of 3 folds x 4 rows x 6 floats
        starts = []
        for j in range(max(len(b) for b in batches)):
            idx = [torch.as_tensor(b[j]) if j < len(b) else None for b in batches]
            got = rows.step(j)
            if j >= rows.steps:
                assert got is None
                continue
            x, ys = got
            starts.append(rows.start)
            assert torch.equal(x, _stack([None if i is None else held[k][i] for k, i in enumerate(idx)],
                                         torch.device("cpu")))
            for k, i in enumerate(idx):
                assert (ys[k] is None) == (i is None)
                if i is not None:
                    assert torch.equal(ys[k], targets[k][i])
        assert starts == ([0, 0, 2, 2, 4] if budget else [0] * 5)  # the windows gathered as the steps reach them
    assert _EpochRows(held, targets, [[], [], []], torch.device("cpu")).step(0) is None
