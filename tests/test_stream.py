"""Large datasets are checked in chunks of rows: the outcome equals reading the file whole (every corpus
file: same summary, or the same error at the same row), rows and lines are numbered across chunks, and
memory does not grow with the sequences."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared
from test_corpus import CASES, _write

from plmforge.data import stream
from plmforge.data.inspect import check_dataset
from plmforge.errors import DataError, PlmforgeError


def _outcome(path: Path, args: tuple[str, ...], streamed: bool):
    try:
        return check_dataset([f"data.dataset={path}", *args], stream=streamed)
    except PlmforgeError as exc:
        return exc


def _pooled(summary) -> dict:
    """Everything a split summary says, train and a carved validation pooled (a streamed check reports
    train before the validation rows are carved out of it)."""
    splits = dict(summary.splits)
    if summary.validation_carved and "validation" in splits:
        splits["train"] = [splits["train"], splits.pop("validation")]
    out = {}
    for name, parts in splits.items():
        parts = parts if isinstance(parts, list) else [parts]
        labels = [p.labels for p in parts if p.labels is not None]
        out[name] = {
            "size": sum(p.size for p in parts),
            "lengths": sorted(np.concatenate([p.lengths for p in parts]).tolist()),
            "units": sum(lab.units for lab in labels), "masked": sum(lab.masked for lab in labels),
            "counts": {c: sum((lab.counts or {}).get(c, 0) for lab in labels) for lab0 in labels[:1]
                       for c in (lab0.counts or {})},
            "values": sorted(np.concatenate([lab.values for lab in labels]).round(6).tolist())
            if labels and labels[0].values is not None else None,
        }
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_streamed_check_equals_reading_the_file_whole(case, tmp_path, monkeypatch):
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 5, None))  # several chunks of 12 rows
    path = _write(tmp_path, case)
    whole, streamed = _outcome(path, case.args, False), _outcome(path, case.args, True)
    if isinstance(whole, Exception):
        assert isinstance(streamed, Exception), (whole, streamed)
        w, s = str(whole), str(streamed)
        rows_w, rows_s = re.findall(r"(?:row|record|line) \d+", w), re.findall(r"(?:row|record|line) \d+", s)
        assert rows_w == rows_s or not rows_w, (w, s)  # the same place (a streamed check may name one more)
        assert getattr(whole, "file", None) == getattr(streamed, "file", None) or case.name in s, (w, s)
        return
    assert not isinstance(streamed, Exception), streamed
    assert streamed.streamed and not whole.streamed
    assert _pooled(streamed) == _pooled(whole)
    assert streamed.task == whole.task
    assert [h["sequence"] for h in streamed.splits["train"].head][:1] == \
        [h["sequence"] for h in whole.splits["train"].head][:1] or whole.validation_carved


def _big_csv(path: Path, n: int, bad_row: int | None = None) -> None:
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    with open(path, "w") as fh:
        fh.write("id,aa_seq,label\n")
        for i in range(n):
            seq = letters[rng.integers(0, 20, rng.integers(30, 60))].tobytes().decode()
            if i + 1 == bad_row:
                seq = seq[:5] + "J" + seq[6:]
            fh.write(f"p{i},{seq},{i % 3}\n")


def test_an_error_deep_in_a_large_file_names_its_row_and_line(tmp_path):
    path = tmp_path / "big.csv"
    _big_csv(path, 45_000, bad_row=43_210)
    with pytest.raises(DataError) as err:
        check_dataset([f"data.dataset={path}", "data.problem_type=single_label_classification"], stream=True)
    assert "row 43210 (line 43211)" in str(err.value) and "'J' at position 6" in str(err.value)


def test_streamed_validation_and_test_files_and_file_labels(tmp_path):
    """data.train with `file::label` parts and separate validation/test files, against the whole read."""
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 25)) for _ in range(60)]
    for name, part in (("pos", seqs[:20]), ("neg", seqs[20:40])):
        (tmp_path / f"{name}.fasta").write_text("".join(f">{name}{i}\n{s[:12]}\n{s[12:]}\n" for i, s in enumerate(part)))
    (tmp_path / "val.csv").write_text("aa_seq,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(seqs[40:50])))
    (tmp_path / "test.jsonl").write_text("".join(f'{{"aa_seq": "{s}", "label": {i % 2}}}\n'
                                                 for i, s in enumerate(seqs[50:] + seqs[:2])))
    args = [f"data.train={tmp_path / 'pos.fasta'}::1,{tmp_path / 'neg.fasta'}::0",
            f"data.validation={tmp_path / 'val.csv'}", f"data.test={tmp_path / 'test.jsonl'}",
            "data.problem_type=single_label_classification"]
    whole, streamed = check_dataset(args, stream=False), check_dataset(args, stream=True)
    assert _pooled(streamed) == _pooled(whole)
    assert streamed.splits["train"].labels.counts == {0: 20, 1: 20}
    assert any("2 identical sequence(s) appear in both train and test" in w for w in streamed.warnings)
    assert any("identical" in w for w in whole.warnings)


def test_a_class_index_beyond_num_labels_in_validation_is_refused_with_its_row(tmp_path):
    (tmp_path / "train.csv").write_text("aa_seq,label\n" + "MKTAYIAKQR,0\nMKVLAAGIVG,1\nMSDNGPQNQR,1\nMADEEK,0\n")
    (tmp_path / "valid.csv").write_text("aa_seq,label\n" + "MKTAYIAK,0\nMKVLAAG,2\n")
    with pytest.raises(DataError, match=r"valid.csv, row 2 \(line 3\).*class index 2 is out of range"):
        check_dataset([f"data.dataset={tmp_path}", "data.problem_type=single_label_classification"], stream=True)


@pytest.mark.shared_data
def test_real_datasets_streamed_equal_whole(monkeypatch):
    """SUMOylation windows (4 FASTA files, labels by file) and the paratope parquet files (per-residue
    labels) in chunks of 1,000 rows."""
    monkeypatch.setattr(stream.iter_chunks, "__defaults__", ("aa_seq", 1000, None))
    sumo = shared("sumo_21mer")
    spec = lambda kind: f"{sumo / f'Sumoylation_pos_{kind}.fasta'}::1,{sumo / f'Sumoylation_neg_{kind}.fasta'}::0"
    para = shared("paratope")
    for args in ([f"data.train={spec('Train')}", f"data.test={spec('Test')}",
                  "data.problem_type=single_label_classification"],
                 [f"data.train={para / 'sabdab_train.parquet'}", f"data.validation={para / 'sabdab_val.parquet'}",
                  f"data.test={para / 'sabdab_test.parquet'}", "data.sequence_column=sequence",
                  "data.label_column=paratope_labels", "data.problem_type=residue_single_label_classification",
                  "data.residue_classes=N,P"]):
        whole, streamed = check_dataset(args, stream=False), check_dataset(args, stream=True)
        assert streamed.streamed and _pooled(streamed) == _pooled(whole)
        assert streamed.task == whole.task


def test_memory_stays_bounded_and_a_progress_bar_is_shown(tmp_path):
    """A 300,000-row file checked in a fresh process: the peak grows far less than reading it whole."""
    path = tmp_path / "big.csv"
    _big_csv(path, 300_000)
    peaks = {}
    for mode in ("--stream", "--no-stream"):
        code = ("import sys; from plmforge.cli import main; from plmforge.train.memory import process_peak_mb; "
                "rc = main(sys.argv[1:]); print('PEAK', process_peak_mb()); sys.exit(rc)")
        res = subprocess.run([sys.executable, "-c", code, "data", "check", str(path), mode,
                              "--problem-type", "single_label_classification"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        peaks[mode] = float(re.search(r"PEAK ([\d.]+)", res.stdout).group(1))
        if mode == "--stream":
            assert "train       300000 sequences" in res.stdout
            assert "checking big.csv" in res.stderr and "100%" in res.stderr  # the progress bar
    print(peaks)
    assert peaks["--stream"] < peaks["--no-stream"] - 120, peaks
