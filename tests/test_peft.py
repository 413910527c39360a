"""Parameter-efficient methods on tiny ESM, BERT and T5 backbones: what trains, what stays bit-identical,
save/load, the standard peft layout, merging, AdaLoRA's rank allocation, QLoRA's refusal, resume."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import StopTraining, stop_after_epoch

from plmforge import checkpoint as ckpt
from plmforge.config import ModelConfig, load_config
from plmforge.data.batching import Collator, EncodedSplit
from plmforge.errors import ConfigError
from plmforge.heads import build_head
from plmforge.methods import METHODS
from plmforge.models.backbone import load_backbone
from plmforge.models.encoding import encode_sequences
from plmforge.models.task_model import TaskModel, batch_kwargs
from plmforge.tasks import PROBLEM_TYPES
from plmforge.train.run import train

PEFT = ["lora", "dora", "adalora", "ia3", "qlora"]
FAMILIES = ["esm", "bert", "t5"]
ADAPTER_MARKS = ("lora_", "ia3_", "magnitude")
SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "GLFDIVKKVVGALGSL", "MSDKIIHLTDDSFDTDVLKADGAILVDFWAEW"]


def build(tiny_models, family: str, method: str, **method_kw) -> tuple[TaskModel, object]:
    spec = METHODS[method]
    cfg = spec.options(**method_kw)
    bb = load_backbone(ModelConfig(name=str(tiny_models[family])), None,
                       spec.backbone_kwargs(cfg) if spec.backbone_kwargs else None)
    torch.manual_seed(0)
    model = TaskModel(bb.model, build_head("mean", bb.hidden_size, 16, 2, 0.0), PROBLEM_TYPES["single_label_classification"],
                      2, bb.family)
    spec.apply(model, cfg)
    return model, bb


def batch_for(bb) -> dict[str, torch.Tensor]:
    enc = encode_sequences(bb, SEQS)
    ds = EncodedSplit(enc.inputs, enc.special, None)
    b = Collator(bb.family.pad_values(bb.tokenizer), PROBLEM_TYPES["single_label_classification"])(
        [ds[i] for i in range(len(SEQS))])
    return batch_kwargs(b)


def perturb_adapters(model: TaskModel, scale: float = 0.2) -> None:
    """Adapters start as an identity (LoRA B = 0, IA3 = 1); move them so tests are not trivially true."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.backbone.named_parameters():
            if p.requires_grad and any(m in n for m in ADAPTER_MARKS):
                p.add_(torch.randn(p.shape, generator=gen) * scale)


def perturbed(tiny_models, family: str, method: str):
    """A model with non-trivial adapters in eval mode, a batch, and its logits on that batch."""
    model, bb = build(tiny_models, family, method)
    perturb_adapters(model)
    model.eval()
    batch = batch_for(bb)
    with torch.no_grad():
        return model, batch, model(**batch).logits


def base_state(model: TaskModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", PEFT)
def test_only_adapters_and_head_train_and_base_stays_bit_identical(tiny_models, family, method):
    model, bb = build(tiny_models, family, method)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    adapters = [n for n in trainable if not n.startswith("head.")]
    assert adapters and all(any(m in n for m in ADAPTER_MARKS) for n in adapters), adapters
    assert any(n.startswith("head.") for n in trainable)
    if method == "qlora":
        assert any(type(p).__name__ == "Params4bit" for p in model.backbone.parameters())
    frozen = base_state(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    out = model(**batch_for(bb), labels=torch.tensor([0, 1, 1]))
    out.loss.backward()
    opt.step()
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(not n.startswith("head.") for n in moved), "no adapter weight changed"
    for n, p in model.backbone.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen weight {n} changed"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", PEFT)
def test_save_load_gives_identical_predictions_and_standard_peft_layout(tiny_models, tmp_path, family, method):
    from peft import PeftModel

    model, batch, expected = perturbed(tiny_models, family, method)
    ckpt.save_checkpoint(tmp_path / "best", model, {}, spec=METHODS[method])
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "best" / "adapter").iterdir()}
    fresh, _ = build(tiny_models, family, method)
    ckpt.load_weights(tmp_path / "best", fresh)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(**batch).logits, expected, atol=1e-6)
    # plain peft reads the adapter directory
    spec = METHODS[method]
    base = load_backbone(ModelConfig(name=str(tiny_models[family])), None,
                         spec.backbone_kwargs(spec.options()) if spec.backbone_kwargs else None).model
    if method == "qlora":
        from plmforge.methods.qlora import single_kernel

        single_kernel(base)  # the same 4-bit kernel as training used (else bf16 inference kernels on some CPUs)
    plain = PeftModel.from_pretrained(base, str(tmp_path / "best" / "adapter")).eval()
    fresh.backbone = plain
    with torch.no_grad():
        assert torch.allclose(fresh(**batch).logits, expected, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "adalora"])
