"""Heads on a frozen backbone train from stored outputs held in memory: the same numbers to the last digit
as reading the embedding store batch by batch (pooled vectors, per-token states, residue tasks), a
budget that sends what does not fit back to the store, and the store's bulk read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from plmforge.config import load_config
from plmforge.errors import ConfigError
from plmforge.store import EmbeddingStore, record_key
from plmforge.train.run import train

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=3",
        "batching.batch_size=16", "training.learning_rate=0.003", "method.name=freeze", "head.dropout=0.2"]


def _run(tmp_path: Path, tiny_models, data, out: str, *extra: str):
    cfg = load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}",
                             f"output.dir={tmp_path / out}", f"method.cache_dir={tmp_path / 'store'}", *BASE, *extra])
    return train(cfg, progress=False)


def _epochs(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics_epochs.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _same_run(a: Path, b: Path) -> None:
    assert _epochs(a) == _epochs(b)  # every loss and metric of every epoch, exactly
    wa, wb = load_file(str(a / "best" / "model.safetensors")), load_file(str(b / "best" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ta, tb = json.loads((a / "test_metrics.json").read_text()), json.loads((b / "test_metrics.json").read_text())
    assert ta["metrics"] == tb["metrics"]
    assert (a / "test_predictions.csv").read_text() == (b / "test_predictions.csv").read_text()


def _log(run_dir: Path) -> str:
    return (run_dir / "train.log").read_text()


@pytest.mark.parametrize("pooling", ["mean", "attention1d"])
def test_memory_and_store_give_the_same_run_to_the_last_digit(tmp_path, tiny_models, amp_small, pooling):
    """The first run fills the store and reads every batch from it (cache_memory_mb=0); the second holds
    the stored outputs in memory (pooled vectors for mean, per-token states for attention1d)."""
    streamed = _run(tmp_path, tiny_models, amp_small, "stream", f"head.pooling={pooling}", "method.cache_memory_mb=0")
    held = _run(tmp_path, tiny_models, amp_small, "memory", f"head.pooling={pooling}")
    kind = "pooled vectors" if pooling == "mean" else "per-token states"
    assert "held in memory" not in _log(streamed.run_dir)
    assert f"the train split's 96 {kind} held in memory" in _log(held.run_dir)
    assert f"the test split's 32 {kind} held in memory" in _log(held.run_dir)  # stored by the first run
    _same_run(streamed.run_dir, held.run_dir)


def test_a_first_run_with_an_empty_store_equals_a_run_from_memory(tmp_path, tiny_models, amp_small):
    """Filling the store and training in one run (memory after the fill) gives what a later run gives."""
    first = _run(tmp_path, tiny_models, amp_small, "first")
    assert "computed 128 of 128 train/validation embeddings" in _log(first.run_dir)
    again = _run(tmp_path, tiny_models, amp_small, "again")
    assert "computed 0 of 128" in _log(again.run_dir)
    _same_run(first.run_dir, again.run_dir)


def test_residue_states_in_memory_equal_the_store(tmp_path, tiny_models):
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(60):
        seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=int(rng.integers(8, 30))))
        rows.append({"sequence": seq, "label": "".join("P" if c in "KRH" else "N" for c in seq)})
    f = tmp_path / "res.csv"
    pd.DataFrame(rows).to_csv(f, index=False)
    extra = [f"data.train={f}", "data.problem_type=residue_single_label_classification", "data.residue_classes=N,P",
             "data.validation_fraction=0.2", "data.test_fraction=0"]
    base = [x for x in BASE if not x.startswith(("data.problem_type", "data.num_labels"))]

    def run(out: str, *more: str):
        cfg = load_config(None, [f"model.name={tiny_models['esm']}", f"output.dir={tmp_path / out}",
                                 f"method.cache_dir={tmp_path / 'store'}", *base, *extra, *more])
        return train(cfg, progress=False).run_dir

    streamed, held = run("stream", "method.cache_memory_mb=0"), run("memory")
    assert "per-token states held in memory" in _log(held)
    assert _epochs(streamed) == _epochs(held)


def test_what_exceeds_the_budget_is_read_from_the_store(tmp_path, tiny_models, amp_small):
    _run(tmp_path, tiny_models, amp_small, "fill", "head.pooling=attention1d")
    tight = _run(tmp_path, tiny_models, amp_small, "tight", "head.pooling=attention1d", "method.cache_memory_mb=0.5")
    log = _log(tight.run_dir)
    assert "exceed the in-memory budget (method.cache_memory_mb" in log and "batches are read from the store" in log
    _same_run(tmp_path / "fill", tight.run_dir)
    with pytest.raises(ConfigError, match=r"method.cache_memory_mb must be >= 0"):
        _run(tmp_path, tiny_models, amp_small, "bad", "method.cache_memory_mb=-1")


def test_get_many_returns_what_get_returns_across_shards_and_pending(tmp_path):
    store = EmbeddingStore(tmp_path, {"source": "t", "stored": "tokens", "dtype": "float32"})
    rng = np.random.default_rng(0)
    values = {}
    for shard in range(3):
        for i in range(20):
            key = record_key({"sequence": f"{shard}-{i}"})
            values[key] = rng.normal(size=(int(rng.integers(1, 6)), 4)).astype(np.float32)
            store.put(key, values[key])
        if shard < 2:
            store.flush()  # the third shard's entries stay pending (not written yet)
    keys = list(values)
    order = rng.permutation(len(keys))
    wanted = np.array([keys[i] for i in order], dtype="S40")
    got = store.get_many(wanted)
    for k, v in zip(wanted, got, strict=True):
        np.testing.assert_array_equal(v, store.get(k))
        np.testing.assert_array_equal(v, values[k.decode()])
    with pytest.raises(KeyError):
        store.get_many(np.array([record_key({"sequence": "absent"})], dtype="S40"))


def test_a_deferred_test_report_completed_later_equals_the_run_that_made_it(tmp_path, tiny_models, amp_small):
    """A sweep's trials leave out the test intervals and baselines; completing them from the predictions
    gives the files a run that computed them at once writes."""
    from plmforge.train.run import complete_test_report

    whole = _run(tmp_path, tiny_models, amp_small, "whole")
    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                             f"output.dir={tmp_path / 'later'}", f"method.cache_dir={tmp_path / 'store'}", *BASE])
    later = train(cfg, progress=False, test_report=False)
    blob = json.loads((later.run_dir / "test_metrics.json").read_text())
    assert "intervals" not in blob and "baselines" not in blob and blob["report"].startswith("deferred")
    assert not (later.run_dir / "plots" / "baselines.png").exists()
    complete_test_report(later.run_dir, later.test_predictions)
    a, b = (json.loads((d / "test_metrics.json").read_text()) for d in (whole.run_dir, later.run_dir))
    assert {k: a[k] for k in ("metrics", "intervals", "baselines", "verdict", "bootstrap")} == \
           {k: b[k] for k in ("metrics", "intervals", "baselines", "verdict", "bootstrap")}
    assert (later.run_dir / "test_baselines.csv").read_text() == (whole.run_dir / "test_baselines.csv").read_text()
    assert (later.run_dir / "plots" / "baselines.png").is_file()


def test_a_sweep_reports_intervals_and_baselines_for_its_best_trial_only(tmp_path, tiny_models, amp_small):
    from plmforge.sweep import parse_space, sweep

    base = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                              f"method.cache_dir={tmp_path / 'store'}", *BASE])
    result = sweep(base, parse_space({"training.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}), 3,
                   tmp_path / "s", prune=False)
    best = Path(result.best["run_dir"])
    for row in result.trials:
        blob = json.loads((tmp_path / "s" / row["run_dir"] / "test_metrics.json").read_text())
        assert blob["metrics"]  # every trial keeps its test metrics and validation history
        if tmp_path / "s" / row["run_dir"] == best:
            assert blob["intervals"] and blob["baselines"] and blob["verdict"] and "report" not in blob
        else:
            assert "intervals" not in blob and "baselines" not in blob and "deferred" in blob["report"]
        assert (tmp_path / "s" / row["run_dir"] / "plots" / "loss.png").is_file() == (tmp_path / "s" / row["run_dir"] == best)
    assert (best / "plots" / "baselines.png").is_file() and (best / "plots" / "roc.png").is_file()
    log = (tmp_path / "s" / "sweep.log").read_text()
    assert f"test intervals and baselines for the best trial, {result.best['trial']}" in log
