"""Which column holds what, found in the file (plmforge.data.columns): one test per rule and per doubt,
on files made here and on real data; and the CLI using it when no column option is given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared

from plmforge.config import load_config
from plmforge.data.columns import infer_columns, nonprotein_warning, peek_table, resolve_columns
from plmforge.errors import DataError

PEPTIDES = ["GLWSKIKEVGKEAAKAAAKAAGKAALGAVSEAV", "YVPLPNVPQPGRRPFPTFPGQGPFNPKIKWPQGY", "MKTAYIAKQRQISFVKSHFSRQ",
            "GIGKFLHSAKKFGKAFVGEIMNS", "FLPIIAKLLGKLL", "KWKLFKKIGAVLKVLTTG", "ILPWKWPWWPWRR", "MDQNNSLPPYAQGLASPQ"]


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _frame(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def infer(path: Path, **kw):
    return infer_columns(peek_table(path), **kw)


def test_sequence_label_and_id_found_by_content_under_any_names(tmp_path):
    f = _csv(tmp_path / "lab.csv", _frame(gene=[f"g{i}" for i in range(8)], solubility=[0.1 * i for i in range(8)],
                                          protein_text=PEPTIDES))
    inf = infer(f)
    assert inf.choices["sequence"].column == "protein_text" and "residue sequences" in inf.choices["sequence"].reason
    assert inf.choices["label"].column == "solubility" and inf.problem_type == "regression"
    assert inf.choices["id"].column == "gene" and inf.num_labels is None and not inf.ambiguous
    assert inf.choices["group"].column is None and inf.choices["mask"].column is None  # never guessed
    assert "data.sequence_column=protein_text" in inf.overrides() and "data.problem_type=regression" in inf.overrides()


def test_whole_numbers_are_classes_with_their_count(tmp_path):
    inf = infer(_csv(tmp_path / "c.csv", _frame(seq=PEPTIDES, kind=[0, 1, 2, 0, 1, 2, 0, 1])))
    assert inf.problem_type == "single_label_classification" and inf.num_labels == 3
    assert "3 classes" in inf.problem_reason
    many = infer(_csv(tmp_path / "v.csv", _frame(seq=PEPTIDES * 10, count=[(i * 7) % 60 for i in range(80)])))
    assert many.problem_type == "regression"  # more distinct whole numbers than classes would have
    temps = infer(_csv(tmp_path / "t.csv", _frame(seq=PEPTIDES * 5, tm=[40 + (i * 11) % 45 for i in range(40)])))
    assert temps.problem_type == "regression"  # 40..84: values, not classes numbered from 0


def test_ids_and_row_numbers_are_never_labels(tmp_path):
    words = ["soluble", "insoluble"] * 4
    inf = infer(_csv(tmp_path / "w.csv", _frame(id=list(range(8)), sequence=PEPTIDES, solubility=words)))
    assert inf.choices["label"].column is None and "holds words as classes" in inf.ambiguous["label"]
    only = infer(_csv(tmp_path / "o.csv", _frame(id=list(range(8)), sequence=PEPTIDES)))
    assert only.choices["label"].column is None and "label" in only.ambiguous
    index = infer(_csv(tmp_path / "i.csv", _frame(n=list(range(1, 9)), sequence=PEPTIDES, y=[0.5] * 8)))
    assert index.choices["label"].column == "y"
    floats = infer(_csv(tmp_path / "f.csv", _frame(sequence=PEPTIDES, expr=[0.1 * i + 0.05 for i in range(8)],
                                                   tag=[f"p{i}" for i in range(8)])))
    assert floats.choices["id"].column == "tag"  # unique numbers are values, not names


def test_per_residue_digits_and_parquet_lists(tmp_path):
    seqs = [p * 3 for p in PEPTIDES] * 8
    digits = ["".join("1" if i % 4 == 0 else "0" for i in range(len(s))) for s in seqs]
    inf = infer(_csv(tmp_path / "d.csv", _frame(sequence=seqs, sites=digits)))
    assert inf.problem_type == "residue_single_label_classification"  # not a huge whole number
    frame = _frame(sequence=seqs, sites=[[int(ch) for ch in d] for d in digits],
                   go=[[0, 3] if i % 2 else [1] for i in range(len(seqs))])
    frame.to_parquet(tmp_path / "l.parquet")
    lists = infer_columns(peek_table(tmp_path / "l.parquet"), {"label": "sites"})
    assert lists.problem_type == "residue_single_label_classification"
    sets = infer_columns(peek_table(tmp_path / "l.parquet"), {"label": "go"})
    assert sets.problem_type == "multi_label_classification" and sets.num_labels == 4


def test_per_residue_labels_make_a_residue_task(tmp_path):
    labels = ["".join("P" if i % 5 == 0 else "N" for i in range(len(s))) for s in PEPTIDES]
    inf = infer(_csv(tmp_path / "r.csv", _frame(sequence=PEPTIDES, sites=labels)))
    assert inf.choices["label"].column == "sites" and inf.problem_type == "residue_single_label_classification"
    assert inf.extra == ("data.residue_classes=N,P",)


def test_joined_class_sets_make_a_multi_label_task(tmp_path):
    inf = infer(_csv(tmp_path / "m.csv", _frame(sequence=PEPTIDES, ec=["1;3", "2", "0;1;2", "3", "1", "2;3", "0", "1"])))
    assert inf.problem_type == "multi_label_classification" and inf.num_labels == 4


def test_label_and_group_and_mask_by_name(tmp_path):
    inf = infer(_csv(tmp_path / "n.csv", _frame(aa_seq=PEPTIDES, label=[1, 0] * 4, other=[0.5] * 8,
                                                 cluster=list("aabbccdd"), mask=["1" * len(s) for s in PEPTIDES])))
    assert inf.choices["label"].column == "label" and "named like a label column" in inf.choices["label"].reason
    assert inf.choices["group"].column == "cluster" and inf.choices["mask"].column == "mask"


def test_two_sequence_columns_or_two_labels_are_a_doubt(tmp_path):
    two = infer(_csv(tmp_path / "two.csv", _frame(heavy_chain=PEPTIDES, light_chain=PEPTIDES[::-1], y=[1.0] * 8)))
    assert two.choices["sequence"].column is None and "heavy_chain" in two.ambiguous["sequence"]
    labels = infer(_csv(tmp_path / "lab.csv", _frame(sequence=PEPTIDES, a=[0.1] * 8, b=[0.2] * 8)))
    assert labels.choices["label"].column is None and "a, b" in labels.ambiguous["label"]
    with pytest.raises(DataError, match="2 columns could be the label column"):
        resolve_columns(load_config(None, [f"data.train={tmp_path / 'lab.csv'}"]).data)


def test_words_as_classes_are_explained(tmp_path):
    inf = infer(_csv(tmp_path / "w.csv", _frame(sequence=PEPTIDES, outcome=["soluble", "insoluble"] * 4)))
    assert inf.choices["label"].column is None and "words as classes" in inf.ambiguous["label"]


def test_a_given_column_missing_from_the_file_is_found_again(tmp_path):
    f = _csv(tmp_path / "h.csv", _frame(seq=PEPTIDES, truth=[1, 0] * 4, pid=[f"p{i}" for i in range(8)]))
    inf = infer(f, given={"sequence": "protein", "label": "activity", "id": "name"})
    assert [inf.choices[r].column for r in ("sequence", "label", "id")] == ["seq", "truth", "pid"]
    assert "'protein' is not in this file" in inf.choices["sequence"].reason
    kept = infer(f, given={"sequence": "seq", "id": "truth"})
    assert kept.choices["id"].column == "truth"  # what the user chose wins


def test_fasta_ids_come_from_the_headers(tmp_path):
    f = tmp_path / "q.fasta"
    f.write_text("".join(f">q{i} LABEL={i % 2}\n{s}\n" for i, s in enumerate(PEPTIDES)))
    inf = infer(f)
    assert inf.choices["id"].column == "id" and inf.choices["sequence"].column == "sequence"


@pytest.mark.shared_data
def test_real_antibody_chains_with_several_possible_labels(tmp_path):
    frame = pd.read_parquet(shared("paratope", "sabdab_val.parquet")).head(30)
    frame.to_parquet(tmp_path / "p.parquet")
    inf = infer(tmp_path / "p.parquet")
    assert inf.choices["sequence"].column == "sequence"
    assert "label" in inf.ambiguous and "paratope_labels" in inf.ambiguous["label"]  # three plausible labels
    chosen = infer(tmp_path / "p.parquet", given={"label": "paratope_labels"})
    assert chosen.problem_type == "residue_single_label_classification" and chosen.extra == ("data.residue_classes=N,P",)


def test_nucleic_acids_and_unknown_residues_are_warned_about():
    assert "DNA/RNA" in nonprotein_warning(["ATGCGTACGTTAGCATGC", "ATGGGCCCAAAT", "MKTAYIAKQR"])
    assert "unknown" in nonprotein_warning(["XXXXXXXXMK", "XXXXXX"])
    assert nonprotein_warning(PEPTIDES) is None and nonprotein_warning(["ACDEFGHIK"]) is None


def test_data_check_infers_and_says_so_and_a_doubt_stops_with_the_candidates(tmp_path):
    f = _csv(tmp_path / "lab.csv", _frame(gene=[f"g{i}" for i in range(40)], stability=[0.5 + 0.01 * i for i in range(40)],
                                          chain=PEPTIDES * 5))
    exe = [sys.executable, "-m", "plmforge.cli", "data", "check", str(f)]
    ok = subprocess.run(exe, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    out = ok.stdout + ok.stderr
    assert "sequence column 'chain'" in out and "label column 'stability'" in out and "regression" in out
    assert "test: carved from train" in out
    bad = _csv(tmp_path / "doubt.csv", _frame(chain=PEPTIDES, a=[0.1] * 8, b=[0.2] * 8))
    refused = subprocess.run([*exe[:-1], str(bad)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "a, b" in refused.stderr and "Traceback" not in refused.stderr


def test_a_column_the_user_names_is_used_or_refused_never_guessed(tmp_path):
    from plmforge.data.columns import named_columns

    table = peek_table(_csv(tmp_path / "n.csv", _frame(sequence=PEPTIDES, tm=[40.5 + i for i in range(8)],
                                                         label=[0, 1] * 4)))
    assert named_columns(table, {"label": "TM"}) == {"label": "tm"}  # the file's spelling, found without case
    with pytest.raises(DataError, match="no label column 'melting'.*sequence, tm, label"):
        named_columns(table, {"label": "melting"}, option="--{role}-column")
    cfg, _ = resolve_columns(load_config(None, [f"data.train={tmp_path / 'n.csv'}", "data.label_column=TM"]).data)
    assert cfg.label_column == "tm" and cfg.problem_type == "regression"
