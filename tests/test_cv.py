"""Cross-validation: fold assignment (stratified, binned, group-aware), group-aware carved validation,
and `plmforge train --cv K` end to end (fold runs, mean +- sd, the fold ensemble on test, resume)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from plmforge.cli import main
from plmforge.config import CVConfig, DataConfig, TrainingConfig, load_config
from plmforge.data.dataset import load_data
from plmforge.data.folds import assign_folds
from plmforge.errors import ConfigError, DataError
from plmforge.tasks import PROBLEM_TYPES


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_folds_keep_the_class_balance_and_cover_every_sample_once(seed):
    labels = np.array([0] * 60 + [1] * 25 + [2] * 10)
    strata = PROBLEM_TYPES["single_label_classification"].cv_strata(labels.tolist(), 5)
    fold = assign_folds(len(labels), 5, seed, strata)
    assert sorted(np.unique(fold).tolist()) == [0, 1, 2, 3, 4] and len(fold) == len(labels)
    for f in range(5):
        counts = np.bincount(labels[fold == f], minlength=3)
        np.testing.assert_array_equal(counts, [12, 5, 2])  # 60/5, 25/5, 10/5: exactly proportional
    np.testing.assert_array_equal(fold, assign_folds(len(labels), 5, seed, strata))  # seeded
    assert not np.array_equal(fold, assign_folds(len(labels), 5, seed + 10, strata))


def test_regression_folds_are_binned_so_every_fold_spans_the_values():
    rng = np.random.default_rng(0)
    values = np.sort(rng.normal(size=200)) ** 3  # skewed
    strata = PROBLEM_TYPES["regression"].cv_strata(values.tolist(), 5)
    assert strata is not None and len(np.unique(strata)) == 10
    fold = assign_folds(len(values), 5, 0, strata)
    for f in range(5):
        part = values[fold == f]
        # every fold holds 4 of the 40 values in each tenth of the range of ranks
        np.testing.assert_array_equal(np.bincount(np.searchsorted(np.quantile(values, np.linspace(0, 1, 11)[1:-1]),
                                                                  part, side="right"), minlength=10), [4] * 10)
    unbinned = assign_folds(len(values), 5, 0, None)
    spread = max(abs(np.median(values[unbinned == f]) - np.median(values)) for f in range(5))
    binned = max(abs(np.median(values[fold == f]) - np.median(values)) for f in range(5))
    assert binned <= spread


@pytest.mark.parametrize("stratified", [False, True])
def test_group_folds_never_share_a_group(stratified):
    rng = np.random.default_rng(3)
    groups = [f"cluster{int(g)}" for g in rng.integers(0, 23, size=150)]
    labels = rng.integers(0, 2, size=150)
    fold = assign_folds(150, 5, 7, labels if stratified else None, groups)
    owner: dict[str, int] = {}
    for g, f in zip(groups, fold, strict=True):
        assert owner.setdefault(g, f) == f, f"group {g} is in folds {owner[g]} and {f}"
    assert len(set(fold.tolist())) == 5


def test_impossible_folds_are_refused_with_the_reason():
    with pytest.raises(DataError, match="only 3 samples to split into 5 folds"):
        assign_folds(3, 5, 0)
    with pytest.raises(DataError, match="only 2 distinct groups in column 'family'"):
        assign_folds(10, 3, 0, None, ["a"] * 5 + ["b"] * 5, group_column="family")
    with pytest.raises(ConfigError, match="cv.folds=1 is not cross-validation"):
        CVConfig(folds=1)
    with pytest.raises(ConfigError, match="cv.fold must be between 1 and cv.folds=3"):
        CVConfig(folds=3, fold=4)
    with pytest.raises(ConfigError, match="needs cv.folds"):
        CVConfig(fold=1)


def _grouped(tmp_path, amp_small, missing=False):
    df = pd.read_csv(amp_small / "train.csv")
    df["family"] = [f"fam{i % 17}" for i in range(len(df))]
    if missing:
        df.loc[5, "family"] = None
    path = tmp_path / "grouped.csv"
    df.to_csv(path, index=False)
    return path


def test_a_carved_validation_split_keeps_groups_apart(tmp_path, amp_small):
    path = _grouped(tmp_path, amp_small)
    cfg = DataConfig(train=str(path), problem_type="single_label_classification", group_column="family",
                     validation_fraction=0.2)
    data = load_data(cfg, TrainingConfig())
    train, val, test = data.splits["train"], data.splits["validation"], data.splits["test"]
    assert data.test_carved
    assert not set(train.groups) & set(val.groups) and not (set(train.groups) | set(val.groups)) & set(test.groups)
    assert len(train) + len(val) + len(test) == 96 and 0.1 < len(val) / 96 < 0.3 and 0.03 < len(test) / 96 < 0.2
    ungrouped = load_data(DataConfig(train=str(path), problem_type="single_label_classification",
                                     validation_fraction=0.2), TrainingConfig())
    assert set(ungrouped.splits["train"].groups or []) == set()  # no group column asked for: none read
    with pytest.raises(DataError, match="missing group") as err:
        load_data(DataConfig(train=str(_grouped(tmp_path, amp_small, missing=True)),
                             problem_type="single_label_classification", group_column="family"), TrainingConfig())
    assert "row 5" in str(err.value) or "line 7" in str(err.value)
    with pytest.raises(DataError, match="no group column 'cluster'"):
        load_data(DataConfig(train=str(path), problem_type="single_label_classification", group_column="cluster"),
                  TrainingConfig())


def test_a_fold_run_pools_train_and_validation_and_holds_out_its_fold(amp_small):
    cfg = DataConfig(dataset=str(amp_small), problem_type="single_label_classification")
    seen = []
    for i in (1, 2, 3):
        data = load_data(cfg, TrainingConfig(seed=5), cv=CVConfig(folds=3, fold=i))
        assert len(data.splits["train"]) + len(data.splits["validation"]) == 96 + 32
        assert not set(data.splits["train"].ids) & set(data.splits["validation"].ids)
        assert len(data.splits["test"]) == 32
        labels = np.asarray(data.splits["validation"].labels)
        assert abs(labels.mean() - 0.5) < 0.05  # stratified
        seen += data.splits["validation"].ids
    assert len(seen) == len(set(seen)) == 128


def test_train_cv_writes_fold_runs_their_mean_and_sd_and_a_test_ensemble(tmp_path, tiny_models, amp_small, capsys):
    from plmforge.api import predict_ensemble

    out = tmp_path / "cv"
    args = ["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "training.epochs=2",
            "data.problem_type=single_label_classification", "output.bootstrap=50", "output.baselines=false",
            f"output.dir={out}", "--cv", "3"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "+-" in printed.out + printed.err and "ensemble test accuracy" in printed.out + printed.err
    table = pd.read_csv(out / "cv_metrics.csv")
    assert table["fold"].astype(str).tolist() == ["1", "2", "3", "mean", "sd"]
    folds = table.iloc[:3]
    for col in ("validation_accuracy", "validation_mcc", "test_accuracy", "test_loss"):
        v = folds[col].astype(float).to_numpy()
        assert float(table.iloc[3][col]) == pytest.approx(v.mean(), abs=1e-5)
        assert float(table.iloc[4][col]) == pytest.approx(v.std(ddof=1), abs=1e-5)
    blob = json.loads((out / "cv_metrics.json").read_text())
    for f in blob["folds"]:  # each fold's validation numbers are those of its best epoch
        epochs = [json.loads(x) for x in (out / f"fold_{f['fold']}" / "metrics_epochs.jsonl").read_text().splitlines()]
        best = max(epochs, key=lambda e: (e["val_mcc"] if not math.isnan(e["val_mcc"]) else -2, -e["epoch"]))
        assert f["validation"]["mcc"] == pytest.approx(best["val_mcc"], nan_ok=True)
    assignment = json.loads((out / "cv.json").read_text())["validation"]
    ids = [i for fold in assignment.values() for i in fold]
    assert len(ids) == len(set(ids)) == 128
    mapping = json.loads((out / "fold_2" / "split_mapping.json").read_text())
    assert mapping["samples"]["validation"] == assignment["2"] and mapping["cross_validation"]["fold"] == 2
    # the ensemble is the mean of the fold models on the test split
    ensemble = json.loads((out / "test_ensemble_metrics.json").read_text())
    expected = predict_ensemble([out / f"fold_{i}" for i in (1, 2, 3)], amp_small / "test.csv").table
    written = pd.read_csv(out / "test_ensemble_predictions.csv")
    np.testing.assert_allclose(written[["prob_0", "prob_1"]].to_numpy(), expected[["prob_0", "prob_1"]].to_numpy(),
                               atol=1e-6)
    truth = pd.read_csv(amp_small / "test.csv")["label"].to_numpy()
    assert ensemble["metrics"]["accuracy"] == pytest.approx((expected["prediction"].to_numpy() == truth).mean())
    assert "intervals" in ensemble and (out / "plots" / "cv_folds.png").stat().st_size > 5000
    from plmforge.api import load_run
    from plmforge.errors import RunDirError

    with pytest.raises(RunDirError, match="is a cross-validation run: give one of its fold runs"):
        load_run(out)
    # resume: a lost fold is run again (the same result: runs are seeded), finished folds are kept
    kept = (out / "fold_1" / "best").stat().st_mtime_ns
    import shutil

    shutil.rmtree(out / "fold_3")
    (out / "cv_metrics.csv").unlink()
    assert main(["train", "--resume", str(out)]) == 0
    assert (out / "fold_1" / "best").stat().st_mtime_ns == kept
    again = pd.read_csv(out / "cv_metrics.csv")
    pd.testing.assert_frame_equal(again, table)


def test_train_refuses_cv_without_a_fold_and_cli_refuses_a_full_run_dir(tmp_path, tiny_models, amp_small):
    from plmforge.train.run import train

    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "cv.folds=3",
                             "data.problem_type=single_label_classification", f"output.dir={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="asks for cross-validation"):
        train(cfg)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "something").write_text("earlier result")
    from plmforge.cv import cross_validate
    from plmforge.errors import RunDirError

    with pytest.raises(RunDirError, match="not a plmforge cross-validation run.*something"):
        cross_validate(cfg)
    assert (tmp_path / "x" / "something").read_text() == "earlier result"


def test_cross_validation_and_sweeps_refuse_a_multi_process_launch(tmp_path, tiny_models, amp_small, monkeypatch):
    from plmforge.cv import cross_validate
    from plmforge.sweep import parse_space, sweep

    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "cv.folds=3",
                             "data.problem_type=single_label_classification", f"output.dir={tmp_path / 'x'}"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="cv.folds=K cv.fold=i"):
        cross_validate(cfg)
    with pytest.raises(ConfigError, match="cannot run under accelerate launch"):
        sweep(cfg.replace(cv=CVConfig()), parse_space({"training.epochs": [1, 2]}), 2)
    assert not (tmp_path / "x").exists()
