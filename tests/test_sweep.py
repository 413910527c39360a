"""`plmforge sweep`: Optuna trials as ordinary runs, a summary, a best config that re-runs, pruning,
resume, embeddings reused across trials, and clear errors for a bad space."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from plmforge.cli import main
from plmforge.config import load_config
from plmforge.errors import ConfigError
from plmforge.sweep import parse_space, sweep

SPACE = """
training.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
head.pooling: [mean, attention1d]
training.epochs: {low: 1, high: 2}
"""


def _base(amp_small, tiny_models, *extra):
    return [f"data.dataset={amp_small}", "data.problem_type=single_label_classification",
            f"model.name={tiny_models['esm']}", "output.baselines=false", "output.bootstrap=0", *extra]


def _best_validation(run_dir, monitor):
    rows = [json.loads(x) for x in (run_dir / "metrics_epochs.jsonl").read_text().splitlines()]
    return max(r[f"val_{monitor}"] for r in rows)


def test_a_three_trial_sweep_writes_three_runs_and_a_best_config_that_reruns(tmp_path, tiny_models, amp_small,
                                                                             monkeypatch, capsys):
    monkeypatch.setenv("PLMFORGE_CACHE_DIR", str(tmp_path / "store"))  # a fresh store: count what trials compute
    (tmp_path / "space.yaml").write_text(SPACE)
    out = tmp_path / "sweep"
    assert main(["sweep", "--space", str(tmp_path / "space.yaml"), "--trials", "3", "--out", str(out), "--no-prune",
                 *_base(amp_small, tiny_models)]) == 0
    printed = capsys.readouterr()
    assert "best trial" in printed.out + printed.err and "best_config.yaml" in printed.out + printed.err
    table = pd.read_csv(out / "sweep_trials.csv")
    assert table["trial"].tolist() == [0, 1, 2] and (table["state"] == "complete").all()
    state = json.loads((out / "sweep.json").read_text())
    monitor = state["monitor"]
    computed: dict[str, list[int]] = {}
    for _, row in table.iterrows():
        rd = out / row["run_dir"]
        cfg = yaml.safe_load((rd / "config.yaml").read_text())  # an ordinary run with the trial's values
        assert cfg["training"]["learning_rate"] == pytest.approx(row["training.learning_rate"])
        assert cfg["head"]["pooling"] == row["head.pooling"] and cfg["training"]["epochs"] == row["training.epochs"]
        assert 1e-4 <= row["training.learning_rate"] <= 1e-2
        assert row["value"] == pytest.approx(_best_validation(rd, monitor))
        assert (rd / "test_metrics.json").is_file()
        n = int(re.search(r"embedding store: computed (\d+) of", (rd / "train.log").read_text()).group(1))
        computed.setdefault(row["head.pooling"], []).append(n)
    for pooling, counts in computed.items():  # the backbone runs in the first trial of each kind of state only
        assert counts[0] > 0 and all(c == 0 for c in counts[1:]), (pooling, counts)
    best = table.loc[table["value"].idxmax()]
    assert state["best"]["trial"] == int(best["trial"])
    assert (out / "plots" / "sweep.png").stat().st_size > 5000
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "best_config.yaml"), f"output.dir={again}"]) == 0
    assert _best_validation(again, monitor) == pytest.approx(best["value"], abs=1e-6)  # the same run, seeded
    # resume to 4 trials: the first three are kept
    kept = (out / "trial_000" / "best").stat().st_mtime_ns
    assert main(["sweep", "--resume", str(out), "--trials", "4"]) == 0
    assert pd.read_csv(out / "sweep_trials.csv")["trial"].tolist() == [0, 1, 2, 3]
    assert (out / "trial_000" / "best").stat().st_mtime_ns == kept


def test_pruned_trials_stop_early_as_finished_runs(tmp_path, tiny_models, amp_small, monkeypatch):
    import optuna

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):  # type: ignore[no-untyped-def]
            return True

    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **kw: Always())
    base = load_config(None, _base(amp_small, tiny_models, "training.epochs=3"))
    result = sweep(base, parse_space({"training.learning_rate": {"low": 1e-4, "high": 1e-2}}), 2, tmp_path / "s")
    assert [t["state"] for t in result.trials] == ["pruned", "pruned"]
    assert [t["epochs_run"] for t in result.trials] == [1, 1]
    assert result.best is None and not (tmp_path / "s" / "best_config.yaml").exists()
    run = tmp_path / "s" / "trial_000"
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["status"] == "finished" and (run / "test_metrics.json").is_file()
    assert "pruned by the sweep" in (run / "train.log").read_text()


@pytest.mark.parametrize("space, message", [
    ({"training.lr": {"low": 1, "high": 2}}, "'training.lr' is not a config key.*learning_rate"),
    ({"trainin.epochs": [1, 2]}, "names no config section"),
    ({"training.epochs": {"low": 3, "high": 2}}, "needs low < high"),
    ({"training.epochs": []}, "empty list"),
    ({"training.learning_rate": {"low": 0, "high": 1, "log": True}}, "low must be > 0"),
    ({"training.learning_rate": {"min": 0, "max": 1}}, "must be a list of choices or"),
    ({"output.dir": ["a", "b"]}, "set by the sweep"),
    ({}, "must map config keys"),
])
def test_a_bad_space_is_refused_with_the_key_and_the_fix(space, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(space)


def test_a_space_value_that_makes_no_valid_run_is_named_before_any_trial(tmp_path, tiny_models, amp_small):
    base = load_config(None, _base(amp_small, tiny_models, f"output.dir={tmp_path / 'x'}"))
    with pytest.raises(ConfigError, match=r"training.epochs=0 does not make a valid run.*must be > 0"):
        sweep(base, parse_space({"training.epochs": {"low": 0, "high": 3}}), 2)
    with pytest.raises(ConfigError, match="head.pooling='maximum' does not make a valid run"):
        sweep(base, parse_space({"head.pooling": ["mean", "maximum"]}), 2)
    assert not (tmp_path / "x").exists()


def test_the_real_median_pruner_stops_trials_below_the_median(tmp_path, tiny_models, amp_small):
    """Optuna's own MedianPruner on real trials: a learning rate too small to learn falls below the
    median of the finished trials at the same epoch and is stopped there; the others run to the end."""
    base = load_config(None, _base(amp_small, tiny_models, "training.epochs=3", "training.monitor=loss"))
    result = sweep(base, parse_space({"training.learning_rate": [0.01, 1e-12]}), 6, tmp_path / "s")
    rows = result.trials
    pruned = [t for t in rows if t["state"] == "pruned"]
    assert pruned, rows
    assert all(t["epochs_run"] < 3 for t in pruned)
    assert all(t["training.learning_rate"] == 1e-12 for t in pruned), rows
    assert all(t["epochs_run"] == 3 for t in rows if t["state"] == "complete")
