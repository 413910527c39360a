"""Splits kept on disk (data.storage=disk): the columns read back what was written, every corpus file
loads exactly as in memory (or fails the same way), training on disk equals training in memory
(weights, metrics, predictions, split mapping) for sequence and residue tasks, and memory does not
grow with the residues."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared
from safetensors.torch import load_file
from test_corpus import CASES, _write
from test_stream import _big_csv

from plmforge.config import CVConfig, load_config
from plmforge.data import stream
from plmforge.data.dataset import load_data
from plmforge.data.ondisk import Ragged, Strings, Workspace, data_root
from plmforge.errors import ConfigError, PlmforgeError
from plmforge.train.run import train


def test_ragged_columns_read_back_what_was_written():
    ws = Workspace()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 30, rng.integers(0, 9)) for _ in range(50)]
    grids = [rng.random((int(n), 3)).astype(np.float32) for n in rng.integers(1, 6, 20)]
    texts = ["MKTAYIAK", "", "ÄÖü-ß", "x" * 1000] * 5
    w = ws.writer("ints", np.int32)
    w.extend(arrays[:20])
    w.extend(arrays[20:])
    ints = w.finish()
    g = ws.writer("grids")
    g.extend(grids)
    grid = g.finish()
    s = ws.writer("text", text=True)
    s.extend(texts)
    strings = s.finish()
    assert isinstance(strings, Strings) and isinstance(ints, Ragged)
    assert len(ints) == 50 and all(np.array_equal(a, b) for a, b in zip(ints, arrays, strict=True))
    assert ints[3].dtype == np.int32 and ints.lengths.tolist() == [len(a) for a in arrays]
    assert all(np.array_equal(a, b) for a, b in zip(grid, grids, strict=True)) and grid[0].shape[1] == 3
    assert list(strings) == texts
    idx = [7, 2, 2, 40]
    view = ints.take(idx).take([3, 0])
    assert np.array_equal(view[0], arrays[40]) and np.array_equal(view[1], arrays[7])
    assert [x.tolist() for x in ints[45:]] == [a.tolist() for a in arrays[45:]]
    assert strings.take([3])[0] == "x" * 1000
    o = ws.writer("objects")
    sets = [np.array([[1, 2], None, []] + [[0]] * k, dtype=object) for k in range(4)]
    o.extend(sets)
    objects = o.finish()
    assert [x.tolist() for x in objects] == [x.tolist() for x in sets] and objects[1].dtype == object
    ints[0][:] = 99 if len(ints[0]) else 0  # items are copies: the file is not changed through them
    assert np.array_equal(ints[0], arrays[0])
    directory = ws.dir
    assert directory.is_dir()
    del ws, w, g, s, o, ints, grid, strings, view, objects
    gc.collect()
    assert not directory.exists()  # removed with the last column written into it


def _splits(path: Path, args: tuple[str, ...], storage: str, cv: CVConfig | None = None):
    try:
        c = load_config(None, [f"data.dataset={path}", *args, f"data.storage={storage}"])
        d = load_data(c.data, c.training, cv=cv)
    except PlmforgeError as exc:
        return exc
    plain = lambda x: x.tolist() if isinstance(x, np.ndarray) else x  # noqa: E731
    return ({k: (list(r.ids), list(r.sequences), None if r.labels is None else [plain(x) for x in r.labels],
                 list(r.rows), r.groups, r.on_disk) for k, r in d.splits.items()}, d.task, d.notes)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_corpus_file_loads_on_disk_as_in_memory(case, tmp_path, monkeypatch):
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 5, None))  # several chunks per file
    path = _write(tmp_path, case)
    memory, disk = _splits(path, case.args, "memory"), _splits(path, case.args, "disk")
    if isinstance(memory, Exception):
        assert isinstance(disk, Exception), disk
        m, d = str(memory), str(disk)
        rows_m, rows_d = re.findall(r"(?:row|record|line) \d+", m), re.findall(r"(?:row|record|line) \d+", d)
        assert rows_m == rows_d or not rows_m, (m, d)
        assert getattr(memory, "file", None) == getattr(disk, "file", None) or case.name in d, (m, d)
        return
    assert not isinstance(disk, Exception), disk
    splits_m, task_m, notes_m = memory
    splits_d, task_d, notes_d = disk
    assert task_m == task_d and notes_m == notes_d
    for name in splits_m:
        assert splits_m[name][:5] == splits_d[name][:5], name
        assert not splits_m[name][5] and splits_d[name][5]


def test_a_cross_validation_fold_and_groups_on_disk_equal_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 7, None))
    rng = np.random.default_rng(3)
    rows = [("".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(8, 30)))), i % 2, f"g{i // 3}")
            for i in range(90)]
    pd.DataFrame(rows[:70], columns=["aa_seq", "label", "cluster"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[70:], columns=["aa_seq", "label", "cluster"]).to_csv(tmp_path / "valid.csv", index=False)
    args = (f"data.validation={tmp_path / 'valid.csv'}", "data.problem_type=single_label_classification",
            "data.group_column=cluster")
    for cv in (None, CVConfig(folds=3, fold=2)):
        memory = _splits(tmp_path / "train.csv", args, "memory", cv)
        disk = _splits(tmp_path / "train.csv", args, "disk", cv)
        assert {k: v[:5] for k, v in memory[0].items()} == {k: v[:5] for k, v in disk[0].items()}
    # the fold's pool: both files, less the test split carved first
    assert len(disk[0]["train"][0]) + len(disk[0]["validation"][0]) + len(disk[0]["test"][0]) == 90


@pytest.mark.shared_data
def test_disk_storage_needs_local_split_files():
    with pytest.raises(ConfigError, match="data.storage=disk reads local split files"):
        _raise(_splits(shared("secondary_structure", "splits"), ("data.problem_type=residue_single_label_classification",
                                       "data.residue_classes=H,E,C", "data.mask_column=mask"), "disk"))
    with pytest.raises(ConfigError, match="data.storage must be one of"):
        load_config(None, ["data.train=x.csv", "data.storage=ram"])


def _raise(outcome):  # type: ignore[no-untyped-def]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _same_runs(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "best" / "model.safetensors")), load_file(str(b / "best" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("split_mapping.json", "test_predictions.csv", "metrics_epochs.jsonl"):
        if name == "metrics_epochs.jsonl":  # identical but for the wall-clock seconds
            strip = lambda p: [{k: v for k, v in json.loads(x).items() if "time" not in k and "second" not in k}  # noqa: E731
                               for x in p.read_text().splitlines()]
            assert strip(a / name) == strip(b / name)
        else:
            assert (a / name).read_text() == (b / name).read_text(), name
    ma, mb = (json.loads((p / "test_metrics.json").read_text()) for p in (a, b))
    assert ma["metrics"] == mb["metrics"] and ma.get("baselines") == mb.get("baselines")


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_training_on_disk_equals_training_in_memory(tmp_path, tiny_models, amp_small, method):
    """AMP peptides, validation carved from one training file, token-budget batches."""
    runs = {}
    for storage in ("memory", "disk"):
        cfg = load_config(None, [f"data.train={amp_small / 'train.csv'}", f"data.test={amp_small / 'test.csv'}",
                                 f"model.name={tiny_models['esm']}", "data.problem_type=single_label_classification",
                                 "training.epochs=2", "batching.mode=tokens", "batching.max_tokens=600",
                                 f"method.name={method}", "head.pooling=attention1d", f"data.storage={storage}",
                                 "output.baselines=true", f"output.dir={tmp_path / storage}"])
        runs[storage] = train(cfg, progress=False)
    _same_runs(runs["memory"].run_dir, runs["disk"].run_dir)
    assert "on disk" not in (runs["memory"].run_dir / "train.log").read_text()
    assert "splits on disk in" in (runs["disk"].run_dir / "train.log").read_text()
    del runs
    gc.collect()
    assert not any(data_root().iterdir())  # the run's files are gone with it


@pytest.mark.parametrize("problem", ["residue_single_label_classification", "residue_multi_label_classification",
                                     "residue_regression"])
def test_residue_training_on_disk_equals_training_in_memory(tmp_path, tiny_models, amp_dir, problem):
    """Per-residue targets on disk: one class per residue, or a set of classes per residue (2-D)."""
    d = tmp_path / "d"
    d.mkdir()
    groups = ("AILMFVW", "DEKRH", "FWY")
    for split, n in (("train", 48), ("validation", 16), ("test", 16)):
        df = pd.read_csv(amp_dir / f"{split}.csv").head(n)
        if problem == "residue_single_label_classification":
            df["label"] = ["".join("1" if c in groups[0] else "0" for c in s) for s in df["aa_seq"]]
        elif problem == "residue_regression":
            df["label"] = [json.dumps([float(ord(c) % 7) for c in s]) for s in df["aa_seq"]]
        else:
            df["label"] = [json.dumps([[j for j, g in enumerate(groups) if c in g] for c in s]) for s in df["aa_seq"]]
        df.to_csv(d / f"{split}.csv", index=False)
    runs = {}
    for storage in ("memory", "disk"):
        cfg = load_config(None, [f"data.dataset={d}", f"model.name={tiny_models['esm']}", f"data.problem_type={problem}",
                                 *(["data.num_labels=" + ("2" if "single" in problem else "3")]
                                   if "classification" in problem else []), "training.epochs=2",
                                 "method.name=full", "model.max_length=20", f"data.storage={storage}",
                                 "output.baselines=true", f"output.dir={tmp_path / storage}"])
        runs[storage] = train(cfg, progress=False)
    _same_runs(runs["memory"].run_dir, runs["disk"].run_dir)


@pytest.mark.shared_data
def test_paratope_residue_run_on_disk_equals_in_memory(tmp_path, tiny_models):
    d = tmp_path / "para"
    d.mkdir()
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        pd.read_parquet(shared("paratope", f"sabdab_{split}.parquet")).head(n).to_parquet(
            d / f"{'validation' if split == 'val' else split}.parquet")
    runs = {}
    for storage in ("memory", "disk"):
        cfg = load_config(None, [f"data.dataset={d}", f"model.name={tiny_models['bert']}",
                                 "data.problem_type=residue_single_label_classification", "data.sequence_column=sequence",
                                 "data.label_column=paratope_labels", "data.residue_classes=N,P", "data.id_column=pdb",
                                 "training.epochs=2", "method.name=lora", "training.tune_threshold=mcc",
                                 f"data.storage={storage}", f"output.dir={tmp_path / storage}"])
        runs[storage] = train(cfg, progress=False)
    _same_runs(runs["memory"].run_dir, runs["disk"].run_dir)


def test_memory_does_not_grow_with_the_residues_on_disk(tmp_path, tiny_models):
    """A 200,000-row file read, validated and tokenised in a fresh process: the peak on disk stays far
    below reading it whole, and the progress bars are shown."""
    path = tmp_path / "big.csv"
    _big_csv(path, 200_000)
    code = ("import sys; from plmforge.config import load_config; from plmforge.train.setup import assemble; "
            "from plmforge.train.memory import process_peak_mb; "
            "asm = assemble(load_config(None, sys.argv[1:])); "
            "print('ROWS', sum(len(asm.encoded[k]) for k in ('train', 'validation', 'test'))); "
            "print('PEAK', process_peak_mb())")
    peaks = {}
    for storage in ("memory", "disk"):
        res = subprocess.run([sys.executable, "-c", code, f"data.train={path}", f"model.name={tiny_models['esm']}",
                              "data.problem_type=single_label_classification", f"data.storage={storage}"],
                             capture_output=True, text=True, env={**os.environ, "TQDM_MININTERVAL": "0"})
        assert res.returncode == 0, res.stderr[-3000:]
        assert "ROWS 200000" in res.stdout
        peaks[storage] = float(re.search(r"PEAK ([\d.]+)", res.stdout).group(1))
        if storage == "disk":
            assert "reading train: big.csv" in res.stderr and "tokenising train" in res.stderr
    print(peaks)
    assert peaks["disk"] < peaks["memory"] - 100, peaks


def test_predicting_a_file_in_chunks_equals_predicting_it_whole(tmp_path, tiny_models, amp_dir, monkeypatch, capsys):
    """A residue run (two output tables) predicts a 60-row file in chunks of 7 rows: the same files as
    reading it whole; a bad row in a later chunk is named, and an earlier output is left untouched."""
    from plmforge.api import predict, predict_file
    from plmforge.cli import main
    from plmforge.errors import DataError

    df = pd.read_csv(amp_dir / "train.csv").head(60)
    df["label"] = ["".join("1" if c in "AILMFVW" else "0" for c in s) for s in df["aa_seq"]]
    df.to_csv(tmp_path / "train.csv", index=False)
    cfg = load_config(None, [f"data.train={tmp_path / 'train.csv'}", f"model.name={tiny_models['esm']}",
                             "data.problem_type=residue_single_label_classification", "training.epochs=1",
                             f"output.dir={tmp_path / 'run'}"])
    rd = train(cfg, progress=False).run_dir
    data = tmp_path / "input.csv"
    df[["aa_seq"]].to_csv(data, index=False)
    predict(rd, data).write(tmp_path / "whole.csv")
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 7, None))
    done = predict_file(rd, data, tmp_path / "chunks.csv")
    assert (done.sequences, done.chunks) == (60, 9)
    for suffix in ("", "_sequences"):
        _same_table(tmp_path / f"chunks{suffix}.csv", tmp_path / f"whole{suffix}.csv")
    assert main(["predict", str(rd), "--input", str(data), "--output", str(tmp_path / "cli.csv"), "--stream"]) == 0
    assert "read in 9 chunks" in capsys.readouterr().out
    _same_table(tmp_path / "cli.csv", tmp_path / "whole.csv")

    bad = df[["aa_seq"]].copy()
    bad.loc[40, "aa_seq"] = bad.loc[40, "aa_seq"][:3] + "J"
    bad.to_csv(data, index=False)
    before = (tmp_path / "chunks.csv").read_text()
    with pytest.raises(DataError, match=r"row 41 \(line 42\).*unknown residue 'J'"):
        predict_file(rd, data, tmp_path / "chunks.csv")
    assert (tmp_path / "chunks.csv").read_text() == before  # the earlier output is untouched
    assert not list(tmp_path.glob(".*.partial"))


def _same_table(a: Path, b: Path) -> None:
    """The same rows and columns; probabilities equal up to float32 rounding (batches are padded
    differently when a chunk is predicted alone)."""
    x, y = pd.read_csv(a), pd.read_csv(b)
    assert list(x.columns) == list(y.columns) and len(x) == len(y)
    floats = [c for c in x.columns if c.startswith("prob_")]
    np.testing.assert_allclose(x[floats].to_numpy(), y[floats].to_numpy(), atol=1e-5)
    rest = [c for c in x.columns if c not in floats]
    assert x[rest].equals(y[rest])


def test_a_full_disk_while_writing_the_splits_is_a_clear_error(tmp_path, tiny_models, amp_small, monkeypatch, capsys):
    """The disk fills up while the splits are written: the message says where and what to do, no traceback,
    and nothing of the run is written."""
    import errno
    import io

    from plmforge.cli import main
    from plmforge.data import ondisk

    class Full(io.BytesIO):
        def write(self, data):  # type: ignore[no-untyped-def]
            if self.tell() + len(data) > 200:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(ondisk, "open", lambda path, mode: Full(), raising=False)
    code = main(["train", "--train-file", str(amp_small / "train.csv"), "--model", str(tiny_models["esm"]),
                 "--problem-type", "single_label_classification", "--output", str(tmp_path / "run"),
                 "data.storage=disk"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert re.search(r"could not write the on-disk split .*No space left on device.*PLMFORGE_DATA_DIR", err), err
    assert not (tmp_path / "run").exists()


def test_auto_storage_keeps_large_split_files_on_disk(amp_small, monkeypatch, caplog):
    from plmforge.data import dataset

    args = (f"data.validation={amp_small / 'validation.csv'}", "data.problem_type=single_label_classification")
    assert not _splits(amp_small / "train.csv", args, "auto")[0]["train"][5]  # a small file: in memory
    size = sum(os.path.getsize(amp_small / f"{s}.csv") for s in ("train", "validation"))
    monkeypatch.setattr(dataset, "DISK_ABOVE", size)
    with caplog.at_level("INFO", logger="plmforge"):
        splits = _splits(amp_small / "train.csv", args, "auto")[0]
    assert splits["train"][5] and splits["validation"][5]
    assert any("read in chunks and kept on disk" in r.message for r in caplog.records)


def test_label_statistics_over_parts_equal_numpy_over_the_whole():
    from plmforge.tasks import LabelScaler

    rng = np.random.default_rng(5)
    parts = [rng.normal(3.0, 2.0, int(n)) for n in rng.integers(1, 500, 7)]
    whole = np.concatenate(parts)
    standard = LabelScaler.fit_parts("standard", lambda: iter(parts))
    assert standard.shift == pytest.approx(np.mean(whole), rel=1e-12)
    assert standard.scale == pytest.approx(np.std(whole), rel=1e-12)
    lo_hi = LabelScaler.fit_parts("min_max", lambda: iter(parts))
    assert (lo_hi.shift, lo_hi.shift + lo_hi.scale) == (whole.min(), whole.max())
    assert LabelScaler.fit("standard", whole) == LabelScaler("standard", float(np.mean(whole)), float(np.std(whole)))


def test_directories_of_killed_processes_are_removed():
    root = data_root()
    orphan = root / "split-999999999-abc"  # no such process
    orphan.mkdir(parents=True)
    ws = Workspace()
    assert not orphan.exists() and ws.dir.exists()
    assert Workspace().dir.exists() and ws.dir.exists()  # this process's own directories stay


def test_jsonl_keys_missing_from_a_later_chunk(tmp_path, monkeypatch):
    """A JSONL file whose rows 8-14 have no 'id' key: the chunks without it read as the whole file does."""
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 5, None))
    rng = np.random.default_rng(2)
    lines = []
    for i in range(20):
        row = {"aa_seq": "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 12)), "label": i % 2}
        if not 7 <= i < 14:
            row["id"] = f"p{i}"
        lines.append(json.dumps(row))
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    args = ("data.problem_type=single_label_classification",)
    memory, disk = _splits(tmp_path / "rows.jsonl", args, "memory"), _splits(tmp_path / "rows.jsonl", args, "disk")
    assert {k: v[:5] for k, v in memory[0].items()} == {k: v[:5] for k, v in disk[0].items()}


def test_an_ensemble_reads_a_large_input_whole_unless_told(tmp_path, tiny_models, amp_small, monkeypatch, capsys):
    from plmforge.cli import main

    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                             "data.problem_type=single_label_classification", "training.epochs=1",
                             f"output.dir={tmp_path / 'run'}"])
    rd = str(train(cfg, progress=False).run_dir)
    monkeypatch.setattr(stream, "CHUNKED_ABOVE", 100)  # every input is "large"
    out = tmp_path / "ens.csv"
    assert main(["predict", rd, rd, "--input", str(amp_small / "test.csv"), "--output", str(out)]) == 0
    assert "ensemble of 2 runs" in capsys.readouterr().out and len(pd.read_csv(out)) == 32
    assert main(["predict", rd, "--input", str(amp_small / "test.csv"), "--output", str(out), "--overwrite"]) == 0
    assert "read in 1 chunk)" in capsys.readouterr().out
    assert main(["predict", rd, rd, "--input", str(amp_small / "test.csv"), "--output", str(out), "--stream",
                 "--overwrite"]) != 0
    assert "an ensemble reads its input whole" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["single_label_classification", "residue_single_label_classification"])
def test_evaluating_a_file_on_disk_equals_evaluating_it_whole(tmp_path, tiny_models, amp_dir, problem, monkeypatch,
                                                              capsys):
    """`plmforge evaluate` reads a labelled file in chunks of 7 rows onto disk and writes its predictions in
    blocks of 9 proteins: the same metrics (intervals, threshold) and the same files as a whole read; a bad
    label in a later chunk is named by its row, and an earlier evaluation is left as it was."""
    from plmforge.api import PredictionResult, evaluate
    from plmforge.cli import main
    from plmforge.errors import DataError

    df = pd.read_csv(amp_dir / "train.csv").head(60)
    residue = problem.startswith("residue")
    if residue:
        df["label"] = ["".join("1" if c in "AILMFVW" else "0" for c in s) for s in df["aa_seq"]]
    df.to_csv(tmp_path / "train.csv", index=False)
    df.head(20).to_csv(tmp_path / "test.csv", index=False)
    cfg = load_config(None, [f"data.train={tmp_path / 'train.csv'}", f"data.test={tmp_path / 'test.csv'}",
                             f"model.name={tiny_models['esm']}", "method.name=full",
                             f"data.problem_type={problem}", "training.epochs=1", "training.tune_threshold=mcc",
                             "output.bootstrap=200", f"output.dir={tmp_path / 'run'}"])
    rd = train(cfg, progress=False).run_dir
    assert (rd / "threshold.json").is_file()
    data = tmp_path / "labelled.csv"
    df.to_csv(data, index=False)
    whole = evaluate(rd, data, stream=False)
    whole.write(tmp_path / "whole")
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 7, None))
    monkeypatch.setattr(PredictionResult.iter_frames, "__defaults__", (9,))
    chunked = evaluate(rd, data, stream=True)
    assert chunked.prediction.records.on_disk and not whole.prediction.records.on_disk
    chunked.write(tmp_path / "chunked")
    assert chunked.blob == whole.blob and "intervals" in whole.blob and "threshold" in whole.blob
    tables = ["predictions.csv", "eval_metrics.csv"] + (["predictions_sequences.csv"] if residue else [])
    for name in tables:
        assert (tmp_path / "chunked" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert sorted(p.name for p in (tmp_path / "chunked" / "plots").iterdir()) == \
        sorted(p.name for p in (tmp_path / "whole" / "plots").iterdir())
    assert main(["evaluate", str(rd), "--data", str(data), "--output", str(tmp_path / "cli"), "--stream"]) == 0
    assert "over the 60 proteins" in capsys.readouterr().out
    assert (tmp_path / "cli" / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()

    bad = df.copy()
    bad["label"] = bad["label"].astype(str)
    bad.loc[40, "label"] = "7" if not residue else bad.loc[40, "label"][:-1] + "7"
    bad.to_csv(data, index=False)
    before = (tmp_path / "cli" / "eval_metrics.json").read_text()
    with pytest.raises(DataError, match=r"row 41"):
        evaluate(rd, data, stream=True)
    assert main(["evaluate", str(rd), "--data", str(data), "--output", str(tmp_path / "cli"), "--stream",
                 "--overwrite"]) != 0
    assert "row 41" in capsys.readouterr().err
    assert (tmp_path / "cli" / "eval_metrics.json").read_text() == before


def _long_csv(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    with open(path, "w") as fh:
        fh.write("id,aa_seq,label\n")
        for i in range(n):
            fh.write(f"p{i},{letters[rng.integers(0, 20, rng.integers(200, 300))].tobytes().decode()},{i % 3}\n")


def test_evaluating_a_large_file_on_disk_keeps_memory_down(tmp_path, tiny_models):
    """100,000 labelled rows of 200-300 residues (26 MB) evaluated in a fresh process (read, predicted with
    sequences cut to 16 residues, 100 bootstrap resamples, tables and plots written): on disk the peak
    stays far below reading the file whole (measured: 600 MB against 785 MB, of which about 465 MB are the libraries and
    the model)."""
    _big_csv(tmp_path / "small.csv", 300)
    cfg = load_config(None, [f"data.train={tmp_path / 'small.csv'}", f"model.name={tiny_models['esm']}",
                             "data.problem_type=single_label_classification", "training.epochs=1",
                             "model.max_length=16", "output.bootstrap=100", f"output.dir={tmp_path / 'run'}"])
    rd = train(cfg, progress=False).run_dir
    path = tmp_path / "big.csv"
    _long_csv(path, 100_000)
    code = ("import sys; from plmforge.api import evaluate; from plmforge.train.memory import process_peak_mb; "
            "r = evaluate(sys.argv[1], sys.argv[2], stream=sys.argv[3] == 'disk', max_tokens=8192); "
            "r.write(sys.argv[4]); print('ROWS', r.blob['n_samples'], r.metrics['accuracy']); "
            "print('PEAK', process_peak_mb())")
    peaks, lines = {}, {}
    for storage in ("memory", "disk"):
        res = subprocess.run([sys.executable, "-c", code, str(rd), str(path), storage, str(tmp_path / storage)],
                             capture_output=True, text=True, env={**os.environ, "TQDM_MININTERVAL": "0"})
        assert res.returncode == 0, res.stderr[-3000:]
        lines[storage] = re.search(r"ROWS .*", res.stdout).group(0)
        peaks[storage] = float(re.search(r"PEAK ([\d.]+)", res.stdout).group(1))
        if storage == "disk":
            assert "reading evaluation: big.csv" in res.stderr and "tokenising input" in res.stderr
    print(peaks)
    assert lines["disk"] == lines["memory"] and lines["disk"].startswith("ROWS 100000")
    assert len(pd.read_csv(tmp_path / "disk" / "predictions.csv")) == 100_000
    assert peaks["disk"] < peaks["memory"] - 100, peaks
