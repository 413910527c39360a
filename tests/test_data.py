"""Readers, validation messages, splits and the catalogue, on real data from ../shared/data."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared

from plmforge.config import load_config
from plmforge.data.catalogue import lookup
from plmforge.data.dataset import load_data
from plmforge.data.readers import load_hub_dataset, read_file
from plmforge.errors import ConfigError, DataError


def _load(*overrides: str):
    cfg = load_config(None, list(overrides))
    return load_data(cfg.data, cfg.training)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- readers -------------------------------------------------------------------------------------

@pytest.mark.shared_data
def test_fasta_labels_come_from_the_header():
    table = read_file(shared("dephospho", "train_sequences.fasta"))
    assert len(table.df) == 201
    assert table.column("label") == "LABEL"
    assert table.df["id"].iloc[0] == "sp|Q9UQC2|GAB2_HUMAN%598%614"
    assert set(table.df["LABEL"]) == {"0", "1"}
    assert all(len(s) == 33 for s in table.df["aa_seq"])


def test_every_format_reads_the_same_records(tmp_path: Path, amp_dir: Path):
    df = pd.read_csv(amp_dir / "test.csv").head(20)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    df.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.fasta").write_text("".join(f">{r.id} label={r.label}\n{r.aa_seq}\n" for r in df.itertuples()))
    seen = []
    for ext in ("csv", "tsv", "jsonl", "parquet", "fasta"):
        data = _load(f"data.train={tmp_path / ('a.' + ext)}", "data.problem_type=single_label_classification",
                     "data.num_labels=2")
        recs = data.splits["train"].subset(range(len(data.splits["train"])))
        both = sorted(zip(data.splits["train"].ids + data.splits["validation"].ids,
                          data.splits["train"].sequences + data.splits["validation"].sequences,
                          data.splits["train"].labels + data.splits["validation"].labels))
        seen.append(both)
        assert len(recs) + len(data.splits["validation"]) + len(data.splits["test"]) == 20  # test carved too
    assert all(s == seen[0] for s in seen)


@pytest.mark.shared_data
def test_parquet_paratope_reads_with_a_custom_sequence_column():
    table = read_file(shared("paratope", "sabdab_val.parquet"))
    assert {"sequence", "paratope_labels"} <= set(table.df.columns)


def test_local_directory_through_the_datasets_library(amp_small: Path):
    """The hub path (datasets.load_dataset) is real; here it is given a local directory."""
    tables = load_hub_dataset(str(amp_small))
    assert set(tables) == {"train", "validation", "test"}
    assert len(tables["train"].df) == 96


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem, pattern", [
    ("aa_seq,label\nMKTAYJK,1\n", "single_label_classification",
     r"row 1 \(line 2\), column 'aa_seq': unknown residue 'J' at position 6 of 7"),
    ("aa_seq,label\nMKT,1\n,0\n", "single_label_classification", r"row 2 \(line 3\), column 'aa_seq': empty sequence"),
    ("aa_seq,label\nMKT,1\nMKV,\n", "single_label_classification", r"row 2 \(line 3\), column 'label': missing label"),
    ("aa_seq,label\nMKT,1\nMKV,NaN\n", "single_label_classification", r"column 'label': missing label"),
    ("aa_seq,label\nMKT,1\nMKV,2\n", "single_label_classification",
     r"class index 2 is out of range for num_labels=2"),
    ("aa_seq,label\nMKT,1\nMKV,0.5\n", "single_label_classification", r"label '0.5' is not a class index"),
    ("aa_seq,label\nMKT,\"1,2\"\nMKV,\"1,,3\"\n", "multi_label_classification",
     r"row 2 \(line 3\), column 'label': malformed multi-label string '1,,3'"),
    ("aa_seq,label\nMKT,\"1,x\"\n", "multi_label_classification", r"label 'x' is not a class index"),
    ("aa_seq,label\nMKT,abc\n", "regression", r"label 'abc' is not a number"),
    ("aa_seq,label\nMKT,inf\n", "regression", r"label 'inf' is not finite"),
])
def test_bad_rows_are_named_precisely(tmp_path: Path, content: str, problem: str, pattern: str):
    f = _write(tmp_path / "train.csv", content)
    with pytest.raises(DataError, match=pattern) as err:
        _load(f"data.train={f}", f"data.problem_type={problem}", "data.num_labels=2")
    assert str(f) in err.value.render()
    assert "fix:" in err.value.render()


@pytest.mark.parametrize("name, content, pattern", [
    ("train.csv", "name,target\n1,1\n", r"(?s)no column holds protein sequences.*the columns are: name, target"),
    ("train.xlsx", "x", r"unsupported file type '.xlsx'"),
    ("train.fasta", "MKT\n>a\nMKT\n", r"sequence text before the first '>' header"),
])
def test_bad_files_are_explained(tmp_path: Path, name: str, content: str, pattern: str):
    f = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=pattern):
        _load(f"data.train={f}", "data.problem_type=single_label_classification")


def test_custom_column_names(tmp_path: Path):
    f = _write(tmp_path / "train.csv", "sequence,target\n" + "".join(f"MKT{'A' * i},{i % 2}\n" for i in range(30)))
    data = _load(f"data.train={f}", "data.problem_type=single_label_classification", "data.sequence_column=sequence",
                 "data.label_column=target", "data.num_labels=2")
    assert sum(len(data.splits[k]) for k in ("train", "validation", "test")) == 30
    found = _load(f"data.train={f}")  # no column options: the columns and the task are found in the file
    assert found.config.sequence_column == "sequence" and found.config.label_column == "target"
    assert found.task.problem_type == "single_label_classification" and found.test_carved
    assert [r.ids for r in found.splits.values()] == [r.ids for r in data.splits.values()]


def test_lowercase_and_rare_residues_are_accepted(tmp_path: Path):
    f = _write(tmp_path / "train.csv", "aa_seq,label\n" + "".join(f"mkuxbzo{'a' * i},{i}.5\n" for i in range(8)))
    data = _load(f"data.train={f}", "data.problem_type=regression")
    assert all(s.startswith("MKUXBZO") for s in data.splits["train"].sequences)


# ---- splits --------------------------------------------------------------------------------------

@pytest.mark.shared_data
def test_missing_validation_is_carved_with_the_seed_and_recorded(tmp_path: Path):
    args = (f"data.train={shared('dephospho', 'train_sequences.fasta')}",
            f"data.test={shared('dephospho', 'test_sequences.fasta')}",
            "data.problem_type=single_label_classification", "data.num_labels=2")
    a, b = _load(*args), _load(*args)
    assert a.validation_carved
    assert len(a.splits["validation"]) == 20 and len(a.splits["train"]) == 181  # round(0.1 * 201)
    assert a.splits["validation"].ids == b.splits["validation"].ids  # same seed, same split
    c = _load(*args, "training.seed=7")
    assert c.splits["validation"].ids != a.splits["validation"].ids
    mapping = a.split_mapping(42)
    assert not set(mapping["samples"]["train"]) & set(mapping["samples"]["validation"])
    assert mapping["validation_carved_from_train"] is True
    for data in (a, dataclasses.replace(a, splits={}),
                 dataclasses.replace(a, splits={**a.splits, "test": a.splits["test"].subset([])})):
        data.write_split_mapping(tmp_path / "split_mapping.json", 42, block=7)  # ids written 7 at a time
        assert (tmp_path / "split_mapping.json").read_text() == json.dumps(data.split_mapping(42), indent=1)


def test_identical_sequences_across_splits_are_reported(tmp_path: Path):
    d = tmp_path / "ds"
    d.mkdir()
    _write(d / "train.csv", "aa_seq,label\nMKTA,0\nMKTV,1\nMKTL,0\nMKTI,1\n")
    _write(d / "valid.csv", "aa_seq,label\nMKTA,0\nMKTW,1\n")
    data = _load(f"data.dataset={d}", "data.problem_type=single_label_classification")
    assert any("both train and validation" in n for n in data.notes)
    assert data.task.num_labels == 2  # inferred from train, and logged


def test_catalogue_fills_the_task():
    entry = lookup("DeepLocBinary")
    assert entry is not None and entry.location == "AI4Protein/DeepLocBinary"
    assert entry.problem_type == "single_label_classification" and entry.num_labels == 2
    thermo = lookup("AI4Protein/Thermostability")
    assert thermo is not None and thermo.problem_type == "regression" and thermo.monitor == "spearman_corr"
    ec = lookup("EC")
    assert ec is not None and ec.num_labels == 585 and "f1_max" in ec.metrics


def test_bundled_example_resolves_by_short_name():
    data = _load("data.dataset=amp")
    assert data.task.problem_type == "single_label_classification"
    assert data.task.monitor == "mcc" and data.task.direction == "max"
    assert not data.validation_carved and "test" in data.splits


def test_residue_catalogue_entries_fill_the_residue_task():
    entry = lookup("VenusX_Res_Act_MF50")
    assert entry is not None and entry.problem_type == "residue_single_label_classification"
    assert entry.monitor == "auprc" and "auprc" in entry.metrics and "f1_positive" in entry.unsupported_metrics


def test_metric_that_does_not_fit_the_problem_type(tmp_path: Path):
    f = _write(tmp_path / "train.csv", "aa_seq,label\n" + "".join(f"MKT{'A' * i},{i}.5\n" for i in range(8)))
    with pytest.raises(ConfigError, match="metric 'accuracy' does not apply to regression"):
        _load(f"data.train={f}", "data.problem_type=regression", "training.metrics=accuracy")


@pytest.mark.shared_data
def test_multi_label_from_real_ec_numbers(tmp_path: Path):
    """EC numbers truncated to their first level (7 classes) as a dense multi-label task."""
    df = pd.read_csv(shared("ec", "split10.csv"), sep="\t").head(60)
    df["label"] = [",".join(sorted({str(int(e.split(".")[0]) - 1) for e in ec.split(";")})) for ec in df["EC number"]]
    df[["Entry", "Sequence", "label"]].to_csv(tmp_path / "train.csv", index=False)
    data = _load(f"data.train={tmp_path / 'train.csv'}", "data.problem_type=multi_label_classification",
                 "data.num_labels=7", "data.sequence_column=Sequence", "data.id_column=Entry")
    assert data.task.monitor == "f1_max"
    assert all(isinstance(x, list) for x in data.splits["train"].labels)
