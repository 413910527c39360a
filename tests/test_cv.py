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
    # the folds trained together: their intervals are the ensemble's, their curves one plot
    fold_blob = json.loads((out / "fold_1" / "test_metrics.json").read_text())
    assert "intervals" not in fold_blob and "test_ensemble_metrics.json" in fold_blob["report"]
    assert (out / "plots" / "cv_curves.png").stat().st_size > 5000
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


def _cv_config(out, tiny_models, data, *extra, problem="single_label_classification"):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}", "cv.folds=3",
                              f"data.problem_type={problem}", "training.epochs=3",
                              "training.patience=null", "batching.batch_size=5", "training.learning_rate=0.01",
                              "training.max_grad_norm=0.5", "output.bootstrap=0", "output.baselines=false",
                              "output.plots=false", f"output.dir={out}", *extra])


def _charge(tmp_path, amp_small):
    """The AMP peptides with a regression target: the fraction of K and R residues."""
    out = tmp_path / "charge"
    out.mkdir()
    for split in ("train", "validation", "test"):
        df = pd.read_csv(amp_small / f"{split}.csv")
        df["label"] = [sum(c in "KR" for c in s) / len(s) for s in df["aa_seq"]]
        df.to_csv(out / f"{split}.csv", index=False)
    return out


def _epochs(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics_epochs.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("problem", ["single_label_classification", "regression"])
def test_folds_trained_together_equal_folds_trained_alone(tmp_path, tiny_models, amp_small, problem):
    """Without dropout the stacked pass computes each fold's own run: per-epoch validation numbers, best epochs,
    early stops, test metrics and the optimizer state in last/ agree up to rounding. The folds' epochs have
    different numbers of batches (85 or 86 training samples, batches of 5: a fold sits out the last step),
    every fold clips its own gradient norm, follows its own learning-rate schedule and (regression) scales
    its labels with its own training values."""
    import torch

    from plmforge.cv import cross_validate

    data = amp_small if problem != "regression" else _charge(tmp_path, amp_small)
    extra = ("head.dropout=0", "training.epochs=4", "training.patience=1")
    together = cross_validate(_cv_config(tmp_path / "t", tiny_models, data, *extra, problem=problem), progress=False)
    alone = cross_validate(_cv_config(tmp_path / "a", tiny_models, data, *extra, "cv.together=false", problem=problem),
                           progress=False)
    sizes = set()
    for i in (1, 2, 3):
        t, a = tmp_path / "t" / f"fold_{i}", tmp_path / "a" / f"fold_{i}"
        start = json.loads((t / "events.jsonl").read_text().splitlines()[0])
        assert start["together"] == 3 and "together" not in json.loads((a / "events.jsonl").read_text().splitlines()[0])
        sizes.add(len(json.loads((t / "split_mapping.json").read_text())["samples"]["train"]))
        for et, ea in zip(_epochs(t), _epochs(a), strict=True):
            assert et["best_so_far"] == ea["best_so_far"]
            for key in ("train_loss", "val_loss", "val_auroc" if problem != "regression" else "val_spearman_corr"):
                assert et[key] == pytest.approx(ea[key], rel=1e-4, abs=1e-6), (i, et["epoch"], key)
        st = torch.load(t / "last" / "training_state.pt", weights_only=False)["optimizer"]["state"]
        sa = torch.load(a / "last" / "training_state.pt", weights_only=False)["optimizer"]["state"]
        assert st.keys() == sa.keys()
        for k in st:
            assert float(st[k]["step"]) == float(sa[k]["step"])
            torch.testing.assert_close(st[k]["exp_avg"], sa[k]["exp_avg"], rtol=1e-3, atol=1e-6)
    assert sizes == {85, 86}
    if problem != "regression":  # (seeded) the folds stop early at different epochs: 2, 4 and 3
        assert len({len(_epochs(tmp_path / "t" / f"fold_{i}")) for i in (1, 2, 3)}) > 1
    for part in ("validation", "test"):
        for k, v in alone.mean[part].items():
            assert together.mean[part][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (part, k)


def test_a_folds_dropout_does_not_depend_on_the_folds_beside_it(tmp_path, tiny_models, amp_small):
    """With dropout, a fold's masks come from its own generator: fold 2 trained with folds 1 and 3 and fold 2
    trained alone in the stacked pass (as a resumed cross-validation does) agree up to rounding, and dropout
    is really applied (the run differs from one without it)."""
    import dataclasses

    from plmforge.cv import fold_config
    from plmforge.train.folds import train_together

    def fold(out, i, *extra):
        cfg = fold_config(_cv_config(out, tiny_models, amp_small, "head.dropout=0.3", *extra), i, out)
        return cfg.replace(output=dataclasses.replace(cfg.output, overwrite=True))

    three = train_together([fold(tmp_path / "three", i) for i in (1, 2, 3)], progress=False)
    one = train_together([fold(tmp_path / "one", 2)], progress=False)
    off = train_together([fold(tmp_path / "off", 2, "head.dropout=0")], progress=False)
    assert three is not None and one is not None and off is not None
    for a, b in zip(three[1].fit.history, one[0].fit.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert abs(one[0].fit.history[0]["train_loss"] - off[0].fit.history[0]["train_loss"]) > 1e-4


def test_folds_that_cannot_be_stacked_train_one_after_another(tmp_path, tiny_models, amp_small, caplog):
    from plmforge.cv import cross_validate

    cfg = _cv_config(tmp_path / "x", tiny_models, amp_small, "head.pooling=attention1d", "training.epochs=1")
    with caplog.at_level("INFO", logger="plmforge"):
        result = cross_validate(cfg, progress=False)
    assert "the folds train one after another (only the mean-pooling head trains together)" in caplog.text
    assert len(result.folds) == 3 and all((tmp_path / "x" / f"fold_{i}" / "best").is_dir() for i in (1, 2, 3))


def test_folds_together_embed_each_sequence_once_and_fall_back_without_memory(tmp_path, tiny_models, amp_small,
                                                                               caplog):
    """With an empty store the first fold computes every train/validation embedding and the others read them
    (each fold's train.log says which); with no in-memory budget the folds train one after another."""
    from plmforge.cv import cross_validate

    store = f"method.cache_dir={tmp_path / 'store'}"
    cross_validate(_cv_config(tmp_path / "x", tiny_models, amp_small, store, "training.epochs=1"), progress=False)
    logs = [(tmp_path / "x" / f"fold_{i}" / "train.log").read_text() for i in (1, 2, 3)]
    assert "computed 128 of 128 train/validation embeddings" in logs[0]
    assert all("computed 0 of 128 train/validation embeddings" in text for text in logs[1:])
    with caplog.at_level("INFO", logger="plmforge"):
        cross_validate(_cv_config(tmp_path / "y", tiny_models, amp_small, store, "training.epochs=1",
                                  "method.cache_memory_mb=0"), progress=False)
    assert "the folds train one after another (the folds' pooled vectors" in caplog.text
    assert all((tmp_path / "y" / f"fold_{i}" / "best").is_dir() for i in (1, 2, 3))
