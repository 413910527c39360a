"""A corpus of malformed and awkward dataset files, each run through `plmforge data check` and
`plmforge train` as a user would: every file either works (with the note it deserves) or stops with a
data/config error that names the place and the fix; never a traceback."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from plmforge.cli import main

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MSDNGPQNQRNAPRITFGGPSD", "MKVLAAGIVGKSEQAPLRWTTA", "MADEEKLPPGWEKRMSRSSGRV",
        "MSTNPKPQRKTKRNTNRRPQDV", "MKAILVVLLYTFATANADTLCI", "MRVKGIRKNCQHLWRWGTMLLG", "MNNLLTFIKVWALLLQSPTAGA",
        "MSLLTEVETPIRNEWGCRCNDS", "MASMTGGQQMGRGSEFELRRQA", "MTEYKLVVVGAGGVGKSALTIQ", "MGSSHHHHHHSSGLVPRGSHMA"]
CLS = [i % 2 for i in range(12)]
REG = [round(0.37 * i - 1.1, 3) for i in range(12)]


def csv_text(rows: list[tuple], header: tuple = ("aa_seq", "label"), sep: str = ",", eol: str = "\n") -> str:
    lines = [sep.join(header)] + [sep.join(str(v) for v in r) for r in rows]
    return eol.join(lines) + eol


BASIC = csv_text(list(zip(SEQS, CLS, strict=True)))


@dataclass(frozen=True)
class Case:
    name: str  # file name (its suffix matters)
    content: bytes | str
    outcome: str  # "ok", or a regex the error must match
    args: tuple[str, ...] = ("data.problem_type=single_label_classification",)
    note: str | None = None  # a regex the output of a good file must also show (e.g. a note on what was done)


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


REG_ARGS = ("data.problem_type=regression",)
ML_ARGS = ("data.problem_type=multi_label_classification", "data.num_labels=3")
RES_ARGS = ("data.problem_type=residue_single_label_classification", "data.residue_classes=A,B")


def _residue_rows(n: int = 12) -> list[tuple]:
    return [(s, "".join("AB"[(i + k) % 2] for k in range(len(s)))) for i, s in enumerate(SEQS[:n])]


CASES = [
    # ---- plain files that must work ----
    Case("basic.csv", BASIC, "ok"),
    Case("crlf.csv", csv_text(list(zip(SEQS, CLS, strict=True)), eol="\r\n"), "ok"),
    Case("mixed_eol.csv", BASIC.replace("\n", "\r\n", 5), "ok"),
    Case("bom.csv", "\ufeff" + BASIC, "ok"),
    Case("quoted.csv", csv_text([(f'"{s}"', c) for s, c in zip(SEQS, CLS, strict=True)]), "ok"),
    Case("lower.csv", csv_text([(s.lower(), c) for s, c in zip(SEQS, CLS, strict=True)]), "ok",
         note=r"lower-case"),
    Case("spaces_in_labels.csv", csv_text([(s, f" {c} ") for s, c in zip(SEQS, CLS, strict=True)]), "ok"),
    Case("tab_named_csv.csv", csv_text(list(zip(SEQS, CLS, strict=True)), sep="\t"), "ok", note=r"tab-separated"),
    Case("semicolon.csv", csv_text(list(zip(SEQS, CLS, strict=True)), sep=";"), "ok", note=r"';'-separated"),
    Case("plain.tsv", csv_text(list(zip(SEQS, CLS, strict=True)), sep="\t"), "ok"),
    Case("packed.csv.gz", _gz(BASIC), "ok"),
    Case("packed.csv.bz2", bz2.compress(BASIC.encode()), "ok"),
    Case("packed.csv.xz", lzma.compress(BASIC.encode()), "ok"),
    Case("packed.zip", _zip({"data.csv": BASIC}), "ok"),
    Case("packed.tsv.gz", _gz(csv_text(list(zip(SEQS, CLS, strict=True)), sep="\t")), "ok"),
    Case("lines.jsonl", "".join(json.dumps({"aa_seq": s, "label": c}) + "\n" for s, c in zip(SEQS, CLS, strict=True)),
         "ok"),
    Case("array.json", json.dumps([{"aa_seq": s, "label": c} for s, c in zip(SEQS, CLS, strict=True)]), "ok"),
    Case("records.fasta", "".join(f">p{i} label={c}\n{s[:11]}\n{s[11:]}\n" for i, (s, c) in
                                  enumerate(zip(SEQS, CLS, strict=True))), "ok"),
    Case("table.parquet", _parquet(pd.DataFrame({"aa_seq": SEQS, "label": CLS})), "ok"),
    Case("regression.csv", csv_text(list(zip(SEQS, REG, strict=True))), "ok", REG_ARGS),
    Case("multilabel.csv", csv_text([(s, f'"{i % 3},{(i + 1) % 3}"') for i, s in enumerate(SEQS)]), "ok", ML_ARGS),
    Case("residue.csv", csv_text(_residue_rows()), "ok", RES_ARGS),
    Case("long.csv", csv_text([(s * 60, c) for s, c in zip(SEQS, CLS, strict=True)]), "ok",
         ("data.problem_type=single_label_classification", "model.max_length=64"), note=r"truncated"),
    # ---- files that must be refused with a clear message ----
    Case("empty.csv", "", r"empty"),
    Case("blank_lines.csv", "\n\n  \n", r"empty"),
    Case("header_only.csv", "aa_seq,label\n", r"no rows|no records"),
    Case("header_only_num_labels.csv", "aa_seq,label\n", r"no rows|no records",
         ("data.problem_type=single_label_classification", "data.num_labels=2")),
    Case("huge_class.csv", csv_text([(s, 1000000000000 if i == 3 else c) for i, (s, c) in
                                     enumerate(zip(SEQS, CLS, strict=True))]), r"class index 1000000000000"),
    Case("negative_class.csv", csv_text([(s, -1 if i == 2 else c) for i, (s, c) in enumerate(zip(SEQS, CLS, strict=True))]),
         r"row 3.*-1"),
    Case("float_class.csv", csv_text([(s, 1.5 if i == 4 else c) for i, (s, c) in enumerate(zip(SEQS, CLS, strict=True))]),
         r"row 5.*1\.5"),
    Case("duplicate_label.csv", csv_text([(s, c, 1 - c) for s, c in zip(SEQS, CLS, strict=True)],
                                         header=("aa_seq", "label", "label")), r"column.*'label'.*twice|duplicate"),
    Case("zip_two.zip", _zip({"a.csv": BASIC, "b.csv": BASIC}), r"2 files|one file"),
    Case("zip_empty.zip", _zip({}), r"no file|empty"),
    Case("corrupt.csv.gz", b"\x1f\x8b\x08\x00garbage-not-gzip", r"cannot be read|compressed"),
    Case("latin1.csv", ("aa_seq,label,note\n" + "".join(f"{s},{c},caf\xe9\n" for s, c in zip(SEQS, CLS, strict=True)))
         .encode("latin-1"), r"UTF-8.*byte"),
    Case("binary.csv", bytes(range(256)) * 4, r"UTF-8|binary|cannot be read"),
    Case("nul_bytes.csv", BASIC.replace("MKTAY", "MK\x00AY"), r"row 1|line 2"),
    Case("unknown_residue.csv", BASIC.replace("MKTAY", "MKJAY"), r"unknown residue 'J'"),
    Case("digits_in_seq.csv", BASIC.replace("MKTAY", "MK1AY"), r"unknown residue '1'"),
    Case("empty_sequence.csv", csv_text([("" if i == 6 else s, c) for i, (s, c) in enumerate(zip(SEQS, CLS, strict=True))]),
         r"row 7.*empty sequence"),
    Case("no_seq_column.csv", csv_text(list(zip(SEQS, CLS, strict=True)), header=("sequence_x", "label")),
         "ok", note=r"sequence column 'sequence_x'.*residue sequences"),
    Case("no_label_column.csv", csv_text(list(zip(SEQS, CLS, strict=True)), header=("aa_seq", "y")),
         "ok", note=r"label column 'y'"),
    Case("two_seq_columns.csv", csv_text([(s, s[::-1], c) for s, c in zip(SEQS, CLS, strict=True)],
                                         header=("heavy", "light", "label")), r"heavy.*light|candidates"),
    Case("no_label_candidate.csv", csv_text([(s, f"note {i} on this protein") for i, s in enumerate(SEQS)],
                                            header=("aa_seq", "remark")), r"'remark' holds words as classes.*numbers"),
    Case("ragged.csv", BASIC.replace(f"{SEQS[5]},1", f"{SEQS[5]},1,extra"), r"line 7|fields"),
    Case("broken.jsonl", "".join((json.dumps({"aa_seq": s, "label": c}) if i != 2 else '{"aa_seq": "MK", ') + "\n"
                                 for i, (s, c) in enumerate(zip(SEQS, CLS, strict=True))), r"line 3"),
    Case("empty.jsonl", "", r"empty"),
    Case("not_objects.jsonl", "[1, 2]\n[3, 4]\n", r"line 1.*object"),
    Case("no_records.fasta", "; just a comment\n", r"no FASTA records"),
    Case("headerless.fasta", "MKTAYIAK\n>p1\nMKV\n", r"before the first '>'"),
    Case("empty_id.fasta", ">\nMKT\n", r"no identifier"),
    Case("corrupt.parquet", b"PAR1 not really parquet", r"cannot be read as PARQUET"),
    Case("sheet.xlsx", b"PK\x03\x04", r"unsupported file type '.xlsx'"),
    Case("regression_text.csv", csv_text([(s, "high" if i == 1 else r) for i, (s, r) in enumerate(zip(SEQS, REG, strict=True))]),
         r"row 2.*'high'", REG_ARGS),
    Case("regression_missing.csv", csv_text([(s, "" if i == 8 else r) for i, (s, r) in enumerate(zip(SEQS, REG, strict=True))]),
         r"row 9", REG_ARGS),
    Case("regression_inf.csv", csv_text([(s, "inf" if i == 0 else r) for i, (s, r) in enumerate(zip(SEQS, REG, strict=True))]),
         r"row 1.*inf", REG_ARGS),
    Case("multilabel_range.csv", csv_text([(s, f'"{i % 3},7"' if i == 4 else f'"{i % 3}"') for i, s in enumerate(SEQS)]),
         r"row 5.*7", ML_ARGS),
    Case("residue_length.csv", csv_text([(s, lab[:-3] if i == 3 else lab) for i, (s, lab) in enumerate(_residue_rows())]),
         r"row 4.*(length|residues)", RES_ARGS),
    Case("residue_symbol.csv", csv_text([(s, lab.replace("A", "Q", 1) if i == 2 else lab)
                                         for i, (s, lab) in enumerate(_residue_rows())]), r"row 3.*'Q'", RES_ARGS),
]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


def _write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / case.name
    if isinstance(case.content, str):
        path.write_bytes(case.content.encode())
    else:
        path.write_bytes(case.content)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_data_check_handles_every_file(case, tmp_path, capsys, caplog):
    path = _write(tmp_path, case)
    code, text = _run(["data", "check", str(path), *case.args], capsys)
    text += caplog.text
    assert "Traceback" not in text
    if case.outcome == "ok":
        assert code == 0, text
        assert "OK: every row is valid" in text
        if case.note:
            assert pytest.importorskip("re").search(case.note, text, flags=2), text
    else:
        assert code != 0, text
        import re

        assert re.search(case.outcome, text, flags=re.S), text
        assert case.name in text or "empty" in text or "model" in text, text  # the message names the file


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_train_handles_every_file(case, tmp_path, capsys, tiny_models):
    path = _write(tmp_path, case)
    out = tmp_path / "run"
    code, text = _run(["train", f"data.dataset={path}", f"model.name={tiny_models['esm']}", "training.epochs=1",
                       f"output.dir={out}", "batching.batch_size=8", *case.args], capsys)
    assert "Traceback" not in text
    if case.outcome == "ok":
        assert code == 0, text
        assert (out / "best" / "model.safetensors").is_file()
        assert "test_metrics" not in text  # no test split: the summary announces only files it wrote
    else:
        import re

        assert code != 0 and re.search(case.outcome, text, flags=re.S), text
        assert not (out / "best").exists()


@pytest.mark.parametrize("name,expected", [("basic.csv", "single_label_classification"),
                                           ("regression.csv", "regression"),
                                           ("multilabel.csv", "multi_label_classification"),
                                           ("residue.csv", "residue_single_label_classification")])
def test_data_check_without_a_problem_type_infers_it(name, expected, tmp_path, capsys):
    case = next(c for c in CASES if c.name == name)
    code, text = _run(["data", "check", str(_write(tmp_path, case))], capsys)
    assert code == 0, text
    assert f"problem type inferred: {expected}" in text and "--problem-type" in text
    assert f"problem type: {expected}" in text and "OK: every row is valid" in text


def test_single_file_datasets_use_their_validation_and_test_options(tmp_path, capsys):
    train = _write(tmp_path, CASES[0])
    val = tmp_path / "val.csv"
    val.write_text(csv_text(list(zip(SEQS[:4], CLS[:4], strict=True))))
    code, text = _run(["data", "check", str(train), f"data.validation={val}", f"data.test={val}"], capsys)
    assert code == 0, text
    import re

    assert "carved" not in text and re.search(r"validation +4 sequences", text) and re.search(r"test +4 sequences", text)
    code, text = _run(["data", "check", str(train), f"data.validation={tmp_path / 'nope.csv'}"], capsys)
    assert code != 0 and "nope.csv" in text and "does not exist" in text  # never silently ignored
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    (split_dir / "train.csv").write_text(BASIC)
    code, text = _run(["data", "check", str(split_dir), f"data.test={val}"], capsys)
    assert code != 0 and "data.test cannot be combined" in text


def test_a_missing_relative_path_is_a_missing_file_not_a_hub_id(tmp_path, capsys, monkeypatch):
    from plmforge.config import ModelConfig
    from plmforge.data.dataset import looks_like_hub_id
    from plmforge.errors import ConfigError
    from plmforge.models.backbone import resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydir").mkdir()
    for missing in ("mydir/train.csv", "other/train.csv", "mydir/data"):
        code, text = _run(["data", "check", missing, "data.problem_type=regression"], capsys)
        assert code != 0 and "no such file or directory" in text and missing in text, text
        assert "hub" not in text.split("fix:")[0]  # the message is about the file, not the hub
    assert looks_like_hub_id("owner/dataset") and not looks_like_hub_id("owner/data.csv")
    with pytest.raises(ConfigError, match="no such model directory"):
        resolve_model(ModelConfig(name="mydir/model"))
