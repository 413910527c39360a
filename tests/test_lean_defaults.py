"""Lean defaults of adapter runs: attention without dropout (PyTorch's fused kernel) unless the user sets
a rate, saved with the run; other methods and resumed runs keep what they had."""

from __future__ import annotations

import yaml

from plmforge.config import load_config
from plmforge.train.setup import assemble

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=1",
        "batching.batch_size=16"]


def _assemble(tmp_path, tiny_models, amp_small, *extra: str, new_run: bool = True):
    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['bert']}",
                             f"output.dir={tmp_path / 'run'}", *BASE, *extra])
    return assemble(cfg, new_run=new_run)


def _rate(asm) -> float:
    return asm.backbone.model.config.attention_probs_dropout_prob


def test_adapter_runs_train_attention_without_dropout_unless_asked(tmp_path, tiny_models, amp_small, caplog):
    caplog.set_level("INFO", logger="plmforge")
    lora = _assemble(tmp_path, tiny_models, amp_small, "method.name=lora")
    assert lora.config.model.attention_dropout == 0.0 and _rate(lora) == 0.0
    assert "model.attention_dropout=0 for this lora run" in caplog.text
    assert yaml.safe_load(yaml.safe_dump(lora.config.to_dict()))["model"]["attention_dropout"] == 0.0  # saved so
    kept = _assemble(tmp_path, tiny_models, amp_small, "method.name=lora", "model.attention_dropout=0.1")
    assert kept.config.model.attention_dropout == 0.1 and _rate(kept) == 0.1  # the user's setting wins
    eager = _assemble(tmp_path, tiny_models, amp_small, "method.name=ia3", "model.attention=eager")
    assert eager.config.model.attention_dropout is None and _rate(eager) == 0.1  # no fused kernel to gain


def test_full_fine_tuning_and_resumed_runs_keep_the_checkpoint_rate(tmp_path, tiny_models, amp_small):
    full = _assemble(tmp_path, tiny_models, amp_small, "method.name=full")
    assert full.config.model.attention_dropout is None and _rate(full) == 0.1
    resumed = _assemble(tmp_path, tiny_models, amp_small, "method.name=lora", new_run=False)
    assert resumed.config.model.attention_dropout is None and _rate(resumed) == 0.1
