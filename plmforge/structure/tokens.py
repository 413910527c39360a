"""Per-residue structure tokens of a chain: Foldseek's 3Di alphabet (mini3di, no binary) and secondary
structure (8-state DSSP from Debian's `mkdssp` when installed, else a 3-state pure-Python fallback).

Every string has exactly one letter per residue of the chain as `reader.py` reads it, so the sequence,
3Di and secondary-structure strings line up by (chain, residue number, insertion code)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from plmforge.structure.reader import Chain, StructureFileError

COIL = "L"


@lru_cache(maxsize=1)
def _encoder():  # type: ignore[no-untyped-def]
    from mini3di import Encoder

    return Encoder()


def foldseek_tokens(chain: Chain) -> str:
    """Foldseek's 3Di string (a missing CB is placed virtually from N, CA and C; a residue without N or C
    gets Foldseek's invalid state, 'D')."""
    c = chain.coords
    states = _encoder().encode_atoms(ca=c["CA"], cb=c["CB"], n=c["N"], c=c["C"])
    return _encoder().build_sequence(states)


# ---- secondary structure ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SecondaryStructure:
    """Which tool assigns secondary structure, and into which column."""

    tool: str  # 'mkdssp' or 'pydssp'
    column: str  # 'ss8_seq' (8 states) or 'ss3_seq' (3 states)
    version: str = ""

    @property
    def description(self) -> str:
        if self.tool == "mkdssp":
            return f"mkdssp {self.version} (8-state DSSP, column ss8_seq)".replace("  ", " ")
        return "pydssp (3-state H/E/L fallback, column ss3_seq; install Debian's `dssp` package for 8 states)"


def mkdssp_path() -> str | None:
    return os.environ.get("PLMFORGE_MKDSSP") or shutil.which("mkdssp")


def choose_secondary_structure(tool: str = "auto") -> SecondaryStructure:
    """`auto`: mkdssp when installed, else pydssp; `mkdssp` or `pydssp` to insist on one."""
    if tool not in ("auto", "mkdssp", "pydssp"):
        raise ValueError(f"secondary-structure tool must be auto, mkdssp or pydssp, got {tool!r}")
    exe = mkdssp_path() if tool != "pydssp" else None
    if exe:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        found = re.search(r"(\d+\.\d+(\.\d+)?)", out.stdout + out.stderr)
        return SecondaryStructure("mkdssp", "ss8_seq", found.group(1) if found else "")
    if tool == "mkdssp":
        raise FileNotFoundError("mkdssp is not installed (Debian/Ubuntu: apt-get install dssp; conda: "
                                "conda install -c conda-forge dssp), or set PLMFORGE_MKDSSP to its path")
    return SecondaryStructure("pydssp", "ss3_seq")


def pydssp_states(chain: Chain) -> tuple[str, int]:
    """3-state assignment (H, E, L) with pydssp's numpy code; residues without N, CA, C and O are coil.
    Returns the string and how many residues had no complete backbone."""
    from pydssp.pydssp_numpy import assign

    c = chain.coords
    coords = np.stack([c["N"], c["CA"], c["C"], c["O"]], axis=1)  # (L, 4, 3)
    ok = ~np.isnan(coords).any(axis=(1, 2))
    out = np.array([COIL] * len(chain))
    if ok.sum() >= 6:
        donors = np.array([n != "PRO" for n, k in zip(chain.residue_names, ok, strict=True) if k], dtype=float)
        onehot = assign(coords[ok].astype(np.float64), donor_mask=donors)
        out[ok] = np.array(["L", "H", "E"])[np.asarray(onehot).argmax(-1)]
    return "".join(out), int((~ok).sum())


