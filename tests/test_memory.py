"""The peak-memory estimate: its parts follow the configuration as computed by hand, a run records it
with the measured peak, and a run that would not fit is warned about with concrete suggestions."""

from __future__ import annotations

import json

import pytest
import torch

from plmforge.config import load_config
from plmforge.train import memory


class _Cfg:  # a backbone config with BERT-style names
    hidden_size, intermediate_size, num_hidden_layers, num_attention_heads = 64, 256, 4, 4
    attention_probs_dropout_prob = 0.0


def _config(*extra):
    return load_config(None, ["data.dataset=x.csv", "data.problem_type=regression", *extra])


def test_the_parts_follow_the_configuration():
    model = torch.nn.Linear(100, 10)  # 1,010 trainable parameters
    cpu = torch.device("cpu")
    lengths = [50, 120, 80]
    est = memory.estimate(model, _Cfg(), lengths, _config("batching.batch_size=2"), False, cpu)
    mb = memory.MB
    assert est.parameters_mb == pytest.approx(1010 * 4 / mb, rel=1e-3)
    assert est.gradients_mb == pytest.approx(1010 * 4 / mb, rel=1e-3)
    assert est.optimizer_mb == pytest.approx(1010 * 8 / mb, rel=1e-3)
    assert est.batch == {"sequences": 2, "padded_length": 120, "tokens": 240, "attention_materialised": False}
    per_layer = 240 * (24 * 64 + 4 * 256) * 4
    assert est.activations_mb == pytest.approx(4 * per_layer / mb, rel=1e-3)
    # bf16 halves activations; a frozen backbone keeps one layer; checkpointing keeps layer inputs
    bf16 = memory.estimate(model, _Cfg(), lengths, _config("batching.batch_size=2", "training.mixed_precision=bf16"),
                           False, cpu)
    assert bf16.activations_mb == pytest.approx(est.activations_mb * 2.5 / 4, rel=1e-3)
    frozen = memory.estimate(model, _Cfg(), lengths, _config("batching.batch_size=2"), True, cpu)
    assert frozen.activations_mb == pytest.approx(0.6 * per_layer / mb, rel=1e-3)
    ckpt = memory.estimate(model, _Cfg(), lengths, _config("batching.batch_size=2", "model.gradient_checkpointing=true"),
                           False, cpu)
    assert ckpt.activations_mb == pytest.approx((4 * 240 * 64 * 4 + 2 * per_layer) / mb, rel=1e-3)
    # eager attention materialises heads x L x L per sequence and layer
    eager = memory.estimate(model, _Cfg(), lengths, _config("batching.batch_size=2", "model.attention=eager"), False, cpu)
    assert eager.activations_mb == pytest.approx(4 * (per_layer + 4 * 2 * 4 * 120 * 120 * 4) / mb, rel=1e-3)
    # a token budget: as many of the longest sequences as fit
    tokens = memory.estimate(model, _Cfg(), lengths, _config("batching.mode=tokens", "batching.max_tokens=500"), False,
                             cpu)
    assert tokens.batch["sequences"] == 4 and tokens.batch["tokens"] == 480


def test_too_little_memory_gives_concrete_suggestions(monkeypatch, caplog):
    monkeypatch.setattr(memory, "available_mb", lambda device: 100.0)
    est = memory.estimate(torch.nn.Linear(10, 10), _Cfg(), [1000] * 40, _config("batching.batch_size=32"), False,
                          torch.device("cpu"))
    assert not est.fits
    text = " ".join(est.suggestions)
    assert "batching.mode=tokens batching.max_tokens=" in text and "model.gradient_checkpointing=true" in text
    assert "training.mixed_precision=bf16" in text and "model.max_length=512" in text
    with caplog.at_level("WARNING", logger="plmforge"):
        memory.report(est)
    assert "may be killed" in caplog.text and "batching.mode=tokens" in caplog.text


def test_a_run_records_its_estimate_and_measured_peak(tmp_path, amp_small, tiny_models):
    from plmforge.train.run import train

    result = train(load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                                      "data.problem_type=single_label_classification", "method.name=lora",
                                      "training.epochs=1", f"output.dir={tmp_path / 'run'}", "output.plots=false"]),
                   progress=False)
    est = json.loads((result.run_dir / "memory_estimate.json").read_text())
    assert est["total_mb"] > est["overhead_mb"] > 0 and est["measured_peak_mb"] > 0
    assert est["available_mb"] is None or est["available_mb"] > 0


