"""The one inference API: batching by the run's settings (token budget respected, nothing dropped,
input order restored), the Python entry points plmforge.predict / plmforge.evaluate, and heads that
must fit the problem type."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import plmforge
from plmforge.api import load_run
from plmforge.config import load_config
from plmforge.data.readers import Table
from plmforge.errors import ConfigError
from plmforge.inference import predict_encoded
from plmforge.models.task_model import batch_kwargs
from plmforge.train.run import train

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=2",
        "training.learning_rate=0.003"]


@pytest.fixture(scope="module")
def token_run(tmp_path_factory, tiny_models, amp_small):
    out = tmp_path_factory.mktemp("token_run") / "run"
    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", f"output.dir={out}",
                             "batching.mode=tokens", "batching.max_tokens=300", *BASE])
    return train(cfg)


def test_prediction_honours_the_token_budget_and_keeps_the_input_order(token_run, amp_small):
    run = load_run(token_run.run_dir)
    assert run.config.batching.mode == "tokens"
    df = pd.read_csv(amp_small / "test.csv").sample(frac=1.0, random_state=3)  # not sorted by length
    records = run.records(Table(df.reset_index(drop=True), "test.csv"), with_labels=False)
    encoded = run.encode(records)
    shapes = []

    def forward(batch):
        shapes.append(tuple(batch["attention_mask"].shape))
        return run.model(**batch_kwargs(batch)).logits

    preds = predict_encoded(run.model, encoded, run.task, run.scaler, run.config.batching, run.collator(),
                            forward=forward)
    assert sum(rows for rows, _ in shapes) == len(records)  # every sequence predicted exactly once
    assert all(rows * width <= 300 or rows == 1 for rows, width in shapes)
    assert len(shapes) > 2 and len({rows for rows, _ in shapes}) > 1  # really packed by length
    one_by_one = dataclasses.replace(run.config.batching, mode="size", eval_batch_size=1)
    alone = predict_encoded(run.model, encoded, run.task, run.scaler, one_by_one, run.collator())
    np.testing.assert_allclose(preds.scores, alone.scores, atol=1e-5)  # same order as the input
    result = plmforge.predict(run, dict(zip(df["id"], df["aa_seq"], strict=True)))
    assert result.table["id"].tolist() == df["id"].tolist()
    np.testing.assert_allclose(result.table[["prob_0", "prob_1"]].to_numpy(), preds.scores, atol=1e-6)


def test_python_api_predict_and_evaluate(token_run, amp_small, tmp_path):
    result = plmforge.predict(str(token_run.run_dir), "GLFDIVKKVVGALGSL")
    assert result.table.shape[0] == 1 and result.table["prediction"].iloc[0] in (0, 1)
    report = plmforge.evaluate(token_run.run_dir, amp_small / "test.csv")
    assert report.metrics == pytest.approx(token_run.test_metrics["metrics"], abs=1e-6)
    assert report.blob["confusion_matrix"] == token_run.test_metrics["confusion_matrix"]
    assert report.blob["intervals"] == token_run.test_metrics["intervals"]  # same proteins, same resamples
    written = report.write(tmp_path / "eval")
    assert {p.name for p in written} == {"eval_metrics.json", "eval_metrics.csv", "predictions.csv",
                                         "confusion_matrix.png", "roc.png", "precision_recall.png"}
    assert all(p.is_file() for p in written)
    assert json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["n_samples"] == len(report.prediction.table)
    assert "ci95_low" in (tmp_path / "eval" / "eval_metrics.csv").read_text()


def test_a_missing_file_is_not_read_as_a_sequence(token_run):
    from plmforge.errors import DataError

    with pytest.raises(DataError, match="file does not exist"):
        plmforge.predict(token_run.run_dir, "no/such/file.fasta")


@pytest.mark.parametrize("problem, pooling, message", [
    ("residue_single_label_classification", "mean", r"head.pooling='mean' does not fit .* one prediction per "
                                                    r"residue; choose one of residue"),
    ("single_label_classification", "residue", r"head.pooling='residue' does not fit .* one prediction per "
                                               r"sequence; choose one of mean, attention1d, light_attention, centre"),
])
def test_a_head_that_does_not_fit_the_problem_type_is_an_error(tmp_path, tiny_models, problem, pooling, message):
    (tmp_path / "train.csv").write_text("aa_seq,label\n" + "".join(f"MKTAY,{'NNPPN' if 'residue' in problem else i % 2}\n"
                                                                    for i in range(8)))
    cfg = load_config(None, [f"data.train={tmp_path / 'train.csv'}", f"data.problem_type={problem}",
                             "data.residue_classes=N,P", f"model.name={tiny_models['esm']}", f"head.pooling={pooling}",
                             f"output.dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()  # validated before anything is written


def test_long_sequences_lists_and_batching_overrides(token_run):
    run = load_run(token_run.run_dir)
    long_seq = "MKTAYIAKQRQISFVKSHFSRQ" * 20  # longer than a file name may be; truncated to the model's limit
    assert len(plmforge.predict(run, long_seq).table) == 1
    seqs = ["GLFDIVKKVVGALGSL", "MKTAYIAKQRQISFVK", "KWKLFKKIGAVLKVL"]
    by_tokens = plmforge.predict(run, seqs).predictions.scores
    by_one = plmforge.predict(run, seqs, batch_size=1).predictions.scores
    np.testing.assert_allclose(by_tokens, by_one, atol=1e-5)
    with pytest.raises(ConfigError, match="not both"):
        plmforge.predict(run, seqs, batch_size=1, max_tokens=500)


def test_a_run_saved_with_every_method_option_still_loads(token_run, tmp_path):
    import shutil

    import yaml

    old = tmp_path / "old_run"
    shutil.copytree(token_run.run_dir, old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    cfg["method"].update({"rank": 8, "alpha": 32, "quant_type": "nf4"})  # what earlier versions wrote for freeze
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    got = plmforge.predict(old, ["GLFDIVKKVVGALGSL"]).predictions.scores
    want = plmforge.predict(token_run.run_dir, ["GLFDIVKKVVGALGSL"]).predictions.scores
    np.testing.assert_allclose(got, want, atol=1e-6)
