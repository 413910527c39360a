"""Schedulers, accumulation, precision, gradient checkpointing, trackers, and the hub dataset path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import free_port

from plmforge.config import TrainingConfig, load_config
from plmforge.errors import ConfigError
from plmforge.train.run import train
from plmforge.train.schedule import build_scheduler

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=2",
        "batching.batch_size=16", "training.logging_steps=1"]


def _config(tmp_path, tiny_models, data, *extra, family="esm", out="run"):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models[family]}",
                              f"output.dir={tmp_path / out}", *BASE, *extra])


def _lrs(make=None, **kw) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt) if make else build_scheduler(opt, TrainingConfig(**kw), total_steps=20, steps_per_epoch=5)
    out = []
    for _ in range(20):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name, hf_name", [("linear", "linear"), ("cosine", "cosine"),
                                           ("constant", "constant_with_warmup")])
def test_schedules_match_transformers(name, hf_name):
    """plmforge writes its schedules itself (importing transformers' would import peft and bitsandbytes)."""
    from transformers import get_scheduler

    ours = _lrs(scheduler=name, warmup_steps=4)
    theirs = _lrs(lambda opt: get_scheduler(hf_name, opt, num_warmup_steps=4, num_training_steps=20))
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert len(set(ours)) > 2  # warmup and decay really happen


def test_schedulers_with_warmup():
    linear = _lrs(scheduler="linear", warmup_steps=4)
    assert linear[0] == 0.0 and linear[4] == pytest.approx(1.0) and linear[-1] < 0.1
    assert all(a <= b for a, b in zip(linear[:5], linear[1:5]))
    cosine = _lrs(scheduler="cosine", warmup_ratio=0.2)
    assert cosine[4] == pytest.approx(1.0) and cosine[12] < linear[12] + 0.2 and cosine[-1] < 0.05
    const = _lrs(scheduler="constant", warmup_steps=2)
    assert const[2:] == [1.0] * 18
    step = _lrs(scheduler="step", step_size_epochs=1, step_gamma=0.5)
    assert step[0] == 1.0 and step[5] == 0.5 and step[10] == 0.25


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, tiny_models, amp_small):
    # 96 training samples / batch 16 = 6 batches per epoch; accumulation 4 -> 2 optimizer steps per epoch
    result = train(_config(tmp_path, tiny_models, amp_small, "training.gradient_accumulation_steps=4",
                           "method.name=full"))
    steps = [json.loads(x) for x in (result.run_dir / "metrics_steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert [s["epoch"] for s in steps] == [1, 1, 2, 2]
    # and the optimizer itself updated the weights 4 times, not once per batch
    state = torch.load(result.run_dir / "last" / "training_state.pt", weights_only=False)["optimizer"]["state"]
    assert {float(v["step"]) for v in state.values()} == {4.0}


def test_fp16_runs_on_a_gpu_and_is_refused_without_one(tmp_path, tiny_models, amp_small):
    cfg = _config(tmp_path, tiny_models, amp_small, "training.mixed_precision=fp16")
    if torch.cuda.is_available():
        assert train(cfg).test_metrics is not None
        return
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_bf16_mixed_precision_and_gradient_checkpointing_train(tmp_path, tiny_models, amp_small):
    # forced: the numerics are checked on every CPU (where bf16 is emulated, the refusal is test_precision's)
    cfg = _config(tmp_path, tiny_models, amp_small, "training.mixed_precision=bf16", "method.name=full",
                  "model.gradient_checkpointing=true", "training.force_precision=true")
    result = train(cfg)
    assert result.test_metrics is not None
    from plmforge.models.backbone import load_backbone

    bb = load_backbone(cfg.model).model
    assert getattr(bb, "is_activation_checkpointing", None) or bb.is_gradient_checkpointing
    # a later run in the same process may use another precision
    assert train(_config(tmp_path, tiny_models, amp_small, out="fp32")).test_metrics is not None


def test_tensorboard_and_wandb_offline(tmp_path, tiny_models, amp_small, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    result = train(_config(tmp_path, tiny_models, amp_small, "training.report_to=tensorboard,wandb"))
    events = list(result.run_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    offline = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert offline, "no offline W&B run"


def test_hub_dataset_ids_go_through_datasets_load_dataset(monkeypatch, amp_small):
    """Offline stand-in for the hub: the id chosen from the catalogue reaches datasets.load_dataset,
    which is pointed at a local copy with the same layout."""
    import datasets

    from plmforge.data.dataset import load_data

    seen = []
    real = datasets.load_dataset

    def fake_hub(name, *a, **k):
        seen.append(name)
        return real(str(amp_small))

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    cfg = load_config(None, ["data.dataset=DeepLocBinary"])
    data = load_data(cfg.data, cfg.training)
    assert seen == ["AI4Protein/DeepLocBinary"]
    assert data.task.problem_type == "single_label_classification" and data.task.num_labels == 2
    assert len(data.splits["train"]) == 96 and len(data.splits["test"]) == 32


def test_benchmark_metrics_plmforge_does_not_compute_are_named(monkeypatch, tmp_path):
    import datasets

    from plmforge.data.dataset import load_data

    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("aa_seq,label\n" + 'MKTAY,"[0,1,0,1,0]"\nGLFDI,"[0,0,1,1,0]"\n' * 4)
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: real(str(tmp_path)))
    cfg = load_config(None, ["data.dataset=VenusX_Res_Act_MF50"])
    data = load_data(cfg.data, cfg.training)
    assert "auprc" in data.task.metrics  # the catalogue's 'aupr', computed
    assert any("also reports f1_positive, f1_negative, which plmforge does not compute" in n for n in data.notes)


def test_hub_failure_is_a_clear_error(monkeypatch):
    import datasets

    from plmforge.data.dataset import load_data
    from plmforge.errors import DataError

    def offline(name, *a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = load_config(None, ["data.dataset=someone/protein_set", "data.problem_type=regression"])
    with pytest.raises(DataError, match="could not load dataset 'someone/protein_set': no network"):
        load_data(cfg.data, cfg.training)


def test_models_and_data_commands(capsys):
    from plmforge.cli import main
    from plmforge.models.zoo import ZOO

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ZOO)
    assert main(["data", "list"]) == 0
    assert "DeepLocBinary" in capsys.readouterr().out
    assert main(["data", "check", "amp"]) == 0
    assert "OK: every row is valid" in capsys.readouterr().out


def test_docs_zoo_table_is_generated_from_the_registry():
    from plmforge.models.zoo import zoo_markdown

    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "models.md").read_text()
    assert zoo_markdown() in page, ("docs/reference/models.md's zoo table is stale: regenerate it with "
                                    "plmforge.models.zoo.zoo_markdown()")


def test_two_process_data_parallel_run_with_torchrun(tmp_path, tiny_models, amp_small):
    """The same command under torchrun: 2 CPU processes (gloo), one run directory, every test sample once."""
    import subprocess
    import sys

    import pandas as pd

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "plmforge.cli", "train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
           "data.problem_type=single_label_classification", "method.name=full", "training.epochs=2",
           "batching.mode=tokens", "batching.max_tokens=700", f"output.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "distributed run: 2 processes" in log
    assert log.count("epoch 2/2:") == 1  # only the main process writes
    preds = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    expected = pd.read_csv(amp_small / "test.csv")
    assert sorted(preds["id"]) == sorted(expected["id"])


def test_checkpoint_every_nth_layer_recomputes_only_those_and_gives_the_same_gradients(tiny_models):
    from transformers.modeling_layers import GradientCheckpointingLayer

    from plmforge.config import ModelConfig
    from plmforge.models.backbone import load_backbone

    grads = {}
    for every, ckpt in ((1, False), (2, True)):
        torch.manual_seed(0)
        bb = load_backbone(ModelConfig(name=str(tiny_models["esm"]), gradient_checkpointing=ckpt,
                                       checkpoint_every=every, attention_dropout=0.0)).model
        layers = [m for m in bb.modules() if isinstance(m, GradientCheckpointingLayer)]
        assert [m.gradient_checkpointing for m in layers] == [ckpt and i % 2 == 0 for i in range(len(layers))]
        bb.train()
        ids = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 9, 10, 2, 1, 1]])
        out = bb(input_ids=ids, attention_mask=(ids != 1).long()).last_hidden_state
        out.pow(2).mean().backward()
        grads[every] = {n: p.grad.clone() for n, p in bb.named_parameters() if p.grad is not None}
    assert grads[1].keys() == grads[2].keys()
    for name in grads[1]:
        torch.testing.assert_close(grads[1][name], grads[2][name])
    with pytest.raises(ConfigError, match="checkpoint_every"):
        ModelConfig(checkpoint_every=0)
