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
