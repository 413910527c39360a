"""Class imbalance: class weights and focal loss computed as by hand, balanced weights as scikit-learn's,
and the binary decision threshold tuned on validation equal to an exhaustive search, then applied to
the test metrics and to predictions."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from plmforge.cli import main
from plmforge.errors import ConfigError
from plmforge.tasks import PROBLEM_TYPES, TaskSpec
from plmforge.tasks.kinds import IGNORE
from plmforge.tasks.objective import Objective, make_objective
from plmforge.threshold import tune


def _task(problem: str, n: int) -> TaskSpec:
    p = PROBLEM_TYPES[problem]
    return TaskSpec(problem, n, "none", p.default_metrics, p.default_monitor, "max")


def _training(**kw):
    return SimpleNamespace(class_weights=kw.get("class_weights"), focal_gamma=kw.get("focal_gamma"))


def test_class_weights_and_focal_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [0.0, 0.0]])
    targets = torch.tensor([0, 1, IGNORE])
    p = torch.softmax(logits, -1)
    weighted = Objective("classes", torch.tensor([1.0, 3.0]), None)(logits, targets)
    by_hand = -(1 * math.log(p[0, 0]) + 3 * math.log(p[1, 1])) / (1 + 3)
    assert float(weighted) == pytest.approx(by_hand, rel=1e-6)
    assert float(weighted) == pytest.approx(float(F.cross_entropy(logits[:2], targets[:2], weight=torch.tensor([1.0, 3.0]))))
    focal = Objective("classes", None, 2.0)(logits, targets)
    by_hand = -((1 - p[0, 0]) ** 2 * math.log(p[0, 0]) + (1 - p[1, 1]) ** 2 * math.log(p[1, 1])) / 2
    assert float(focal) == pytest.approx(float(by_hand), rel=1e-6)
    plain = PROBLEM_TYPES["single_label_classification"].loss(logits, targets)
    assert float(Objective("classes", None, None)(logits, targets)) == pytest.approx(float(plain), rel=1e-6)
    # multi-label: positive-class weight per label; a masked (NaN) row counts nowhere
    x = torch.tensor([[1.0, -1.0], [0.0, 2.0], [3.0, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.nan, math.nan]])
    got = Objective("multi_label", torch.tensor([2.0, 1.0]), None)(x, y)
    s = torch.sigmoid(x)
    terms = [-2 * math.log(s[0, 0]), -math.log(1 - s[0, 1]), -math.log(1 - s[1, 0]), -1 * math.log(s[1, 1])]
    assert float(got) == pytest.approx(sum(terms) / 4, rel=1e-6)
    plain = PROBLEM_TYPES["residue_multi_label_classification"].loss(x, y)
    assert float(Objective("multi_label", None, None)(x, y)) == pytest.approx(float(plain), rel=1e-6)


def test_balanced_weights_are_scikit_learns_and_options_are_checked():
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0, 0, 0, 0, 1, 2, 2, 0, 1, 0]
    obj = make_objective(_training(class_weights="balanced"), _task("single_label_classification", 3), labels)
    np.testing.assert_allclose(obj.weights.numpy(), compute_class_weight("balanced", classes=np.arange(3),
                                                                         y=np.array(labels)), rtol=1e-6)
    residue = [np.array([0, 1, IGNORE, 1]), np.array([1, 1, 1])]
    obj = make_objective(_training(class_weights="balanced"), _task("residue_single_label_classification", 2), residue)
    np.testing.assert_allclose(obj.weights.numpy(), [6 / (2 * 1), 6 / (2 * 5)], rtol=1e-6)  # masked residue left out
    multi = [[0], [0, 1], [0], []]
    obj = make_objective(_training(class_weights="balanced"), _task("multi_label_classification", 3), multi)
    np.testing.assert_allclose(obj.weights.numpy(), [1 / 3, 3 / 1, 1.0])  # negatives / positives; absent label 1
    assert make_objective(_training(), _task("single_label_classification", 2), labels) is None
    explicit = make_objective(_training(class_weights="1,4.5"), _task("single_label_classification", 2), labels)
    assert explicit.weights.tolist() == [1.0, 4.5]
    with pytest.raises(ConfigError, match="has 3 numbers but the task has 2"):
        make_objective(_training(class_weights="1,2,3"), _task("single_label_classification", 2), labels)
    with pytest.raises(ConfigError, match="applies to classification"):
        make_objective(_training(focal_gamma=2.0), _task("regression", 1), [0.1])


@pytest.mark.parametrize("metric", ["mcc", "f1"])
def test_the_tuned_threshold_equals_an_exhaustive_search(metric):
    from sklearn.metrics import f1_score, matthews_corrcoef

    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.15).astype(int)
    p1 = np.round(np.clip(0.3 * y + rng.random(300) * 0.6, 0, 1), 2)  # rounded: many ties
    t, score = tune(y, p1, metric)
    fn = matthews_corrcoef if metric == "mcc" else f1_score
    scores = {float(c): fn(y, (p1 >= c).astype(int)) for c in np.unique(p1)}
    best = max(scores.values())
    expected = min((c for c, s in scores.items() if np.isclose(s, best, atol=1e-12)), key=lambda c: abs(c - 0.5))
    assert t == expected and score == pytest.approx(best)


def _train(tmp_path, tiny_models, amp_small, *extra):
    out = tmp_path / "run"
    assert main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "training.epochs=2",
                 "data.problem_type=single_label_classification", "output.bootstrap=0", f"output.dir={out}",
                 *extra]) == 0
    return out


def test_a_binary_run_tunes_its_threshold_and_predictions_use_it(tmp_path, tiny_models, amp_small, capsys):
    from sklearn.metrics import matthews_corrcoef

    rd = _train(tmp_path, tiny_models, amp_small, "training.class_weights=balanced", "training.focal_gamma=1.5",
                "training.tune_threshold=mcc")
    printed = capsys.readouterr()
    assert "training loss: class weights" in printed.out + printed.err
    blob = json.loads((rd / "test_metrics.json").read_text())
    section = json.loads((rd / "threshold.json").read_text())
    t = section["threshold"]
    assert blob["threshold"] == section and section["metric"] == "mcc"
    preds = pd.read_csv(rd / "test_predictions.csv")
    assert (preds["prediction"] == (preds["prob_1"] >= t).astype(int)).all()
    assert (preds["prediction_at_0.5"] == preds[["prob_0", "prob_1"]].to_numpy().argmax(1)).all()
    assert section["metrics"]["mcc"] == pytest.approx(matthews_corrcoef(preds["label"], preds["prediction"]))
    assert blob["metrics"]["mcc"] == pytest.approx(matthews_corrcoef(preds["label"], preds["prediction_at_0.5"]))
    assert "threshold" in printed.out + printed.err
    # `plmforge predict` decides with the run's threshold too
    out = tmp_path / "pred.csv"
    assert main(["predict", str(rd), "--input", str(amp_small / "test.csv"), "--output", str(out)]) == 0
    again = pd.read_csv(out)
    assert again["prediction"].tolist() == preds["prediction"].tolist()
    assert again["prediction_at_0.5"].tolist() == preds["prediction_at_0.5"].tolist()
    # `plmforge evaluate` reports the metrics at the run's threshold next to those at 0.5
    from plmforge.api import evaluate

    report = evaluate(rd, amp_small / "test.csv")
    assert report.blob["threshold"]["threshold"] == t
    assert report.blob["threshold"]["metrics"] == pytest.approx(section["metrics"])


def test_without_threshold_tuning_predictions_stay_at_one_half(tmp_path, tiny_models, amp_small, capsys):
    rd = _train(tmp_path, tiny_models, amp_small)  # the default: no tuning
    assert main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "training.epochs=1",
                 "data.problem_type=regression", "training.tune_threshold=f1", f"output.dir={tmp_path / 'r'}"]) != 0
    assert "applies to binary classification" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert not (rd / "threshold.json").exists()
    assert "prediction_at_0.5" not in pd.read_csv(rd / "test_predictions.csv").columns
    assert "threshold" not in json.loads((rd / "test_metrics.json").read_text())


@pytest.mark.shared_data
def test_residue_tasks_tune_the_threshold_over_validation_residues(tmp_path, tiny_models):
    from conftest import shared
    from sklearn.metrics import matthews_corrcoef

    from plmforge.api import predict

    d = tmp_path / "para"
    d.mkdir()
    for split, name, n in (("train", "train", 30), ("val", "validation", 10), ("test", "test", 10)):
        pd.read_parquet(shared("paratope", f"sabdab_{split}.parquet")).head(n).to_parquet(d / f"{name}.parquet")
    rd = tmp_path / "run"
    assert main(["train", f"data.dataset={d}", f"model.name={tiny_models['bert']}", "training.epochs=1",
                 "data.problem_type=residue_single_label_classification", "data.sequence_column=sequence",
                 "data.label_column=paratope_labels", "data.residue_classes=N,P", "data.id_column=pdb",
                 "training.tune_threshold=mcc", "output.bootstrap=0", "output.baselines=false",
                 f"output.dir={rd}"]) == 0
    section = json.loads((rd / "threshold.json").read_text())
    t = section["threshold"]
    # exhaustive search over the validation residues' probabilities, with sklearn's MCC
    val = predict(rd, d / "validation.parquet").table
    truth = np.concatenate([np.array([c == "P" for c in s], dtype=int)
                            for s in pd.read_parquet(d / "validation.parquet")["paratope_labels"]])
    p1 = val["prob_1"].to_numpy()
    assert len(p1) == len(truth)
    best = max(matthews_corrcoef(truth, (p1 >= c).astype(int)) for c in np.unique(p1))
    assert section["validation_score"] == pytest.approx(best, abs=1e-9)
    assert matthews_corrcoef(truth, (p1 >= t).astype(int)) == pytest.approx(best, abs=1e-9)
    # test predictions decided at t, residue by residue and in the per-sequence strings
    long = pd.read_csv(rd / "test_predictions.csv")
    assert (long["prediction"] == (long["prob_1"] >= t).astype(int)).all()
    assert (long["prediction_at_0.5"] == long[["prob_0", "prob_1"]].to_numpy().argmax(1)).all()
    labelled = long.dropna(subset=["label"])
    assert section["metrics"]["mcc"] == pytest.approx(
        matthews_corrcoef(labelled["label"].astype(int), labelled["prediction"]), abs=1e-9)
    strings = pd.read_csv(rd / "test_predictions_sequences.csv")
    for ident, text in zip(strings["id"], strings["predicted"], strict=True):
        rows = long[long["id"] == ident]
        assert text == "".join("NP"[v] for v in rows["prediction"])
