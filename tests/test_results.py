"""Every run's test metrics come with 95% bootstrap intervals, baselines fitted on the same splits and a
verdict on whether the PLM beat the best baseline beyond the interval."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import shared

from plmforge.baselines import composition, fit_baselines, one_hot_positions, residue_windows
from plmforge.cli import main
from plmforge.config import load_config
from plmforge.data.dataset import load_data


def test_composition_features_by_hand():
    x = composition(["AAC", "XW"])
    a, c, w = "ACDEFGHIKLMNPQRSTVWY".index("A"), "ACDEFGHIKLMNPQRSTVWY".index("C"), "ACDEFGHIKLMNPQRSTVWY".index("W")
    assert x[0, a] == pytest.approx(2 / 3) and x[0, c] == pytest.approx(1 / 3) and x[0, :20].sum() == pytest.approx(1)
    assert x[0, 20 + a * 20 + a] == pytest.approx(0.5) and x[0, 20 + a * 20 + c] == pytest.approx(0.5)
    assert x[1, w] == 1.0 and x[1, 20:].sum() == 0  # X is no amino acid: no dipeptide with it


def test_position_and_window_features_by_hand():
    x = one_hot_positions(["AC", "CA"]).toarray()
    assert x.shape == (2, 42) and x[0, 0] == 1 and x[0, 21 + 1] == 1 and x[1, 1] == 1 and x[1, 21] == 1
    w = residue_windows(["ACD"]).toarray()  # 3 residues x 7 positions x 22 symbols
    assert w.shape == (3, 7 * 22)
    first = w[0].reshape(7, 22).argmax(1)
    assert first.tolist() == [21, 21, 21, 0, 1, 2, 21]  # beyond the ends, A, C, D, beyond the end


@pytest.mark.shared_data
def test_baselines_on_real_site_windows():
    """SUMOylation 21-mers (positives and negatives in separate files): fixed length, so the one-hot
    position model is fitted too; the regularisation is the best on validation; the majority model
    predicts the training frequencies."""
    sumo = shared("sumo_21mer")
    spec = lambda kind: f"{sumo / f'Sumoylation_pos_{kind}.fasta'}::1,{sumo / f'Sumoylation_neg_{kind}.fasta'}::0"
    cfg = load_config(None, [f"data.train={spec('Train')}", f"data.test={spec('Test')}", "data.max_samples=1500",
                             "data.problem_type=single_label_classification", "model.name=unused"])
    data = load_data(cfg.data, cfg.training)
    test = data.splits["test"]
    labels = np.asarray(test.labels)
    found = {b.name: b for b in fit_baselines(data.task, data.splits, labels, np.zeros((len(labels), 2)))}
    assert set(found) == {"majority", "composition", "one_hot_position"}
    freq = np.bincount(data.splits["train"].labels, minlength=2) / len(data.splits["train"])
    np.testing.assert_allclose(found["majority"].scores, np.tile(freq, (len(labels), 1)))
    settings = found["one_hot_position"].settings
    tried = settings["validation score by C"]
    assert len(tried) == 4 and settings["C"] == max(tried, key=tried.get)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, found["one_hot_position"].scores[:, 1]) > 0.6  # the K at the centre is learnt


@pytest.mark.parametrize("problem", ["single_label_classification", "residue_single_label_classification"])
def test_baselines_featurised_in_blocks_equal_featurised_whole(tmp_path, amp_dir, problem, monkeypatch):
    """Validation and test proteins are featurised a block at a time (a test set of millions would take
    gigabytes whole): blocks of 7 proteins give the baselines of one block."""
    import plmforge.baselines as bl

    residue = problem.startswith("residue")
    for split, n in (("train", 80), ("validation", 30), ("test", 30)):
        df = pd.read_csv(amp_dir / f"{split}.csv").head(n)
        if residue:
            df["label"] = ["".join("1" if c in "AILMFVW" else "0" for c in s) for s in df["aa_seq"]]
        df.to_csv(tmp_path / f"{split}.csv", index=False)
    cfg = load_config(None, [f"data.dataset={tmp_path}", f"data.problem_type={problem}", "model.name=unused"])
    data = load_data(cfg.data, cfg.training)
    test = data.splits["test"]
    if residue:
        labels = [np.zeros(len(s) - 2) for s in test.sequences]  # residues the PLM would predict
        like = [np.zeros((len(s) - 2, 2)) for s in test.sequences]
    else:
        labels, like = np.asarray(test.labels), np.zeros((len(test), 2))
    whole = fit_baselines(data.task, data.splits, labels, like)
    monkeypatch.setattr(bl._Blocks.__init__, "__defaults__", (7,))
    blocked = fit_baselines(data.task, data.splits, labels, like)
    assert [b.name for b in blocked] == [b.name for b in whole] and len(whole) >= 2
    for a, b in zip(whole, blocked, strict=True):
        assert a.settings == b.settings
        for x, y in zip(a.scores, b.scores, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def _run(tmp_path, tiny_models, amp_small, *extra):
    out = tmp_path / "run"
    assert main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "training.epochs=2",
                 "data.problem_type=single_label_classification", f"output.dir={out}", *extra]) == 0
    return out


def test_a_run_reports_intervals_baselines_and_a_verdict(tmp_path, tiny_models, amp_small, capsys):
    from sklearn.utils import resample

    rd = _run(tmp_path, tiny_models, amp_small, "output.bootstrap=500")
    printed = capsys.readouterr()
    blob = json.loads((rd / "test_metrics.json").read_text())
    assert blob["bootstrap"] == {"resamples": 500, "seed": 42, "level": 0.95, "unit": "protein", "method": "percentile"}
    assert set(blob["intervals"]) == set(blob["metrics"]) - {"loss"}
    assert set(blob["baselines"]) == {"majority", "composition"}  # peptides of many lengths: no position model
    assert blob["baselines"]["majority"]["metrics"]["auroc"] == 0.5
    assert blob["verdict"]["metric"] == "accuracy" and blob["verdict"]["outcome"] in (
        "better", "worse", "not distinguishable")
    # the file's interval is what scikit-learn's resample gives on the written predictions
    preds = pd.read_csv(rd / "test_predictions.csv")
    y, p = preds["label"].to_numpy(), preds[["prob_0", "prob_1"]].to_numpy()
    rs, acc = np.random.RandomState(42), []
    for _ in range(500):
        yy, pp = resample(y, p, random_state=rs)
        acc.append(float((pp.argmax(1) == yy).mean()))
    lo, hi = np.percentile(acc, [2.5, 97.5])
    assert (blob["intervals"]["accuracy"]["low"], blob["intervals"]["accuracy"]["high"]) == pytest.approx((lo, hi),
                                                                                                        abs=1e-6)
    csv = pd.read_csv(rd / "test_metrics.csv").set_index("metric")
    assert csv.loc["accuracy", "ci95_low"] == pytest.approx(lo, abs=1e-5)
    base = pd.read_csv(rd / "test_baselines.csv")
    assert set(base["model"]) == {"majority", "composition"} and {"ci95_low", "ci95_high"} <= set(base.columns)
    assert (rd / "plots" / "baselines.png").is_file()
    text = printed.out + printed.err
    assert "PLM vs baselines" in text and "baseline composition" in text and f"[{lo:.4f}, {hi:.4f}]" in text


def test_baselines_and_intervals_can_be_switched_off(tmp_path, tiny_models, amp_small):
    rd = _run(tmp_path, tiny_models, amp_small, "output.baselines=false", "output.bootstrap=0")
    blob = json.loads((rd / "test_metrics.json").read_text())
    assert "baselines" not in blob and "intervals" not in blob and "verdict" not in blob
    assert list(pd.read_csv(rd / "test_metrics.csv").columns) == ["metric", "value"]
    assert not (rd / "test_baselines.csv").exists() and not (rd / "plots" / "baselines.png").exists()