def _tiny_bert(layers=4):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=30, hidden_size=64, intermediate_size=256, num_hidden_layers=layers,
                                num_attention_heads=4, attention_probs_dropout_prob=0.0))


def _plan(bert, lengths, *extra, frozen=False, micro=False):
    return memory.plan_memory(bert, lengths, _config("batching.batch_size=2", *extra), frozen,
                              torch.device("cpu"), micro_batches=micro)


def test_automatic_checkpointing_follows_the_activation_budget():
    """Where micro-batches are not an option (a GPU, several processes), the plan recomputes layers."""
    bert = _tiny_bert(4)
    lengths = [120, 80, 50]  # batches of 2: 240 tokens in the largest
    per_layer = 240 * (24 * 64 + 4 * 256) * 4 / memory.MB
    layer_input = 240 * 64 * 4 / memory.MB
    assert _config().model.gradient_checkpointing is None and _config().batching.micro_batch_tokens is None
    # all four layers' activations fit: nothing changes
    p = _plan(bert, lengths, f"model.activation_budget_mb={4 * per_layer * 1.01}")
    assert (p.checkpointing, p.every, p.micro_batch_tokens) == (False, None, 0) and "batches run whole" in p.reason
    # every 4th layer (layer 0 recomputed): 1 input + 5 layers' worth > 4 layers; every 2nd: 2 inputs + 4 layers;
    # every layer: 4 inputs + 2 layers. A budget between the last two picks every layer
    p = _plan(bert, lengths, f"model.activation_budget_mb={4 * layer_input + 2 * per_layer + 0.001}")
    assert (p.checkpointing, p.every) == (True, 1) and "on every layer" in p.reason and "still above" not in p.reason
    # a budget too small for any choice: every layer, and the reason says a token budget lowers it further
    p = _plan(bert, lengths, "model.activation_budget_mb=0.01")
    assert (p.checkpointing, p.every) == (True, 1) and "still above the budget" in p.reason
    # with 8 layers a middle budget skips layers: every 2nd recomputes 4 (4 inputs + 6 layers' worth)
    bert8 = _tiny_bert(8)
    p8 = _plan(bert8, lengths, f"model.activation_budget_mb={4 * layer_input + 6 * per_layer + 0.001}")
    assert (p8.checkpointing, p8.every) == (True, 2) and "every 2nd layer" in p8.reason
    # explicit settings win; a frozen backbone never recomputes
    assert _plan(bert, lengths, "model.gradient_checkpointing=false", "batching.micro_batch_tokens=0",
                 "model.activation_budget_mb=0.01") == memory.MemoryPlan(False, None, 0, None)
    assert _plan(bert, lengths, "model.gradient_checkpointing=false",
                 "model.activation_budget_mb=0.01").checkpointing is False
    assert _plan(bert, lengths, "model.gradient_checkpointing=true", "batching.micro_batch_tokens=0") == \
        memory.MemoryPlan(True, 1, 0, None)
    assert _plan(bert, lengths, "model.gradient_checkpointing=true", "model.checkpoint_every=3").every == 3
    assert _plan(bert, lengths, "model.activation_budget_mb=0.01", frozen=True) == memory.MemoryPlan(False, None, 0,
                                                                                                    None)


def test_on_a_cpu_the_plan_splits_batches_before_recomputing():
    bert = _tiny_bert(4)
    lengths = [120, 80, 50, 120, 120, 120]
    cfg = ("batching.batch_size=4",)  # 4 x 120 = 480 tokens in the largest batch
    per_seq = 4 * 120 * (24 * 64 + 4 * 256) * 4 / memory.MB  # four layers' activations of one longest sequence
    p = _plan(bert, lengths, *cfg, f"model.activation_budget_mb={2.5 * per_seq}", micro=True)
    # two longest sequences fit: micro-batches of at most 240 padded tokens, nothing recomputed
    assert (p.checkpointing, p.micro_batch_tokens) == (False, 240) and "micro-batches" in p.reason
    est = memory.estimate(bert, bert.config, lengths, _config(*cfg, "batching.micro_batch_tokens=240"), False,
                          torch.device("cpu"))
    assert est.batch["sequences"] == 2 and est.activations_mb == pytest.approx(2 * per_seq, rel=1e-3)
    # not even one longest sequence fits: recomputation instead
    p = _plan(bert, lengths, *cfg, f"model.activation_budget_mb={0.5 * per_seq}", micro=True)
    assert p.checkpointing and p.micro_batch_tokens == 0
    # the user's micro-batch size is kept; a user's "no recomputation" still allows micro-batches
    p = _plan(bert, lengths, *cfg, "batching.micro_batch_tokens=360", f"model.activation_budget_mb={0.1}", micro=True)
    assert p.micro_batch_tokens == 360
    p = _plan(bert, lengths, *cfg, "model.gradient_checkpointing=false", f"model.activation_budget_mb={2.5 * per_seq}",
              micro=True)
    assert (p.checkpointing, p.micro_batch_tokens) == (False, 240)


