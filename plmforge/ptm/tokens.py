"""PTM-aware sequences: amino acids plus post-translational modifications written as `<Name>` tokens
(UniProt's modified-residue names) in place of the modified residue, e.g. `MK<Phosphoserine>PE`.

The tokenizer parses by longest match (a name that is a prefix of another never wins over it), decodes
back to the same text, and names the row and position of anything it does not know."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from plmforge.errors import DataError

SPECIALS = ("<pad>", "<cls>", "<eos>", "<mask>", "<unk>")
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWYXUOBZ"

# UniProt modified-residue names (feature MOD_RES, CARBOHYD, CROSSLNK, LIPID) -> the residues they modify
DEFAULT_PTMS: dict[str, str] = {
    "Phosphoserine": "S", "Phosphothreonine": "T", "Phosphotyrosine": "Y", "Phosphohistidine": "H",
    "N6-acetyllysine": "K", "N6-methyllysine": "K", "N6,N6-dimethyllysine": "K", "N6,N6,N6-trimethyllysine": "K",
    "N6-succinyllysine": "K", "N6-malonyllysine": "K", "N6-crotonyllysine": "K", "N6-(2-hydroxyisobutyryl)lysine": "K",
    "Omega-N-methylarginine": "R", "Asymmetric dimethylarginine": "R", "Symmetric dimethylarginine": "R",
    "Citrulline": "R", "N-acetylmethionine": "M", "N-acetylalanine": "A", "N-acetylserine": "S",
    "N-acetylthreonine": "T", "N-acetylglycine": "G", "N-acetylvaline": "V", "N-acetylproline": "P",
    "N-linked (GlcNAc...) asparagine": "N", "O-linked (GlcNAc) serine": "S", "O-linked (GlcNAc) threonine": "T",
    "S-palmitoyl cysteine": "C", "N-myristoyl glycine": "G", "S-nitrosocysteine": "C", "Cysteine sulfenic acid (-SOH)": "C",
    "4-hydroxyproline": "P", "5-hydroxylysine": "K", "Sulfotyrosine": "Y", "Pyrrolidone carboxylic acid": "QE",
    "Glycyl lysine isopeptide (Lys-Gly) (interchain with G-Cter in ubiquitin)": "K",
    "Glycyl lysine isopeptide (Lys-Gly) (interchain with G-Cter in SUMO2)": "K",
    "Glycyl lysine isopeptide (Lys-Gly) (interchain with G-Cter in SUMO1)": "K",
    "ADP-ribosylserine": "S", "Deamidated asparagine": "N", "Deamidated glutamine": "Q",
}


@dataclass
class PtmTokenizer:
    """Token ids: the specials, the amino acids, then one id per PTM name (defaults + `extra`)."""

    ptms: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PTMS))

    def __post_init__(self) -> None:
        self.tokens = list(SPECIALS) + list(AMINO_ACIDS) + [f"<{name}>" for name in self.ptms]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a PTM name is given twice")
        self._by_length = sorted((f"<{n}>" for n in self.ptms), key=len, reverse=True)
        self.first_ptm = len(SPECIALS) + len(AMINO_ACIDS)

    @classmethod
    def with_extra(cls, extra: dict[str, str] | None = None) -> PtmTokenizer:
        ptms = dict(DEFAULT_PTMS)
        for name, residues in (extra or {}).items():
            if "<" in name or ">" in name or not name.strip():
                raise ValueError(f"a PTM name must be plain text without < or >: {name!r}")
            if not residues or any(r not in AMINO_ACIDS for r in residues):
                raise ValueError(f"PTM {name!r}: give the residue(s) it modifies as amino-acid letters, got {residues!r}")
            ptms[name] = residues
        return cls(ptms)

    @property
    def pad_id(self) -> int:
        return self.index["<pad>"]

    @property
    def mask_id(self) -> int:
        return self.index["<mask>"]

    def __len__(self) -> int:
        return len(self.tokens)

    def is_ptm(self, ids: np.ndarray) -> np.ndarray:
        return ids >= self.first_ptm

    def tokenize(self, text: str, row: str = "input") -> list[str]:
        out, i = [], 0
        while i < len(text):
            c = text[i]
            if c == "<":
                match = next((t for t in self._by_length if text.startswith(t, i)), None)
                if match is None:
                    end = text.find(">", i)
                    shown = text[i:end + 1] if end >= 0 else text[i:i + 30]
                    raise DataError(f"unknown PTM token {shown!r} at position {i + 1}", file=row,
                                    hint="known PTM names are UniProt's (e.g. <Phosphoserine>); add your own with "
                                         "ptm_tokens in the config")
                out.append(match)
                i += len(match)
            elif c.upper() in AMINO_ACIDS:
                out.append(c.upper())
                i += 1
            elif c.isspace():
                i += 1
            else:
                raise DataError(f"unknown character {c!r} at position {i + 1}", file=row,
                                hint=f"residues are {AMINO_ACIDS}; modifications are written <Name>")
        return out

    def encode(self, text: str, row: str = "input") -> np.ndarray:
        return np.asarray([self.index[t] for t in self.tokenize(text, row)], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids if int(i) >= len(SPECIALS))

    def parent(self, token: str) -> str:
        """The residue a token stands on (a PTM's first listed residue; an amino acid itself)."""
        return self.ptms[token[1:-1]][0] if token.startswith("<") else token


def sites_to_ptm_seq(sites, ptms: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A site table (columns accession, sequence, position [1-based], modification) -> one row per
    accession with `ptm_seq`; each modified residue must be one the modification applies to."""
    import pandas as pd

    ptms = ptms or DEFAULT_PTMS
    need = {"accession", "sequence", "position", "modification"}
    missing = need - set(sites.columns)
    if missing:
        raise DataError(f"the site table lacks columns {sorted(missing)}", hint=f"columns needed: {sorted(need)}")
    rows = []
    for acc, group in sites.groupby("accession", sort=False):
        seqs = set(group["sequence"])
        if len(seqs) != 1:
            raise DataError(f"accession {acc} has {len(seqs)} different sequences", column="sequence")
        seq = list(next(iter(seqs)))
        done: dict[int, str] = {}
        for i, site in group.iterrows():
            pos, mod = int(site["position"]), str(site["modification"])
            where = f"site table row {i + 2} (accession {acc}, position {pos})"
            if mod not in ptms:
                raise DataError(f"unknown modification {mod!r}", file=where,
                                hint="use UniProt's modified-residue names, or add it to the PTM list")
            if not 1 <= pos <= len(seq):
                raise DataError(f"position {pos} is outside the {len(seq)}-residue sequence (1-based)", file=where)
            if pos in done:
                raise DataError(f"position {pos} is modified twice ({done[pos]} and {mod})", file=where)
            residue = seq[pos - 1]
            if residue not in ptms[mod]:
                raise DataError(f"{mod} modifies {'/'.join(ptms[mod])}, but residue {pos} is {residue}", file=where)
            done[pos] = mod
            seq[pos - 1] = f"<{mod}>"
        rows.append({"accession": acc, "ptm_seq": "".join(seq)})
    return pd.DataFrame(rows)