def mkdssp_states(path: Path, chains: list[Chain], exe: str | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """8-state DSSP per chain name, aligned to each chain's residues by (residue number, insertion code);
    residues DSSP did not assign (e.g. missing backbone atoms) are coil, and counted per chain."""
    exe = exe or mkdssp_path()
    if exe is None:
        raise FileNotFoundError("mkdssp is not installed")
    with tempfile.TemporaryDirectory(prefix="plmforge-dssp-") as tmp:
        src = _mkdssp_input(path, Path(tmp))
        states = _run_mkdssp(exe, src, Path(tmp))
        if not states and src.suffix == ".cif":  # an mmCIF mkdssp reads no residues from (e.g. written by
            states = _run_mkdssp(exe, _mmcif_as_pdb(src, Path(tmp)), Path(tmp))  # gemmi): as PDB records
    result, unassigned = {}, {}
    for chain in chains:
        seen: dict[tuple[str, int, str], int] = {}  # a repeated residue number takes the next state listed
        letters = []
        for key in chain.keys:
            options = states.get(key, [])
            k = seen.get(key, 0)
            seen[key] = k + 1
            letters.append(options[k] if k < len(options) else None)
        unassigned[chain.name] = sum(s is None for s in letters)
        result[chain.name] = "".join(s or COIL for s in letters)
    return result, unassigned


def _run_mkdssp(exe: str, src: Path, tmp: Path) -> dict[tuple[str, int, str], list[str]]:
    out = tmp / "out.dssp"
    out.unlink(missing_ok=True)
    run = subprocess.run([exe, "--output-format", "dssp", str(src), str(out)], capture_output=True, text=True,
                         timeout=600)
    if run.returncode != 0 or not out.exists():
        msg = (run.stderr or run.stdout).strip().splitlines()
        raise StructureFileError(f"mkdssp failed: {msg[-1] if msg else 'exit code ' + str(run.returncode)}")
    return parse_dssp(out.read_text())


def _mmcif_as_pdb(src: Path, tmp: Path) -> Path:
    """The mmCIF's first model as PDB records (author chain names and numbering kept), for mkdssp."""
    import gemmi

    st = gemmi.read_structure(str(src))
    st.setup_entities()
    try:
        text = st.make_pdb_string()
    except (RuntimeError, ValueError) as exc:  # too large for PDB records, or chain names too long
        raise StructureFileError(f"mkdssp read no residues from this mmCIF, and it cannot be written as PDB "
                                 f"records for another try ({exc})") from None
    return _mkdssp_input_text(text, tmp)


def parse_dssp(text: str) -> dict[tuple[str, int, str], list[str]]:
    """(chain, residue number, insertion code) -> 8-state letters in file order (more than one where the
    numbering restarts), from DSSP's classic output (long chain names from its AUTHCHAIN column)."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("  #  RESIDUE"))
    except StopIteration:
        raise StructureFileError("mkdssp output has no residue table") from None
    long_names = "AUTHCHAIN" in lines[start]
    states: dict[tuple[str, int, str], list[str]] = {}
    for line in lines[start + 1:]:
        if len(line) < 17 or line[13] == "!":  # '!' marks a chain break
            continue
        chain = line.split()[-1] if long_names else line[11]
        ss = line[16]
        states.setdefault((chain, int(line[5:10]), line[10].strip()), []).append(COIL if ss in " P" else ss)
    return states


def _mkdssp_input(path: Path, tmp: Path) -> Path:
    """A file mkdssp reads: mmCIF as it is (decompressed); PDB with a HEADER line first (without one,
    mkdssp takes the file for mmCIF), without REMARK records (some abort it) and with model 1 only."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", errors="replace") as fh:
        text = fh.read()
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    if name.lower().endswith((".cif", ".mmcif")):
        dst = tmp / "in.cif"
        dst.write_text(text)
        return dst
    return _mkdssp_input_text(text, tmp)


def _mkdssp_input_text(text: str, tmp: Path) -> Path:
    keep = ["HEADER    PLMFORGE INPUT" + " " * 30 + "01-JAN-00   XXXX"]
    for line in text.splitlines():
        record = line[:6]
        if record.startswith("ENDMDL"):
            break  # model 1 only
        if record.startswith(("ATOM", "HETATM", "TER", "CRYST1", "SEQRES")):
            keep.append(line)
    keep.append("END")
    dst = tmp / "in.pdb"
    dst.write_text("\n".join(keep) + "\n")
    return dst