def test_merged_equals_unmerged(tiny_models, family, method):
    model, batch, unmerged = perturbed(tiny_models, family, method)
    with torch.no_grad():
        model.backbone = model.backbone.merge_and_unload()
        merged = model(**batch).logits
    assert not any(any(m in n for m in ADAPTER_MARKS) for n, _ in model.backbone.named_parameters())
    assert torch.allclose(merged, unmerged, atol=1e-5)


def test_bad_target_module_lists_the_modules_that_exist(tiny_models):
    with pytest.raises(ConfigError, match=r"'qkv' matches no linear module.*named .*dense.*key.*query.*value"):
        build(tiny_models, "esm", "lora", target_modules=("qkv",))
    with pytest.raises(ConfigError, match=r"'query' matches no linear module.*\bk\b.*\bq\b.*\bv\b.*wo"):
        build(tiny_models, "t5", "lora", target_modules=("query",))


def test_user_named_targets_are_used(tiny_models):
    model, _ = build(tiny_models, "bert", "lora", target_modules=("query", "intermediate.dense"))
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if "lora_A" in n}
    assert adapted == {"query", "dense"}


def test_qlora_refuses_to_run_where_bitsandbytes_cannot_quantise(tmp_path, tiny_models, amp_small, monkeypatch):
    import bitsandbytes.nn

    class Broken(torch.nn.Module):
        def __init__(self, *a, **k):
            raise RuntimeError("4-bit kernels are not available for this device")

    monkeypatch.setattr(bitsandbytes.nn, "Linear4bit", Broken)
    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "method.name=qlora",
                             f"output.dir={tmp_path / 'run'}", "data.problem_type=single_label_classification"])
    with pytest.raises(ConfigError, match=r"cannot quantise to 4 bits on cpu .*use method.name=lora instead"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def _run(tmp_path, tiny_models, data, method, out, *extra):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}", f"method.name={method}",
                              "data.problem_type=single_label_classification", "training.epochs=4",
                              "batching.batch_size=8", "training.learning_rate=0.005", "training.patience=10",
                              f"output.dir={tmp_path / out}", *extra])


def test_adalora_really_reallocates_ranks(tmp_path, tiny_models, amp_small):
    result = train(_run(tmp_path, tiny_models, amp_small, "adalora", "ada", "method.rank=4",
                        "method.adalora_init_rank=8"))
    report = json.loads((result.run_dir / "method_report.json").read_text())
    assert report["total_steps"] == 4 * 12  # 96 samples / batch 8 x 4 epochs: the real step count
    assert report["initial_total_rank"] == 8 * 6  # 2 layers x query/key/value
    assert report["final_total_rank"] == 4 * 6  # pruned to the target budget
    ranks = report["final_rank_per_module"]
    assert len(ranks) == 6 and all(0 <= r <= 8 for r in ranks.values())
    # the saved adapter carries the same allocation: one kept singular value per True in its rank pattern
    adapter_cfg = json.loads((result.run_dir / "last" / "adapter" / "adapter_config.json").read_text())
    pattern = {k.removeprefix("base_model.model.").removesuffix(".lora_E"): sum(v)
               for k, v in adapter_cfg["rank_pattern"].items()}
    assert {k.removeprefix("base_model.model."): v for k, v in ranks.items()} == pattern
    assert len(set(ranks.values())) > 1  # measured: 1 to 8 per module; a uniform budget would be 4 each


