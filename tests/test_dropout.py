"""Dropout with hashed CPU masks: the masks' statistics, the scaling and gradient, reproducibility, the
attention path against its formula and SDPA, and what installing it into a task model changes."""

from __future__ import annotations

import pytest
import torch

from plmforge.config import ModelConfig
from plmforge.heads import build_head
from plmforge.methods import METHODS
from plmforge.models import dropout as fd
from plmforge.models.backbone import load_backbone
from plmforge.models.task_model import TaskModel
from plmforge.tasks import PROBLEM_TYPES


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_keep_each_element_with_probability_one_minus_p(p):
    m = fd.keep_mask((1000, 1000), p, seed=12345).double()
    n = m.numel()
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(m.mean().item() - (1 - p)) < 5 * sd
    # neighbours and rows are independent (a weak hash would correlate the four uniforms of a word)
    flat = m.flatten()
    for lag in (1, 2, 3, 4, 1000):
        r = torch.corrcoef(torch.stack([flat[:-lag], flat[lag:]]))[0, 1].item()
        assert abs(r) < 0.01, (lag, r)


def test_each_position_is_dropped_at_the_rate_over_calls():
    torch.manual_seed(0)
    x = torch.ones(64)
    kept = torch.stack([fd.fast_dropout(x, 0.1) != 0 for _ in range(2000)]).double()
    rate = kept.mean(0)  # per position: no position is always kept or always dropped
    sd = (0.1 * 0.9 / 2000) ** 0.5
    assert ((rate - 0.9).abs() < 5 * sd).all()
    other = fd.keep_mask((1000, 1000), 0.1, seed=12346).double().flatten()
    first = fd.keep_mask((1000, 1000), 0.1, seed=12345).double().flatten()
    assert abs(torch.corrcoef(torch.stack([first, other]))[0, 1].item()) < 0.01  # seeds give unrelated masks


def test_kept_values_are_scaled_and_the_gradient_follows_the_mask():
    torch.manual_seed(3)
    x = torch.randn(50, 40, requires_grad=True)
    y = fd.fast_dropout(x, 0.25)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert 0.6 < kept.double().mean().item() < 0.9
    g = torch.randn_like(x)
    y.backward(g)
    assert torch.allclose(x.grad, g * kept / 0.75)


def test_eval_and_p_zero_are_the_identity_and_p_one_drops_everything():
    x = torch.randn(8, 8)
    assert fd.fast_dropout(x, 0.3, training=False) is x
    assert fd.fast_dropout(x, 0.0) is x
    assert torch.equal(fd.fast_dropout(x, 1.0), torch.zeros_like(x))
    layer = fd.FastDropout(0.3).eval()
    assert torch.equal(layer(x), x)


def test_seeded_runs_repeat_and_consecutive_calls_differ():
    x = torch.ones(100, 100)
    torch.manual_seed(7)
    a, b = fd.fast_dropout(x, 0.5), fd.fast_dropout(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(fd.fast_dropout(x, 0.5), a)
    assert not torch.equal(a, b)


def _qkv(mask_kind: str):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    keep = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    keep[1, :, :, 4:] = False  # the second sequence has 2 padding positions
    mask = keep if mask_kind == "bool" else torch.zeros(2, 1, 6, 6).masked_fill(~keep, torch.finfo(torch.float32).min)
    return q, k, v, mask, keep


class _Attn(torch.nn.Module):
    is_causal = False


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_attention_with_dropout_is_the_formula_with_the_hashed_mask(mask_kind):
    q, k, v, mask, keep = _qkv(mask_kind)
    module = _Attn().train()
    torch.manual_seed(11)
    out, _ = fd._attention(module, q, k, v, mask, dropout=0.2, scaling=0.3)
    torch.manual_seed(11)
    seed = int(torch.randint(-(2**62), 2**62, (1,)).item())
    weights = torch.softmax((q @ k.transpose(2, 3) * 0.3).masked_fill(~keep, -1e30), dim=-1)
    expected = (weights * fd.keep_mask(weights.shape, 0.2, seed) / 0.8) @ v
    assert torch.allclose(out, expected.transpose(1, 2), atol=1e-6)


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_attention_without_dropout_is_sdpa_itself(mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v, mask, _ = _qkv(mask_kind)
    for module in (_Attn().eval(), _Attn().train()):  # transformers passes dropout 0 outside training
        ours, _ = fd._attention(module, q, k, v, mask, dropout=0.0, scaling=0.3)
        theirs, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3)
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("family", ["esm", "bert"])
def test_installing_swaps_every_dropout_and_leaves_predictions_unchanged(tiny_models, family):
    backbone = load_backbone(ModelConfig(name=str(tiny_models[family])))
    problem = PROBLEM_TYPES["single_label_classification"]
    model = TaskModel(backbone.model, build_head("mean", backbone.hidden_size, 16, 2, 0.1), problem, 2,
                      backbone.family, backbone.hidden_size)
    METHODS["lora"].apply(model, METHODS["lora"].options())
    ids = torch.randint(4, 20, (3, 12))
    am = torch.ones_like(ids)
    am[2, 8:] = 0
    model.eval()
    with torch.no_grad():
        before = model.encode({"input_ids": ids}, am)
    n_dropout = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert fd.install_fast_dropout(model) == n_dropout > 0
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    base = model.backbone.get_base_model()
    assert base.config._attn_implementation == fd.ATTENTION
    assert fd.ATTENTION not in base.config.to_json_string()  # a shared config.json never names it
    with torch.no_grad():
        assert torch.equal(model.encode({"input_ids": ids}, am), before)
    model.train()  # and training runs through the hashed attention path, with gradients
    model.encode({"input_ids": ids}, am).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_t5_keeps_its_attention_and_gets_the_dropout_modules(tiny_models):
    backbone = load_backbone(ModelConfig(name=str(tiny_models["t5"])))
    model = TaskModel(backbone.model, build_head("mean", backbone.hidden_size, 16, 2, 0.1),
                      PROBLEM_TYPES["single_label_classification"], 2)
    impl = backbone.model.config._attn_implementation
    assert fd.install_fast_dropout(model) > 0
    assert backbone.model.config._attn_implementation == impl


def test_batched_masks_are_the_single_masks_and_their_rows_do_not_depend_on_the_rows_below():
    """keep_masks (one pass for several seeds, as the stacked cross-validation folds draw them) gives, per
    seed, exactly keep_mask's mask; a mask's first rows are the same whatever rows follow (the stacked folds
    pad a short batch below its rows)."""
    from plmforge.models.dropout import keep_mask, keep_masks

    seeds = [3, -2**61, 2**61 + 7]
    both = keep_masks((9, 37), 0.3, seeds)
    assert both.shape == (3, 9, 37)
    for row, seed in zip(both, seeds, strict=True):
        assert torch.equal(row, keep_mask((9, 37), 0.3, seed))
        assert torch.equal(row[:4], keep_mask((4, 37), 0.3, seed))
    assert not torch.equal(both[0], both[1])
