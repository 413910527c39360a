"""Mutant notation as ProteinGym and most deep mutational scans write it: wild-type letter, 1-based
position, mutant letter (`A42G`); several substitutions of one variant joined by `:` (`A42G:K50R`). Used by
zero-shot scoring (plmforge.mutate) and by training data given as mutants of a wild type
(data.mutant_column with data.wild_type)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from plmforge.errors import DataError

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_ONE = re.compile(r"^([A-Z])(\d+)([A-Z])$")


@dataclass(frozen=True, order=True)
class Substitution:
    position: int  # 1-based
    wt: str
    mt: str

    @property
    def name(self) -> str:
        return f"{self.wt}{self.position}{self.mt}"


def parse_variant(text: str, where: str = "mutant") -> tuple[Substitution, ...]:
    """`A42G` or `A42G:K50R` (spaces around parts ignored); each site at most once, each letter one of the
    20 amino acids."""
    parts = [p.strip() for p in str(text).strip().split(":")]
    if not parts or any(not p for p in parts):
        raise DataError(f"empty substitution in {text!r}", file=where,
                        hint="write substitutions as A42G, several of one variant joined by ':' (A42G:K50R)")
    subs = []
    for part in parts:
        m = _ONE.match(part.upper())
        if m is None:
            raise DataError(f"{part!r} is not a substitution", file=where,
                            hint="wild-type letter, 1-based position, mutant letter, e.g. A42G")
        wt, pos, mt = m.group(1), int(m.group(2)), m.group(3)
        for letter in (wt, mt):
            if letter not in AMINO_ACIDS:
                raise DataError(f"{part!r}: {letter!r} is not one of the 20 amino acids ({AMINO_ACIDS})", file=where)
        if pos < 1:
            raise DataError(f"{part!r}: positions start at 1", file=where)
        subs.append(Substitution(pos, wt, mt))
    positions = [s.position for s in subs]
    if len(set(positions)) != len(positions):
        raise DataError(f"{text!r} names one position twice", file=where, hint="one substitution per site")
    return tuple(sorted(subs))


def check_against(subs: tuple[Substitution, ...], sequence: str, where: str = "mutant") -> None:
    """Every wild-type letter must be the sequence's letter at that position."""
    for s in subs:
        if s.position > len(sequence):
            raise DataError(f"{s.name}: position {s.position} is beyond the wild type's {len(sequence)} residues",
                            file=where, hint="positions are 1-based and count the wild-type sequence given")
        have = sequence[s.position - 1]
        if have != s.wt:
            raise DataError(f"{s.name}: the wild type has {have!r} at position {s.position}, not {s.wt!r}",
                            file=where, hint="check that the mutant list and the wild-type sequence belong together "
                                             "(and that positions are 1-based, without an offset)")


def apply(subs: tuple[Substitution, ...], sequence: str) -> str:
    out = list(sequence)
    for s in subs:
        out[s.position - 1] = s.mt
    return "".join(out)


def variant_name(subs: tuple[Substitution, ...]) -> str:
    return ":".join(s.name for s in subs)


def parse_positions(text: str | None, length: int) -> list[int]:
    """`10-40,55,60-62` (1-based, inclusive) as sorted positions; None = every position."""
    if text is None or not str(text).strip():
        return list(range(1, length + 1))
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.match(r"^(\d+)(?:-(\d+))?$", part)
        if m is None:
            raise DataError(f"--positions: {part!r} is not a position or a range", hint="e.g. 10-40,55 (1-based)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if a < 1 or b < a or b > length:
            raise DataError(f"--positions: {part!r} is outside 1-{length} (the sequence's residues) or reversed")
        out.update(range(a, b + 1))
    return sorted(out)


def one_sequence(sequence: str | None, fasta: str | Path | None, where: str) -> tuple[str, str]:
    """(name, sequence) of one protein given as itself or as a one-record FASTA file: upper-cased, white space
    removed, every character checked to be a residue letter."""
    name = "sequence"
    if fasta is not None:
        from plmforge.data.readers import read_fasta

        table = read_fasta(Path(fasta).expanduser(), "sequence")
        if len(table.df) != 1:
            raise DataError(f"{len(table.df)} records; a wild type is one protein", file=str(fasta),
                            hint="put the wild type alone in its FASTA file")
        name, sequence, where = str(table.df["id"].iloc[0]), str(table.df["sequence"].iloc[0]), str(fasta)
    seq = "".join(str(sequence or "").split()).upper()
    if not seq:
        raise DataError("the wild-type sequence is empty", file=where,
                        hint="give the sequence, or a FASTA file holding it")
    bad = re.search(r"[^A-Z]", seq)
    if bad is not None:
        raise DataError(f"the wild type is not a protein sequence: {bad.group()!r} at position {bad.start() + 1} is "
                        "not a residue letter", file=where)
    return name, seq


def read_wild_type(value: str, where: str = "data.wild_type") -> str:
    """data.wild_type: the sequence itself, or a FASTA file holding it (a path that does not exist is read as
    a sequence)."""
    path = Path(str(value).strip()).expanduser()
    seq = one_sequence(None, path, where)[1] if path.is_file() else one_sequence(value, None, where)[1]
    if len(seq) < 2:
        raise DataError("the wild type is not a protein sequence (a single letter)", file=where,
                        hint="data.wild_type takes the sequence itself or a FASTA file")
    return seq


def variant_sequence(text: str, wild_type: str, where: str) -> str:
    """The sequence of a variant written in mutant notation, its wild-type letters checked."""
    subs = parse_variant(text, where)
    check_against(subs, wild_type, where)
    return apply(subs, wild_type)