SMALL = {"lora": ["method.rank=4"], "dora": ["method.rank=4"], "qlora": ["method.rank=4"], "ia3": [],
         "adalora": ["method.rank=4", "method.adalora_init_rank=6"]}  # each method takes only its own options


@pytest.mark.parametrize("method", PEFT)
def test_resume_works_for_every_method(tmp_path, tiny_models, amp_small, method):
    whole = train(_run(tmp_path, tiny_models, amp_small, method, "whole", *SMALL[method]))

    with pytest.raises(StopTraining):
        train(_run(tmp_path, tiny_models, amp_small, method, "cut", *SMALL[method]), callbacks=[stop_after_epoch(1)])
    resumed = train(run_dir=tmp_path / "cut", resume=True)
    from safetensors.torch import load_file

    a = load_file(str(whole.run_dir / "last" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "last" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert whole.test_metrics["metrics"] == pytest.approx(resumed.test_metrics["metrics"], abs=1e-5)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_export_merge_predicts_like_the_unmerged_run(tmp_path, tiny_models, amp_small, method):
    import pandas as pd

    from plmforge.cli import main

    result = train(_run(tmp_path, tiny_models, amp_small, method, "run"))
    out = tmp_path / "exported"
    assert main(["export", str(result.run_dir), "--merge", str(out)]) == 0
    assert "## Test metrics" in (out / "README.md").read_text()
    assert not (out / "backbone" / "adapter_config.json").exists()  # a plain model directory
    for src, dst in ((result.run_dir, tmp_path / "a.csv"), (out, tmp_path / "b.csv")):
        assert main(["predict", str(src), "--input", str(amp_small / "test.csv"), "--output", str(dst)]) == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert (a["prediction"] == b["prediction"]).all()
    assert (a["prob_1"] - b["prob_1"]).abs().max() < 1e-5


def test_qlora_runs_cannot_be_merged(tmp_path, tiny_models, amp_small):
    from plmforge.export import export_merged

    result = train(_run(tmp_path, tiny_models, amp_small, "qlora", "q", "training.epochs=1"))
    with pytest.raises(ConfigError, match="cannot be merged"):
        export_merged(result.run_dir, tmp_path / "out")


def test_model_stats_are_per_method(tmp_path, tiny_models, amp_small):
    stats = {}
    for method in ["freeze", "lora", "ia3", "full"]:
        r = train(_run(tmp_path, tiny_models, amp_small, method, method, "training.epochs=1"))
        stats[method] = json.loads((r.run_dir / "model_stats.json").read_text())
    assert stats["freeze"]["trainable"] < stats["ia3"]["trainable"] < stats["lora"]["trainable"] \
        < stats["full"]["trainable"] == stats["full"]["total"]


def test_attention_dropout_hint_names_the_fix(tmp_path, tiny_models, amp_small, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="plmforge")
    train(_run(tmp_path, tiny_models, amp_small, "lora", "hint", "training.epochs=1", "data.max_samples=16"))
    assert "model.attention_dropout=0" in caplog.text  # the tiny ESM checkpoint has attention dropout 0.1
    caplog.clear()
    train(_run(tmp_path, tiny_models, amp_small, "lora", "nohint", "training.epochs=1", "data.max_samples=16",
               "model.attention_dropout=0", "training.mixed_precision=bf16"))
    assert "model.attention_dropout=0" not in caplog.text
    assert json.loads((tmp_path / "nohint" / "test_metrics.json").read_text())  # bf16 training on CPU completes
