"""`plmforge structure`: chains, 3Di and DSSP from the real PDB/mmCIF files in ../shared/data/structures,
checked against Foldseek's and DSSP's own outputs, plus every hard case that folder's README lists."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared

from plmforge.cli import main
from plmforge.structure.build import collect_paths, process_file, structure_tokens
from plmforge.structure.dataset import add_structure_columns
from plmforge.structure.reader import read_structure
from plmforge.structure.tokens import choose_secondary_structure, foldseek_tokens, parse_dssp

pytestmark = pytest.mark.shared_data
SS8_TO_SS3 = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}


def files() -> Path:
    return shared("structures", "files")


def fasta(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    name = ""
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            out[name] = ""
        else:
            out[name] += line.strip()
    return out


@pytest.fixture(scope="module")
def table(structures) -> pd.DataFrame:
    """All 48 files, 2 worker processes, mkdssp for secondary structure (conftest's `structures`)."""
    pytest.structure_result = structures  # type: ignore[attr-defined]
    return structures.table().set_index("id")


def test_3di_equals_foldseek_for_every_reference_chain_we_have(table):
    """biotite_i3d.fasta holds Foldseek's own 3Di strings; for NMR entries its first model is compared
    (we read model 1). The data README saw 37 of 40 with mini3di on top of a reader with the right rules
    (first model, last altloc, residues with CA); this reader reproduces all 40, 5eil included: its
    BP5 residue is not in the residue table, so it is left out of the chain exactly as Foldseek does
    (and reported, see test_hard_cases)."""
    ref = fasta(shared("structures", "reference", "biotite_i3d.fasta"))
    have = {p.name.split(".")[0].lower(): p for p in files().iterdir()}
    compared, differ = 0, []
    for key, expected in ref.items():
        parts = key.split("_")
        if "MODEL" in parts and parts[2] != "1":
            continue
        stem, chain = parts[0].lower(), parts[-1]
        if stem not in have:
            continue  # 1gya and 2axd are not among the 48 files
        ident = f"{have[stem].name.split('.')[0]}_{chain}"
        compared += 1
        if table.loc[ident, "foldseek_seq"] != expected:
            differ.append(ident)
    assert compared == 40
    assert differ == []


@pytest.mark.parametrize("stem,reference", [("1cbs", "1cbs.dssp"), ("1ahsA", "1ahsA.dssp"), ("1h4aX", "1h4aX.dssp"),
                                            ("2a2lA", "2a2lA.dssp"), ("3e8mA", "3e8mA.dssp"),
                                            ("4gcnA", "4gcnA.dssp")])
def test_8_state_dssp_equals_the_reference_outputs(table, stem, reference):
    """1cbs: DSSP 4's own output (its P, polyproline, read as coil L); the TS50 chains: DSSP 2000. The
    TS50 files have no HEADER line, which mkdssp needs (plmforge adds one)."""
    ref = parse_dssp(shared("structures", "reference", reference).read_text())
    path = next(p for p in files().iterdir() if p.name.startswith(stem + "."))
    chain = read_structure(path).chains[0]
    expected = "".join(ref[k][0] for k in chain.keys)  # no numbering restarts in these chains
    assert table.loc[f"{stem}_{chain.name}", "ss8_seq"] == expected
    assert set(expected) - set("HBEGITSL") == set()


def test_strings_line_up_one_letter_per_residue(table):
    for col in ("foldseek_seq", "ss8_seq"):
        assert (table[col].str.len() == table["aa_seq"].str.len()).all()
    assert len(table) == 88
    assert table.index.is_unique


def test_hard_cases(table):
    result = pytest.structure_result  # type: ignore[attr-defined]
    notes = {Path(r.file).name: r.notes for r in result.reports}
    chain_notes = {c.id: c.notes for c in result.chains}
    skipped = {(Path(f).name, c): why for f, c, why in result.skipped()}
    # NMR ensembles: model 1 only
    assert notes["1l2y.pdb"] == ["38 models: model 1 used"]
    assert table.loc["1l2y_A", "aa_seq"] == "NLYIQWLKDGGPSSGRPPPS"
    assert "H" in table.loc["1l2y_A", "ss8_seq"]  # mkdssp ran despite the REMARKs that abort it on the raw file
    for f in ("1AS5.cif", "2OFG.cif"):
        assert notes[f][0].endswith("models: model 1 used")
    # insertion codes: part of the residue key, so residues 52 and 52A stay two residues
    chain = next(c for c in read_structure(files() / "1dix.cif").chains if c.name == "A")
    assert any(k[2] for k in chain.keys) and len(set(chain.keys)) == len(chain)  # none merged
    # non-standard and modified residues
    assert "MSE=M" in " ".join(chain_notes["1A8O_A"])
    assert "M" in table.loc["1A8O_A", "aa_seq"]
    assert "L" * 10 not in table.loc["1A8O_A", "ss8_seq"][:20]  # MSE residues have DSSP states (SEQRES kept)
    assert "BP5 x1" in " ".join(chain_notes["5eil_A"])
    assert "AIB=A" in " ".join(chain_notes["2n0n_M1_A"])
    # missing backbone atoms: a residue without CA is left out and reported (2XHE); in 1ejg, whose residues
    # 22 and 25 come in two variants, the first variant is read (it has its backbone)
    assert any("1 residues without a CA atom left out" in n for n in chain_notes["2XHE_A"])
    assert table.loc["pdb1ejg_A", "aa_seq"][21] == "P" and len(table.loc["pdb1ejg_A", "aa_seq"]) == 46
    # DNA chains skipped and reported
    assert {k for k in skipped if k[0] == "5ugo.cif"} == {("5ugo.cif", "T"), ("5ugo.cif", "P"), ("5ugo.cif", "D")}
    assert all("nucleic-acid chain (Dna" in skipped[k] for k in skipped if k[0] in ("5ugo.cif", "pdb3mht.pdb"))
    assert "5ugo_A" in table.index
    # files without a HEADER line: mkdssp needed one
    for ident in ("pdb1ake_A", "2N2U_A", "pdb1r19_dssp_A"):
        assert set(table.loc[ident, "ss8_seq"]) != {"L"}
    # many chains, cryo-EM
    assert sum(i.startswith("3wip_") for i in table.index) >= 2
    assert any(i.startswith("7DDO_") for i in table.index)


def _atom(serial: int, name: str, res: str, num: int, x: float, record: str = "ATOM", altloc: str = " ",
          chain: str = "A") -> str:
    return (f"{record:<6}{serial:>5} {name:<4}{altloc}{res:>3} {chain}{num:>4}    {x:8.3f}{0.0:8.3f}{0.0:8.3f}"
            f"  1.00 20.00           {name[0]}")


def _residue(serial: int, res: str, num: int, x: float, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    return [_atom(serial + i, a, res, num, x + i * 0.5, **kw) for i, a in enumerate(("N", "CA", "C", "O"))]


def test_restarted_numbering_ligands_and_microheterogeneity(tmp_path):
    """Residues keep their file order when numbering restarts; a free amino acid bound as a ligand is not
    part of the chain; where SER and THR share a position, the first is read (as Foldseek does)."""
    lines = ["HEADER    TEST"]
    for i, (res, num) in enumerate([("ALA", 1), ("GLY", 2), ("SER", 3), ("THR", 4), ("LYS", 1), ("TRP", 2)]):
        lines += _residue(10 * i + 1, res, num, 3.8 * i)
    lines += ["TER"] + _residue(200, "GLU", 901, 50.0, record="HETATM") + ["END"]
    (tmp_path / "restart.pdb").write_text("\n".join(lines) + "\n")
    chain = read_structure(tmp_path / "restart.pdb").chains[0]
    assert chain.sequence == "AGSTKW" and chain.numbers == [1, 2, 3, 4, 1, 2]
    assert any("numbering restarts" in n for n in chain.notes)
    micro = ["HEADER    TEST", *_residue(1, "ALA", 1, 0.0), *_residue(10, "SER", 2, 3.8, altloc="A"),
             *_residue(20, "THR", 2, 3.9, altloc="B"), *_residue(30, "GLY", 3, 7.6), "END"]
    (tmp_path / "micro.pdb").write_text("\n".join(micro) + "\n")
    assert read_structure(tmp_path / "micro.pdb").chains[0].sequence == "ASG"
    # a residue with its CA but without N and C: kept, reported, Foldseek's invalid 3Di state (D)
    lines = ["HEADER    TEST"]
    for i, res in enumerate(("ALA", "GLY", "SER", "THR", "LYS", "TRP", "VAL", "LEU")):
        lines += _residue(10 * i + 1, res, i + 1, 3.8 * i) if i != 3 else [_atom(31, "CA", res, 4, 11.4)]
    (tmp_path / "gap.pdb").write_text("\n".join(lines + ["END"]) + "\n")
    gap = read_structure(tmp_path / "gap.pdb").chains[0]
    assert gap.sequence == "AGSTKWVL" and any("2 missing N/C backbone atoms" in n for n in gap.notes)
    assert foldseek_tokens(gap)[3] == "D"


def test_broken_files_are_reported_and_the_rest_continue(tmp_path):
    src = files() / "1l2y.pdb"
    (tmp_path / "good.pdb").write_text(src.read_text())
    (tmp_path / "garbage.pdb").write_text("this is not a structure\n")
    (tmp_path / "empty.cif").write_text("")
    text = (files() / "1aki.cif").read_text()
    with gzip.open(tmp_path / "cut.cif.gz", "wt") as fh:
        fh.write(text[: len(text) // 3])  # a loop cut mid-way
    with gzip.open(tmp_path / "whole.cif.gz", "wt") as fh:
        fh.write(text)
    (tmp_path / "notes.txt").write_text("ignored: not a structure suffix")
    result = structure_tokens([tmp_path], workers=1, secondary="pydssp", progress=False)
    ids = [c.id for c in result.chains]
    assert "good_A" in ids and "whole_A" in ids
    errors = {Path(f).name: why for f, c, why in result.skipped()}
    assert "garbage.pdb" in errors and "empty.cif" in errors
    assert all(errors[f] for f in errors)
    # the cut file either fails with a reason or yields fewer residues; it never stops the run
    cut = next(r for r in result.reports if r.file.endswith("cut.cif.gz"))
    assert cut.error or len(cut.chains[0].sequence) < len(next(c for c in result.chains if c.id == "whole_A").sequence)


def test_gzip_gives_the_same_rows_and_workers_do_not_change_output(tmp_path, table):
    for name in ("1aki.cif", "4gcnA.pdb"):
        with gzip.open(tmp_path / (name + ".gz"), "wb") as fh:
            fh.write((files() / name).read_bytes())
    zipped = structure_tokens([tmp_path], workers=1, progress=False).table().set_index("id")
    for ident in ("1aki_A", "4gcnA_A"):
        for col in ("aa_seq", "foldseek_seq", "ss8_seq"):
            assert zipped.loc[ident, col] == table.loc[ident, col]
    one = structure_tokens([files() / "1igy.cif", files() / "3wip.cif"], workers=1, progress=False).table()
    two = structure_tokens([files() / "1igy.cif", files() / "3wip.cif"], workers=2, progress=False).table()
    pd.testing.assert_frame_equal(one, two)


def test_pydssp_fallback_is_3_state_and_close_to_dssp(table):
    """Without mkdssp: 3 states in a column of its own (ss3_seq), so 8- and 3-state strings never mix."""
    ss = choose_secondary_structure("pydssp")
    assert ss.column == "ss3_seq" and "pydssp" in ss.description
    agree = []
    for name in ("1aki.cif", "1cbs.cif", "4gcnA.pdb", "2a2lA.pdb", "1igy.cif"):
        report = process_file(files() / name, ss)
        for c in report.chains:
            dssp3 = "".join(SS8_TO_SS3.get(x, "L") for x in table.loc[c.id, "ss8_seq"])
            assert set(c.secondary) <= set("HEL") and len(c.secondary) == len(dssp3)
            agree.append(np.mean([a == b for a, b in zip(c.secondary, dssp3, strict=True)]))
    assert np.median(agree) > 0.9, agree


def test_paths_that_name_nothing_are_errors(tmp_path):
    from plmforge.errors import DataError

    with pytest.raises(DataError, match="no such file"):
        collect_paths([tmp_path / "missing.pdb"])
    with pytest.raises(DataError, match="no .pdb"):
        collect_paths([tmp_path])
    assert collect_paths([str(files() / "1a*.cif")]) == sorted(p for p in files().glob("1a*.cif"))


def test_cli_writes_the_table_and_says_what_it_used(tmp_path, capsys):
    out = tmp_path / "tokens.csv"
    assert main(["structure", str(files() / "5ugo.cif"), str(files() / "1l2y.pdb"), "--out", str(out),
                 "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "mkdssp" in text and "structures/s" in text and "5ugo.cif chain T: nucleic-acid chain" in text
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "file", "chain", "aa_seq", "foldseek_seq", "ss8_seq"]
    assert main(["structure", str(files() / "1l2y.pdb"), "--out", str(out)]) != 0  # never overwritten silently
    assert main(["structure", str(tmp_path / "nothing*.pdb"), "--out", str(tmp_path / "x.csv")]) != 0
    assert "no such file" in capsys.readouterr().err


def _dataset(tmp_path: Path, table: pd.DataFrame) -> Path:
    rows = [
        ("1l2y", table.loc["1l2y_A", "aa_seq"], 1),  # the file's only protein chain
        ("1igy_B", table.loc["1igy_B", "aa_seq"], 0),  # <stem>_<chain>
        ("1igy", table.loc["1igy_A", "aa_seq"], 1),  # several chains: ambiguous
        ("1igy_Q", "ACDE", 0),  # no such chain
        ("nope", "ACDE", 1),  # no such file
        ("4gcnA", table.loc["4gcnA_A", "aa_seq"][:-1] + "W", 0),  # sequence differs
        ("5ugo_T", "ACGT", 1),  # a DNA chain
    ]
    path = tmp_path / "data.csv"
    pd.DataFrame(rows, columns=["name", "aa_seq", "label"]).to_csv(path, index=False)
    return path


def test_dataset_join_by_the_exact_id_rule(tmp_path, table):
    data = _dataset(tmp_path, table)
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    structures = tmp_path / "structures"
    structures.mkdir()
    for name in ("1l2y.pdb", "1igy.cif", "4gcnA.pdb", "5ugo.cif"):
        shutil.copy(files() / name, structures / name)
    report = add_structure_columns(data, structures, tmp_path / "out.csv", id_column="name", workers=1,
                                   progress=False)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == ["name", "aa_seq", "label", "foldseek_seq", "ss8_seq"]
    assert out.loc[0, "foldseek_seq"] == table.loc["1l2y_A", "foldseek_seq"]
    assert out.loc[1, "ss8_seq"] == table.loc["1igy_B", "ss8_seq"]
    assert report.matched == 2 and report.rows == 7
    problems = {ident: (where, why) for where, ident, why in report.problems}
    assert problems["1igy"][0] == "row 3 (line 4)"
    assert "4 protein chains" in problems["1igy"][1] and "<stem>_<chain>" in problems["1igy"][1]
    assert "no protein chain Q" in problems["1igy_Q"][1]
    assert "no structure file named nope" in problems["nope"][1]
    assert "first difference at position 127" in problems["4gcnA"][1]
    assert "no protein chain T" in problems["5ugo_T"][1]
    assert (out.loc[2:, "foldseek_seq"] == "").all()


def test_dataset_join_cli_reports_rows_and_never_overwrites_its_input(tmp_path, table, capsys):
    data = _dataset(tmp_path, table)
    assert main(["structure", "--dataset", str(data), "--out", str(tmp_path / "o.csv")]) != 0
    assert "--structures" in capsys.readouterr().err
    rc = main(["structure", "--dataset", str(data), "--structures", str(files()), "--id-column", "name",
               "--out", str(tmp_path / "o.csv"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "5 rows without structure columns" in err and "row 5 (line 6), id nope" in err
    assert main(["structure", "--dataset", str(data), "--structures", str(files()), "--out", str(data),
                 "--overwrite"]) != 0
    assert "is an input of this command" in capsys.readouterr().err


def test_failed_inputs_give_exit_1_and_nothing_that_looks_valid(tmp_path, capsys):
    """Issue 25, finding 7: bad files are listed and the exit code is 1 (good files still written); a file
    of HETATM records only is not a protein chain; an mmCIF mkdssp reads no residues from (written by gemmi)
    gets its real 8-state DSSP, not all coil."""
    import gemmi

    bad = tmp_path / "bad"
    bad.mkdir()
    good = files() / "1l2y.pdb"
    (bad / "truncated.pdb").write_text(good.read_text()[:200])
    (bad / "notes.pdb").write_text("this is a text file renamed\n")
    (bad / "binary.pdb").write_bytes(bytes(range(256)) * 8)
    (bad / "fake.pdb.gz").write_bytes(b"not gzip at all")
    (bad / "ligand.pdb").write_text(
        "HETATM    1  N   ALA L   1      11.104   6.134  -6.504  1.00  0.00           N\n"
        "HETATM    2  CA  ALA L   1      11.639   6.071  -5.147  1.00  0.00           C\n"
        "HETATM    3  C   ALA L   1      13.144   5.869  -5.142  1.00  0.00           C\n"
        "HETATM    4  O   ALA L   1      13.826   6.355  -6.041  1.00  0.00           O\nEND\n")
    out = tmp_path / "all_bad.csv"
    assert main(["structure", str(bad), "--out", str(out), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert not out.exists()  # no header-only table
    assert "5 of the inputs failed" in captured.err and "ligand.pdb" in captured.out
    assert "HETATM records only" in captured.out or "no protein chain" in captured.out
    mixed = tmp_path / "mixed.csv"
    assert main(["structure", str(good), str(bad / "notes.pdb"), "--out", str(mixed), "--workers", "1"]) == 1
    assert len(pd.read_csv(mixed)) == 1  # the good file is written
    capsys.readouterr()
    st = gemmi.read_structure(str(files() / "1ahsA.pdb"))
    st.setup_entities()
    cif = tmp_path / "1ahsA_gemmi.cif"
    st.make_mmcif_document().write_file(str(cif))
    via_gemmi = tmp_path / "gemmi.csv"
    assert main(["structure", str(cif), "--out", str(via_gemmi), "--workers", "1", "--ss", "mkdssp"]) == 0
    direct = tmp_path / "direct.csv"
    assert main(["structure", str(files() / "1ahsA.pdb"), "--out", str(direct), "--workers", "1", "--ss",
                 "mkdssp"]) == 0
    ss_gemmi, ss_direct = pd.read_csv(via_gemmi)["ss8_seq"][0], pd.read_csv(direct)["ss8_seq"][0]
    assert set(ss_gemmi) != {"L"} and ss_gemmi == ss_direct
