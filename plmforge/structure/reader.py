"""Reading protein chains from PDB / mmCIF files (plain or gzipped) with gemmi.

The rules, chosen so that 3Di tokens match Foldseek's and every residue keeps its identity:
- the first model only (NMR ensembles and multi-model files);
- protein chains only: DNA/RNA chains are skipped and reported;
- a residue is kept when it is part of the polymer (or of no declared entity) and has a CA atom;
  residues keep their file order and are keyed by (chain, residue number, insertion code); where two
  residue types share a position (microheterogeneity) the first is read, as Foldseek does;
- for atoms with alternate locations the last one listed wins (again as Foldseek does);
- residue letters: the 20 standard ones (plus U, O) from their names; modified residues (MSE, SEP,
  ...) as the letter of their parent amino acid; chain residues unknown to the residue table are left
  out (reported), as Foldseek leaves them out;
- ligands and water, free amino acids included, are never part of a chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
BACKBONE = ("N", "CA", "C", "O", "CB")
STANDARD = set("ACDEFGHIKLMNPQRSTVWYUO")


class StructureFileError(Exception):
    """A file that cannot be read as a structure (the message says why)."""


@dataclass
class Chain:
    """One protein chain: per-residue identity and backbone coordinates (NaN where an atom is missing)."""

    name: str
    residue_names: list[str]
    numbers: list[int]
    icodes: list[str]
    sequence: str
    coords: dict[str, np.ndarray]  # atom name (N, CA, C, O, CB) -> (L, 3) float32
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sequence)

    @property
    def keys(self) -> list[tuple[str, int, str]]:
        return [(self.name, n, i) for n, i in zip(self.numbers, self.icodes, strict=True)]


@dataclass
class ReadResult:
    chains: list[Chain]
    skipped: list[tuple[str, str]]  # (chain, reason)
    notes: list[str]  # about the file as a whole
    n_models: int


def structure_stem(path: Path) -> str:
    """The file name without its structure suffix and an optional .gz (`1abc.cif.gz` -> `1abc`)."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    for suffix in STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def is_structure_file(path: Path) -> bool:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(STRUCTURE_SUFFIXES)


def residue_letter(name: str) -> str:
    import gemmi

    info = gemmi.find_tabulated_residue(name)
    if info is None or not info.is_amino_acid():
        return "X"
    code = info.one_letter_code.upper()
    return code if code in STANDARD else "X"


def read_structure(path: str | Path) -> ReadResult:
    import gemmi

    path = Path(path)
    if path.stat().st_size == 0:
        raise StructureFileError("the file is empty")
    try:
        st = gemmi.read_structure(str(path), merge_chain_parts=True)
    except (RuntimeError, ValueError, OSError, IndexError) as exc:
        raise StructureFileError(f"not a readable PDB/mmCIF file: {exc}") from None
    if len(st) == 0 or len(st[0]) == 0:
        raise StructureFileError("no atom records: not a PDB/mmCIF structure, or one without coordinates")
    notes = []
    if len(st) > 1:
        notes.append(f"{len(st)} models: model 1 used")
    st.setup_entities()
    chains, skipped = [], []
    for ch in st[0]:
        polymer = ch.get_polymer()
        kind = polymer.check_polymer_type() if len(polymer) else None
        if kind in (gemmi.PolymerType.Dna, gemmi.PolymerType.Rna, gemmi.PolymerType.DnaRnaHybrid):
            skipped.append((ch.name, f"nucleic-acid chain ({kind.name}, {len(polymer)} residues)"))
            continue
        chain = _protein_chain(ch)
        if chain is None:
            if len(polymer) and all(r.het_flag == "H" for r in polymer):
                skipped.append((ch.name, f"HETATM records only ({len(polymer)} residues): a ligand or a modified "
                                         "residue, not a protein chain"))
            elif len(polymer):
                skipped.append((ch.name, f"no amino-acid residue with a CA atom ({len(polymer)} polymer residues)"))
            continue
        chains.append(chain)
    if not chains and not skipped:
        raise StructureFileError("no protein chain: no amino-acid residue with a CA atom")
    return ReadResult(chains, skipped, notes, len(st))


def _protein_chain(ch) -> Chain | None:  # type: ignore[no-untyped-def]
    import gemmi

    kept: list[tuple[str, int, str, dict[str, np.ndarray]]] = []
    no_ca = 0
    atom_records = 0  # residues written as ATOM: a chain of HETATM records only is a ligand, not a protein
    unknown: dict[str, int] = {}
    for res in ch.first_conformer():  # two residue types at one position: the first, as Foldseek reads it
        if res.entity_type not in (gemmi.EntityType.Polymer, gemmi.EntityType.Unknown):
            continue  # ligands (a free amino acid too) and water
        if not _amino_acid(res.name):
            if res.het_flag == "H":  # inside the chain, but not a known amino acid
                unknown[res.name] = unknown.get(res.name, 0) + 1
            continue  # nucleotides and caps
        atoms: dict[str, np.ndarray] = {}
        for atom in res:  # the last alternate location of an atom wins
            if atom.name in BACKBONE:
                atoms[atom.name] = np.array([atom.pos.x, atom.pos.y, atom.pos.z], dtype=np.float32)
        if "CA" not in atoms:
            no_ca += 1
            continue
        kept.append((res.name, res.seqid.num, res.seqid.icode.strip(), atoms))
        atom_records += res.het_flag == "A"
    if not kept or not atom_records:
        return None
    names = [k[0] for k in kept]
    coords = {a: np.stack([k[3].get(a, np.full(3, np.nan, np.float32)) for k in kept]) for a in BACKBONE}
    notes = []
    keys = [(k[1], k[2]) for k in kept]
    repeats = len(keys) - len(set(keys))
    if repeats:
        notes.append(f"residue numbers repeat ({repeats} residues): numbering restarts; residues kept in file order")
    if unknown:
        notes.append("chain residues not in the residue table left out (as Foldseek does): "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(unknown.items())))
    if no_ca:
        notes.append(f"{no_ca} residues without a CA atom left out")
    missing = int(np.isnan(coords["N"]).any(1).sum() + np.isnan(coords["C"]).any(1).sum())
    if missing:
        notes.append(f"{missing} missing N/C backbone atoms (3Di invalid state there)")
    seq = "".join(residue_letter(n) for n in names)
    nonstd = sorted({n for n, c in zip(names, seq, strict=True) if c == "X" or n not in _STANDARD_NAMES})
    if nonstd:
        notes.append(f"non-standard residues {', '.join(nonstd)} "
                     f"read as {', '.join(f'{n}={residue_letter(n)}' for n in nonstd)}")
    return Chain(ch.name, names, [k[1] for k in kept], [k[2] for k in kept], seq, coords, notes)


_STANDARD_NAMES = {"ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET",
                   "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "SEC", "PYL"}


def _amino_acid(name: str) -> bool:
    import gemmi

    info = gemmi.find_tabulated_residue(name)
    return info is not None and info.is_amino_acid()
