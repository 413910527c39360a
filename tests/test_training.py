"""Whole training runs on tiny random backbones and small subsets of real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import StopTraining, stop_after_epoch
from safetensors.torch import load_file

from plmforge.api import load_run, predict
from plmforge.cli import main
from plmforge.config import load_config
from plmforge.errors import RunDirError
from plmforge.train.run import train

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=3",
        "batching.batch_size=16", "training.learning_rate=0.003", "training.logging_steps=2"]


def _config(tmp_path: Path, tiny_models, data: Path, *extra: str, family: str = "esm", out: str = "run"):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models[family]}",
                              f"output.dir={tmp_path / out}", *BASE, *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_freeze_keeps_backbone_weights_and_full_changes_them(tmp_path, tiny_models, amp_small):
    from plmforge.api import load_run as _load

    before = {k: v.clone() for k, v in
              _load_backbone_state(tiny_models["esm"]).items()}
    train(_config(tmp_path, tiny_models, amp_small, "method.name=freeze", out="freeze"))
    saved = _weights(tmp_path / "freeze" / "best")
    assert saved and all(k.startswith("head.") for k in saved)  # freeze checkpoints hold the head only
    run = _load(tmp_path / "freeze")
    for k, v in run.model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k

    train(_config(tmp_path, tiny_models, amp_small, "method.name=full", out="full"))
    full = _weights(tmp_path / "full" / "last")
    changed = [k for k, v in before.items() if f"backbone.{k}" in full and not torch.equal(full[f"backbone.{k}"], v)]
    trained = [k for k in before if "weight" in k and "embeddings" not in k and "contact_head" not in k]
    assert not any("contact_head" in k for k in full)  # removed at load: not part of the encoder
    assert set(trained) <= set(changed)  # every backbone weight matrix moved


def _load_backbone_state(directory: Path) -> dict[str, torch.Tensor]:
    from transformers import EsmModel

    return EsmModel.from_pretrained(directory, add_pooling_layer=False).state_dict()


def test_run_directory_has_every_output(tmp_path, tiny_models, amp_small):
    cfg = _config(tmp_path, tiny_models, amp_small)
    result = train(cfg)
    rd = result.run_dir
    for name in ["config.yaml", "command.txt", "split_mapping.json", "model_stats.json", "task.json", "train.log",
                 "metrics_steps.jsonl", "metrics_epochs.jsonl", "best/model.safetensors", "last/model.safetensors",
                 "last/training_state.pt", "test_metrics.json", "test_metrics.csv", "test_predictions.csv",
                 "plots/loss.png", "plots/validation_metrics.png", "plots/confusion_matrix.png", "plots/roc.png",
                 "tokenizer"]:
        assert (rd / name).exists(), name
    epochs = [json.loads(x) for x in (rd / "metrics_epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    steps = [json.loads(x) for x in (rd / "metrics_steps.jsonl").read_text().splitlines()]
    assert steps and all(s["step"] % 2 == 0 for s in steps)
    stats = json.loads((rd / "model_stats.json").read_text())
    assert 0 < stats["trainable"] < stats["total"] and stats["trainable_percent"] < 100
    metrics = json.loads((rd / "test_metrics.json").read_text())
    assert set(metrics["metrics"]) >= {"accuracy", "mcc", "auroc", "f1"} and "averaging" in metrics
    assert sum(map(sum, metrics["confusion_matrix"])) == 32
    # the saved config is the one given, with the head the problem type resolved to, and re-runs as is
    import dataclasses

    assert cfg.head.pooling is None
    saved = load_config(rd / "config.yaml")
    # columns and counts left unset are written as resolved from the file; everything given is kept
    given = {k: v for k, v in dataclasses.asdict(cfg.data).items() if v is not None}
    assert {k: v for k, v in dataclasses.asdict(saved.data).items() if k in given} == given
    assert (saved.data.sequence_column, saved.data.label_column, saved.data.id_column) == ("aa_seq", "label", "id")
    # ... and what the memory plan settled: a frozen backbone recomputes nothing and splits no batch
    assert (cfg.model.gradient_checkpointing, cfg.batching.micro_batch_tokens) == (None, None)
    assert saved == cfg.replace(head=dataclasses.replace(cfg.head, pooling="mean"), data=saved.data,
                                model=dataclasses.replace(cfg.model, gradient_checkpointing=False),
                                batching=dataclasses.replace(cfg.batching, micro_batch_tokens=0))
    assert main(["train", "--config", str(rd / "config.yaml"), f"output.dir={rd}_again"]) == 0
    again = json.loads((Path(f"{rd}_again") / "test_metrics.json").read_text())
    assert again["metrics"] == metrics["metrics"]


def test_same_seed_same_metrics(tmp_path, tiny_models, amp_small):
    a = train(_config(tmp_path, tiny_models, amp_small, "method.name=full", out="a"))
    b = train(_config(tmp_path, tiny_models, amp_small, "method.name=full", out="b"))
    c = train(_config(tmp_path, tiny_models, amp_small, "method.name=full", "training.seed=3", out="c"))
    assert a.test_metrics["metrics"] == b.test_metrics["metrics"]
    assert a.test_metrics["metrics"]["loss"] != c.test_metrics["metrics"]["loss"]


@pytest.mark.parametrize("method, mode", [("full", "tokens"), ("freeze", "size")])
def test_resume_from_last_equals_an_uninterrupted_run(tmp_path, tiny_models, amp_small, method, mode):
    extra = [f"method.name={method}", f"batching.mode={mode}", "batching.max_tokens=600", "training.epochs=4",
             "head.dropout=0.3", "training.patience=10"]
    whole = train(_config(tmp_path, tiny_models, amp_small, *extra, out="whole"))

    with pytest.raises(StopTraining):  # after the second epoch
        train(_config(tmp_path, tiny_models, amp_small, *extra, out="cut"), callbacks=[stop_after_epoch(1)])
    assert json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())["epoch"] == 1
    resumed = train(run_dir=tmp_path / "cut", resume=True)
    a, b = _weights(whole.run_dir / "last"), _weights(resumed.run_dir / "last")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert whole.test_metrics["metrics"] == pytest.approx(resumed.test_metrics["metrics"], abs=1e-6)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics_steps.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated log lines after the resume


def test_a_run_resumed_after_it_stopped_early_trains_no_further(tmp_path, tiny_models, amp_small):
    """Interrupted between its early stop and its test metrics, a run resumes to its test metrics only: no
    epoch beyond the stop is trained, logged or checkpointed."""
    extra = ["method.name=freeze", "training.epochs=30", "training.patience=1", "training.learning_rate=0.05"]
    whole = train(_config(tmp_path, tiny_models, amp_small, *extra, out="stopped"))
    assert whole.fit.stopped_early and whole.fit.epochs_run < 30
    epochs = (tmp_path / "stopped" / "metrics_epochs.jsonl").read_text()
    best = (tmp_path / "stopped" / "best" / "model.safetensors").read_bytes()
    (tmp_path / "stopped" / "test_metrics.json").unlink()  # as if stopped before the test metrics
    resumed = train(run_dir=tmp_path / "stopped", resume=True)
    assert (tmp_path / "stopped" / "metrics_epochs.jsonl").read_text() == epochs
    assert (tmp_path / "stopped" / "best" / "model.safetensors").read_bytes() == best
    assert resumed.fit.epochs_run == whole.fit.epochs_run and resumed.fit.stopped_early
    assert resumed.test_metrics["metrics"] == pytest.approx(whole.test_metrics["metrics"], abs=1e-6)


def test_predict_after_reload_equals_end_of_training(tmp_path, tiny_models, amp_small):
    result = train(_config(tmp_path, tiny_models, amp_small, "method.name=full", "head.pooling=light_attention"))
    expected = pd.read_csv(result.run_dir / "test_predictions.csv")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(result.run_dir), "--input", str(amp_small / "test.csv"), "--output", str(out)]) == 0
    got = pd.read_csv(out).set_index("id").loc[expected["id"]]
    assert (got["prediction"].to_numpy() == expected["prediction"].to_numpy()).all()
    np.testing.assert_allclose(got[["prob_0", "prob_1"]].to_numpy(), expected[["prob_0", "prob_1"]].to_numpy(),
                               atol=1e-5)


def test_regression_predictions_come_out_in_the_users_units(tmp_path, tiny_models, amp_dir):
    """Target: hydrophobic fraction x 100 + 50, a deterministic property of real AMP peptides."""
    d = tmp_path / "reg"
    d.mkdir()
    for split, n in (("train", 120), ("validation", 40), ("test", 40)):
        df = pd.read_csv(amp_dir / f"{split}.csv").head(n)
        df["label"] = [50 + 100 * sum(c in "AILMFVW" for c in s) / len(s) for s in df["aa_seq"]]
        df.to_csv(d / f"{split}.csv", index=False)
    cfg = load_config(None, [f"data.dataset={d}", f"model.name={tiny_models['bert']}", "data.problem_type=regression",
                             f"output.dir={tmp_path / 'run'}", "training.epochs=4", "method.name=full",
                             "training.learning_rate=0.002", "batching.batch_size=8"])
    result = train(cfg)
    task = json.loads((result.run_dir / "task.json").read_text())
    train_labels = pd.read_csv(d / "train.csv")["label"]
    assert task["label_scaler"]["kind"] == "standard"
    assert task["label_scaler"]["shift"] == pytest.approx(train_labels.mean())
    preds = pd.read_csv(result.run_dir / "test_predictions.csv")
    assert train_labels.between(50, 150).all() and preds["prediction"].between(20, 180).all()  # not standardised
    assert abs(preds["prediction"].mean() - preds["label"].mean()) < 15
    assert result.test_metrics["metrics"]["mse"] == pytest.approx(((preds["prediction"] - preds["label"]) ** 2).mean(),
                                                                  rel=1e-4)


@pytest.mark.shared_data
def test_multi_label_and_monitor_loss_and_workers(tmp_path, tiny_models):
    from conftest import shared

    df = pd.read_csv(shared("ec", "split10.csv"), sep="\t").head(80)
    df["label"] = [",".join(sorted({str(int(e.split(".")[0]) - 1) for e in ec.split(";")})) for ec in df["EC number"]]
    df = df.rename(columns={"Sequence": "aa_seq"})[["Entry", "aa_seq", "label"]]
    df.to_csv(tmp_path / "train.csv", index=False)
    cfg = load_config(None, [f"data.train={tmp_path / 'train.csv'}", f"data.test={tmp_path / 'train.csv'}",
                             "data.problem_type=multi_label_classification", "data.num_labels=7",
                             f"model.name={tiny_models['t5']}", "model.max_length=100", "training.monitor=loss",
                             "training.num_workers=1", "training.epochs=2", f"output.dir={tmp_path / 'run'}",
                             "head.pooling=attention1d", "batching.mode=tokens", "batching.max_tokens=800"])
    result = train(cfg)
    assert result.fit.best_value == min(h["val_loss"] for h in result.fit.history)
    assert "f1_max" in result.test_metrics["metrics"]
    assert "truncated" in (result.run_dir / "train.log").read_text()


def test_early_stopping_stops(tmp_path, tiny_models, amp_small):
    cfg = _config(tmp_path, tiny_models, amp_small, "training.epochs=30", "training.patience=2",
                  "training.learning_rate=1e-9", "training.monitor=accuracy")
    result = train(cfg)
    assert result.fit.stopped_early and result.fit.epochs_run <= 3


def test_existing_run_is_not_overwritten_and_bad_data_keeps_it(tmp_path, tiny_models, amp_small):
    train(_config(tmp_path, tiny_models, amp_small))
    with pytest.raises(RunDirError, match="already holds a plmforge training run"):
        train(_config(tmp_path, tiny_models, amp_small))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_text("aa_seq,label\nMKT1,0\n")
    code = main(["train", f"data.dataset={bad}", f"model.name={tiny_models['esm']}", f"output.dir={tmp_path / 'run'}",
                 "--overwrite", *BASE])
    assert code == 2
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()  # the earlier run survived


def test_cli_errors_are_short_messages(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("aa_seq,label\nMKTAYJK,1\n")
    code = main(["train", f"data.train={tmp_path / 'train.csv'}", "data.problem_type=single_label_classification"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown residue 'J' at position 6" in err and "Traceback" not in err


def test_dry_run_prints_config_and_command(capsys):
    assert main(["train", "--dataset", "amp", "--epochs", "4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 4" in out and "plmforge train data.dataset=amp training.epochs=4" in out


def test_evaluate_command(tmp_path, tiny_models, amp_small):
    result = train(_config(tmp_path, tiny_models, amp_small))
    assert main(["evaluate", str(result.run_dir), "--data", str(amp_small)]) == 0
    blob = json.loads((result.run_dir / "eval_test" / "eval_metrics.json").read_text())
    ref = result.test_metrics["metrics"]
    assert blob["metrics"]["accuracy"] == pytest.approx(ref["accuracy"])
    assert blob["metrics"]["auroc"] == pytest.approx(ref["auroc"], abs=1e-6)


def test_predict_single_sequence(tmp_path, tiny_models, amp_small, capsys):
    result = train(_config(tmp_path, tiny_models, amp_small))
    assert main(["predict", str(result.run_dir), "--sequence", "GLFDIVKKVVGALGSL"]) == 0
    out = capsys.readouterr().out
    assert "prob_1" in out and "GLFDIVKKVVGALGSL" in out
    run = load_run(result.run_dir)
    got = predict(run, {"x": "GLFDIVKKVVGALGSL", "y": "MKTAYIAKQRQISFVK"})
    scores = got.predictions.scores
    assert scores.shape == (2, 2) and scores.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert got.table["id"].tolist() == ["x", "y"] and "prob_1" in got.table