def test_the_default_budget_is_half_the_available_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_mb", lambda device: 2_000.0)
    assert memory.default_activation_budget_mb(torch.device("cpu")) == 1_000.0
    bert = _tiny_bert(4)
    lengths = [4000] * 8  # 8 x 4000 tokens: 1,250 MB of activations; 6 sequences fit 1,000 MB
    p = memory.plan_memory(bert, lengths, _config("batching.batch_size=8"), False, torch.device("cpu"),
                           micro_batches=False)
    assert p.checkpointing and "half of the memory available on this cpu" in p.reason


def test_on_a_cpu_batches_above_the_cpu_part_size_are_split_even_with_memory_to_spare(monkeypatch):
    monkeypatch.setattr(memory, "available_mb", lambda device: 100_000.0)
    bert, cpu = _tiny_bert(4), torch.device("cpu")
    big = memory.plan_memory(bert, [300] * 40, _config("batching.batch_size=16"), False, cpu)
    assert (big.checkpointing, big.micro_batch_tokens) == (False, memory.CPU_MICRO_BATCH_TOKENS)
    assert "micro-batches of at most 512 padded tokens" in big.reason
    small = memory.plan_memory(bert, [30] * 40, _config("batching.batch_size=16"), False, cpu)
    assert (small.checkpointing, small.micro_batch_tokens) == (False, 0) and "batches run whole" in small.reason
    gpu_like = memory.plan_memory(bert, [300] * 40, _config("batching.batch_size=16"), False, cpu,
                                  micro_batches=False)
    assert (gpu_like.checkpointing, gpu_like.micro_batch_tokens) == (False, 0)
    monkeypatch.setattr(memory, "available_mb", lambda device: None)  # unknown memory: only the CPU's part size
    assert memory.plan_memory(bert, [300] * 40, _config("batching.batch_size=16"), False,
                              cpu).micro_batch_tokens == memory.CPU_MICRO_BATCH_TOKENS


def test_an_automatically_checkpointed_run_equals_one_that_keeps_every_activation(tmp_path, amp_small, tiny_models):
    """The plan changes memory and time only: same losses, weights' metrics and predictions to the last digit
    (adapter dropout runs inside the recomputed layers, so the recomputation must replay its random draws)."""
    from plmforge.train.run import train

    def run(name, *extra):
        return train(load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                                        "data.problem_type=single_label_classification", "method.name=lora",
                                        "training.epochs=2", "batching.batch_size=8", f"output.dir={tmp_path / name}",
                                        "output.plots=false", *extra]), progress=False)

    auto = run("auto", "model.activation_budget_mb=0.05", "batching.micro_batch_tokens=0")
    kept = run("kept", "model.gradient_checkpointing=false")
    import yaml

    resolved = yaml.safe_load((auto.run_dir / "config.yaml").read_text())["model"]
    assert resolved["gradient_checkpointing"] is True and resolved["checkpoint_every"] >= 1
    assert "gradient checkpointing on" in (auto.run_dir / "train.log").read_text()
    assert yaml.safe_load((kept.run_dir / "config.yaml").read_text())["model"]["gradient_checkpointing"] is False
    assert [h["train_loss"] for h in auto.fit.history] == [h["train_loss"] for h in kept.fit.history]
    assert auto.test_metrics["metrics"] == kept.test_metrics["metrics"]
    assert (auto.run_dir / "test_predictions.csv").read_text() == (kept.run_dir / "test_predictions.csv").read_text()
