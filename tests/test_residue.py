"""Per-residue tasks: label formats and their errors, masks, exact label-token alignment per family,
metrics over unmasked residues, outputs, and the centre-residue head for site windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import shared
from sklearn import metrics as skm

from plmforge.config import load_config
from plmforge.data.dataset import load_data
from plmforge.errors import DataError
from plmforge.models.backbone import load_backbone
from plmforge.models.encoding import encode_sequences
from plmforge.tasks import IGNORE, PROBLEM_TYPES, LabelScaler
from plmforge.train.run import train

RES = "data.problem_type=residue_single_label_classification"


def _load(*overrides):
    cfg = load_config(None, list(overrides))
    return load_data(cfg.data, cfg.training)


def _csv(tmp_path: Path, text: str) -> Path:
    (tmp_path / "train.csv").write_text(text)
    return tmp_path / "train.csv"


def test_symbol_strings_lists_and_positions(tmp_path):
    f = _csv(tmp_path, 'aa_seq,label\nMKTAY,NNPPN\nGLFDI,"[0,1,0,0,1]"\nAAAAA,"[""N"",""P"",""N"",""N"",""N""]"\n'
                       "MKTAY,NNNNP\n")
    data = _load(f"data.train={f}", RES, "data.residue_classes=N,P", "data.validation_fraction=0.25")
    labels = {tuple(x) for s in data.splits.values() for x in s.labels}
    assert labels == {(0, 0, 1, 1, 0), (0, 1, 0, 0, 1), (0, 1, 0, 0, 0), (0, 0, 0, 0, 1)}
    g = _csv(tmp_path, 'aa_seq,label\nMKTAYIAK,"2,5"\nMKTAYIAK,""\nGLFDIVKK,8\nGLFDIVKK,1\n')
    data = _load(f"data.train={g}", RES, "data.label_format=positions", "data.num_labels=2",
                 "data.validation_fraction=0.25")
    got = sorted(tuple(x) for s in data.splits.values() for x in s.labels)
    assert (0, 1, 0, 0, 1, 0, 0, 0) in got and (0, 0, 0, 0, 0, 0, 0, 1) in got


def test_class_symbols_and_a_different_class_count_are_refused(tmp_path):
    """One symbol per class: a num_labels that does not match data.residue_classes is an error naming both
    (outputs would otherwise mix symbols with numbers)."""
    from plmforge.errors import ConfigError

    f = _csv(tmp_path, "aa_seq,label\nMKTAY,HHEEL\nGLFDI,LLEEH\nAAAAA,HHHHH\nMKTAY,EEEEL\n")
    with pytest.raises(ConfigError, match=r"data.num_labels is 12 but data.residue_classes names 3 classes \(H,E,L\)"):
        _load(f"data.train={f}", RES, "data.residue_classes=H,E,L", "data.num_labels=12",
              "data.validation_fraction=0.25")
    data = _load(f"data.train={f}", RES, "data.residue_classes=H,E,L", "data.num_labels=3",
                 "data.validation_fraction=0.25")
    assert data.task.num_labels == 3


@pytest.mark.parametrize("label, pattern", [
    ("NNP", r"3 residue labels for a sequence of 5 residues"),
    ("NNXPN", r"unknown residue label 'X' at position 3 \(data.residue_classes is N,P\)"),
    ('"[0,1,0"', r"not valid JSON"),
])
def test_residue_label_errors_name_row_and_lengths(tmp_path, label, pattern):
    f = _csv(tmp_path, f"aa_seq,label\nMKTAY,NNPPN\nMKTAY,{label}\n")
    with pytest.raises(DataError, match=pattern) as err:
        _load(f"data.train={f}", RES, "data.residue_classes=N,P")
    assert "row 2 (line 3)" in err.value.render()


def test_positions_outside_the_sequence(tmp_path):
    f = _csv(tmp_path, 'aa_seq,label\nMKTAY,"2,9"\n')
    with pytest.raises(DataError, match=r"position 9 is outside the sequence \(1..5\)"):
        _load(f"data.train={f}", RES, "data.label_format=positions")


def test_mask_marks_residues_to_ignore(tmp_path):
    f = _csv(tmp_path, "aa_seq,label,mask\nMKTAY,NNPPN,11011\nMKTAY,PNPPN,11111\nMKTAV,PNPPN,1111\n")
    with pytest.raises(DataError, match=r"row 3 \(line 4\), column 'mask': mask has 4 entries for a sequence of 5"):
        _load(f"data.train={f}", RES, "data.residue_classes=N,P", "data.mask_column=mask")
    f = _csv(tmp_path, "aa_seq,label,mask\nMKTAY,NNPPN,11011\nMKTAY,PNPPN,11111\nMKTAV,PNPPN,11111\n"
                       "MKTAW,PNPPN,11111\n")
    data = _load(f"data.train={f}", RES, "data.residue_classes=N,P", "data.mask_column=mask")
    all_labels = [x.tolist() for s in data.splits.values() for x in s.labels]
    assert [0, 0, IGNORE, 1, 0] in all_labels


@pytest.mark.parametrize("family", ["esm", "bert", "t5"])
def test_labels_align_with_residue_tokens_exactly(tiny_models, family):
    """Hand-checked positions: the residue at position i (1-based) carries label i; specials none."""
    bb = load_backbone(load_config(None, ["data.dataset=x", f"model.name={tiny_models[family]}"]).model)
    seq = "MKTAYIAKQR"
    enc = encode_sequences(bb, [seq])
    problem = PROBLEM_TYPES["residue_single_label_classification"]
    (labels,), dropped = problem.targets([np.arange(10, dtype=np.int64)], enc.special, 10, LabelScaler("none"))
    assert dropped == 0
    tokens = bb.tokenizer.convert_ids_to_tokens(enc.input_ids[0].tolist())
    pairs = [(t.lstrip("\u2581"), int(y)) for t, y in zip(tokens, labels)]
    expected = [(seq[i], i) for i in range(10)]
    if family == "t5":
        assert pairs == [*expected, ("</s>", IGNORE)]  # no CLS: residue 1 is token 0
    else:
        assert pairs[0][1] == IGNORE and pairs[-1][1] == IGNORE and pairs[1:-1] == expected


def test_truncation_drops_labels_beyond_max_length_and_says_how_many(tiny_models, tmp_path, caplog):
    d = tmp_path / "d"
    d.mkdir()
    rows = "".join(f"{'MKTAYIAKQR' * 3},{'NP' * 15}\n" for _ in range(8))
    (d / "train.csv").write_text("aa_seq,label\n" + rows)
    cfg = load_config(None, [f"data.dataset={d}", f"model.name={tiny_models['esm']}", RES, "data.residue_classes=N,P",
                             "model.max_length=20", "training.epochs=1", f"output.dir={tmp_path / 'run'}"])
    train(cfg)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "truncation dropped the labels of 70 residues" in log  # 7 training rows x 10 residues


def test_residue_metrics_are_computed_over_unmasked_residues():
    labels = [np.array([0, 1, IGNORE, 1]), np.array([1, 0, 0])]
    p1 = [np.array([0.2, 0.7, 0.9, 0.4]), np.array([0.8, 0.1, 0.6])]
    scores = [np.stack([1 - p, p], 1) for p in p1]
    got = PROBLEM_TYPES["residue_single_label_classification"].metrics(
        ("accuracy", "mcc", "auroc", "precision", "recall"), labels, scores)
    y = np.array([0, 1, 1, 1, 0, 0])
    p = np.array([0.2, 0.7, 0.4, 0.8, 0.1, 0.6])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p >= 0.5))
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["accuracy_per_sequence"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_centre_head_reads_the_window_centre():
    from plmforge.heads import build_head

    head = build_head("centre", 4, 4, 2, 0.0).eval()
    hidden = torch.zeros(2, 9, 4)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 1:8] = True  # 7 residues after a CLS: centre is token 4
    mask[1, 0:5] = True  # 5 residues, no CLS: centre is token 2
    hidden[0, 4] = 1.0
    hidden[1, 2] = 1.0
    out = head(hidden, mask)
    hidden[0, 3] = hidden[1, 3] = 7.0  # anything off-centre is ignored
    assert torch.equal(head(hidden, mask), out)
    hidden[0, 4] = 2.0
    assert not torch.equal(head(hidden, mask)[0], out[0])


@pytest.mark.shared_data
def test_residue_run_outputs_and_predict(tmp_path, tiny_models):
    d = tmp_path / "para"
    d.mkdir()
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        name = "validation" if split == "val" else split
        pd.read_parquet(shared("paratope", f"sabdab_{split}.parquet")).head(n).to_parquet(d / f"{name}.parquet")
    cfg = load_config(None, [f"data.dataset={d}", f"model.name={tiny_models['bert']}", RES,
                             "data.sequence_column=sequence", "data.label_column=paratope_labels",
                             "data.residue_classes=N,P", "data.id_column=pdb", "training.epochs=2",
                             "method.name=lora", f"output.dir={tmp_path / 'run'}"])
    result = train(cfg)
    rd = result.run_dir
    for name in ("plots/roc.png", "plots/precision_recall.png", "plots/confusion_matrix.png",
                 "test_predictions.csv", "test_predictions_sequences.csv"):
        assert (rd / name).exists(), name
    long = pd.read_csv(rd / "test_predictions.csv")
    test = pd.read_parquet(d / "test.parquet")
    assert len(long) == sum(len(s) for s in test["sequence"])  # one row per residue
    assert set(long.columns) >= {"id", "position", "residue", "label", "prediction", "prob_0", "prob_1"}
    compact = pd.read_csv(rd / "test_predictions_sequences.csv")
    assert all(len(p) == len(s) and set(p) <= {"N", "P"} for p, s in zip(compact["predicted"], compact["sequence"]))
    blob = json.loads((rd / "test_metrics.json").read_text())
    n_res = sum(len(s) for s in test["sequence"])
    assert sum(map(sum, blob["confusion_matrix"])) == n_res
    from plmforge.cli import main

    out = tmp_path / "pred.csv"
    assert main(["predict", str(rd), "--input", str(d / "test.parquet"), "--output", str(out)]) == 0
    again = pd.read_csv(out)
    np.testing.assert_allclose(again["prob_1"].to_numpy(), long["prob_1"].to_numpy(), atol=1e-5)
    assert yaml.safe_load((rd / "config.yaml").read_text())["head"]["pooling"] == "residue"  # the head really used
    # a run written by an earlier plmforge said `pooling: mean` (and listed every method option): still readable
    old = yaml.safe_load((rd / "config.yaml").read_text())
    old["head"]["pooling"], old["method"]["cache_max_mb"] = "mean", 4096
    (rd / "config.yaml").write_text(yaml.safe_dump(old))
    assert main(["predict", str(rd), "--input", str(d / "test.parquet"), "--output", str(tmp_path / "old.csv")]) == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "old.csv")["prob_1"].to_numpy(), long["prob_1"].to_numpy(),
                               atol=1e-5)


@pytest.mark.shared_data
def test_site_windows_with_positives_and_negatives_in_separate_files(tmp_path, tiny_models):
    """SUMOylation 21-mers: positive and negative windows come as separate FASTA files."""
    sumo = shared("sumo_21mer")
    spec = lambda kind: f"{sumo / f'Sumoylation_pos_{kind}.fasta'}::1,{sumo / f'Sumoylation_neg_{kind}.fasta'}::0"
    data = _load(f"data.train={spec('Train')}", f"data.test={spec('Hard_Test')}",
                 "data.problem_type=single_label_classification", "data.num_labels=2")
    test = data.splits["test"]
    assert len(test) == 320 + 130 and sorted(set(test.labels)) == [0, 1]
    assert sum(test.labels) == 320
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 4666 + 14437
    # each row still knows its own file
    assert any("Sumoylation_neg_Hard_Test.fasta, record 1 (line 1)" in r for r in test.rows)
    cfg = load_config(None, [f"data.train={spec('Hard_Test')}", f"model.name={tiny_models['esm']}",
                             "data.problem_type=single_label_classification", "head.pooling=centre",
                             "training.epochs=1", f"output.dir={tmp_path / 'run'}"])
    assert train(cfg).fit.epochs_run == 1


def test_a_labelled_file_cannot_also_get_a_label(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("aa_seq,label\nMKT,1\n")
    with pytest.raises(DataError, match=r"has its own label column 'label'"):
        _load(f"data.train={f}::1,{f}::0", "data.problem_type=single_label_classification")


@pytest.mark.shared_data
def test_flip_fasta_triple_is_read_with_its_splits_and_mask():
    data = _load(f"data.dataset={shared('secondary_structure', 'splits')}", RES, "data.residue_classes=H,E,C",
                 "data.mask_column=mask")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 9712, "validation": 1080, "test": 364}
    assert not data.validation_carved
    first = data.splits["train"]
    assert first.ids[0] == "1es5-A" and len(first.labels[0]) == len(first.sequences[0])
    # 1es5-A's mask starts with 00: its first two residues are ignored
    assert first.labels[0][:2].tolist() == [IGNORE, IGNORE] and first.labels[0][2] != IGNORE


@pytest.mark.parametrize("problem", ["residue_regression", "residue_multi_label_classification"])
def test_residue_regression_and_multi_label_train_and_predict(tmp_path, tiny_models, amp_dir, problem):
    """Targets derived from real AMP peptides: per-residue Kyte-Doolittle hydropathy (regression, in its
    own units), or per-residue property sets {0: hydrophobic, 1: charged, 2: aromatic} (multi-label)."""
    kd = dict(zip("ARNDCQEGHILKMFPSTWYV", [1.8, -4.5, -3.5, -3.5, 2.5, -3.5, -3.5, -0.4, -3.2, 4.5, 3.8, -3.9,
                                           1.9, 2.8, -1.6, -0.8, -0.7, -0.9, -1.3, 4.2]))
    d = tmp_path / "d"
    d.mkdir()
    for split, n in (("train", 48), ("validation", 16), ("test", 16)):
        df = pd.read_csv(amp_dir / f"{split}.csv").head(n)
        if problem == "residue_regression":
            df["label"] = [json.dumps([kd.get(c, 0.0) * 10 for c in s]) for s in df["aa_seq"]]
        else:
            df["label"] = [json.dumps([[j for j, group in enumerate(("AILMFVW", "DEKRH", "FWY")) if c in group]
                                       for c in s]) for s in df["aa_seq"]]
        df.to_csv(d / f"{split}.csv", index=False)
    extra = ["data.num_labels=3"] if problem.endswith("classification") else []
    cfg = load_config(None, [f"data.dataset={d}", f"model.name={tiny_models['esm']}", f"data.problem_type={problem}",
                             "training.epochs=2", "method.name=full", f"output.dir={tmp_path / 'run'}", *extra])
    result = train(cfg)
    long = pd.read_csv(result.run_dir / "test_predictions.csv")
    test = pd.read_csv(d / "test.csv")
    assert len(long) == sum(len(s) for s in test["aa_seq"])
    if problem == "residue_regression":
        assert long["prediction"].abs().max() > 2  # in the user's units (x10 hydropathy), not standardised
        assert "spearman_corr" in result.test_metrics["metrics"]
    else:
        assert "f1" in result.test_metrics["metrics"] and "auroc" in result.test_metrics["metrics"]


def test_label_options_that_do_not_fit_the_problem_type_are_errors(tmp_path):
    from plmforge.errors import ConfigError

    f = _csv(tmp_path, 'aa_seq,label,mask\nMKTAY,"2,5",11111\nMKTAY,"1",11111\nMKTAV,"3",11111\nMKTAW,"4",11111\n')
    with pytest.raises(ConfigError, match="label_format=positions .* applies to residue_single_label_classification, "
                                          "not residue_regression"):
        _load(f"data.train={f}", "data.problem_type=residue_regression", "data.label_format=positions")
    with pytest.raises(ConfigError, match="data.mask_column masks residues, but single_label_classification has one "
                                          "label per sequence"):
        _load(f"data.train={f}", "data.problem_type=single_label_classification", "data.mask_column=mask")


def test_a_file_with_a_header_and_no_rows_is_named(tmp_path):
    f = _csv(tmp_path, "aa_seq,label\n")
    with pytest.raises(DataError, match=r"train.csv: no records \(the file has a header but no rows\)"):
        _load(f"data.train={f}", RES)


def test_residue_summary_when_every_residue_is_masked(tmp_path):
    from plmforge.tasks import PROBLEM_TYPES

    problem = PROBLEM_TYPES["residue_regression"]
    summary = problem.summary([np.array([np.nan, np.nan]), np.array([np.nan])], 1)
    assert summary.units == 0 and summary.masked == 3 and "no labelled residues" in summary.text


@pytest.mark.parametrize("problem", ["residue_single_label_classification", "residue_regression"])
def test_prediction_tables_read_the_same_whatever_the_block_of_proteins(tmp_path, problem):
    """Tables are written a block of proteins at a time: a protein's labels print the same whether or not
    another protein of its block has masked residues (a float column would print 1 as 1.0)."""
    from plmforge.outputs import prediction_frames, write_frames

    prob = PROBLEM_TYPES[problem]
    masked = IGNORE if problem.endswith("classification") else np.nan
    labels = [np.array([1, masked, 0]), np.array([1, 0, 1]), np.array([0, 0, masked])]
    if problem.endswith("classification"):
        labels = [lab.astype(np.int64) for lab in labels]
        scores = [np.tile([0.3, 0.7], (3, 1)) for _ in labels]
    else:
        labels = [lab.astype(np.float64) for lab in labels]
        scores = [np.array([0.5, 1.5, 2.5]) for _ in labels]
    ids, seqs = ["a", "b", "c"], ["MKT", "GLF", "AAA"]
    texts = {}
    for rows in (1, 2, 3):
        write_frames(tmp_path / f"p{rows}.csv", prediction_frames(prob, ids, seqs, scores, labels, rows=rows))
        texts[rows] = [(tmp_path / f"p{rows}{s}.csv").read_text() for s in ("", "_sequences")]
    assert texts[1] == texts[2] == texts[3]
    table = pd.read_csv(tmp_path / "p3.csv")
    assert table["label"].isna().sum() == 2 and len(table) == 9
    shown = {line.split(",")[3] for line in texts[3][0].splitlines()[1:]}
    assert shown == ({"1", "0", ""} if problem.endswith("classification") else {"1.0", "0.0", ""})
