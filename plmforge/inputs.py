"""Named per-residue model inputs: what feeds each keyword argument of a model's forward.

A model family names the inputs its backbone takes (input_ids, and for structure-token models a
structure column); a method may add inputs of its own that go to its adapter instead (the SES-Adapter's
structure tokens). Both are encoded the same way, aligned to the tokens, and padded per input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plmforge.errors import DataError

SEQUENCE = "sequence"  # the record field holding the amino-acid sequence

# Alphabets of the structure columns that `plmforge structure` writes (plmforge/structure/tokens.py)
THREE_DI = "ACDEFGHIKLMNPQRSTVWY"  # Foldseek's 3Di states (its invalid state is written as D)
SS8 = "HBEGITSL"  # DSSP's 8 states, L = coil (DSSP's blank; DSSP 4's P, polyproline II, is coil here)
SS3 = "HEL"  # helix, strand, coil (the 3-state fallback)
STRUCTURE_ALPHABETS = {"foldseek_seq": THREE_DI, "ss8_seq": SS8, "ss3_seq": SS3}


def first_non_3di(text: str) -> int | None:
    """The index of the first symbol that is neither a 3Di letter (either case) nor `#` (unknown), or None."""
    return next((k for k, c in enumerate(text) if c.upper() not in THREE_DI + "#"), None)


@dataclass(frozen=True)
class ModelInput:
    """One named per-residue input (a keyword argument of the backbone's or an adapter's forward).

    `source` is the record field that feeds it: the amino-acid `sequence` (tokenised by the family's
    tokenizer), or a data column with one token per residue, encoded as `offset + token`, where a token
    is a symbol's index in `alphabet` or, when `alphabet` is empty, a whole number written in the column
    (comma- or space-separated, as structure quantizers such as ProSST's write them). Special-token
    positions get `pad`, or with `specials` = (first, last) those values before and after the residues."""

    name: str
    source: str = SEQUENCE
    alphabet: str = ""
    offset: int = 0
    pad: int = 0
    specials: tuple[int, int] | None = None


def encode_symbols(spec: ModelInput, text: str, special: np.ndarray, row: str) -> np.ndarray:
    """One record's tokens at its residue positions (truncated with the sequence), the pad or special
    values elsewhere."""
    out = np.full(len(special), spec.pad, dtype=np.int64)
    residues = np.flatnonzero(~special)
    n = len(residues)
    if spec.specials is not None and n:
        out[: residues[0]] = spec.specials[0]
        out[residues[-1] + 1:] = spec.specials[1]
    if spec.alphabet:
        codes = []
        for pos, symbol in enumerate(text[:n]):
            k = spec.alphabet.find(symbol)
            if k < 0:
                raise DataError(f"unknown symbol {symbol!r} at position {pos + 1} of {len(text)}", file=row,
                                column=spec.source, hint=f"{spec.source} uses the symbols {spec.alphabet}")
            codes.append(spec.offset + k)
    else:
        tokens = text.split(",")
        if not all(t.isdigit() for t in tokens):
            raise DataError("expected whole-number tokens separated by commas or spaces", file=row,
                            column=spec.source, hint=f"{spec.source} holds one whole number per residue")
        if len(tokens) < n:
            raise DataError(f"{len(tokens)} whole-number tokens for {n} residues", file=row, column=spec.source,
                            hint=f"{spec.source} holds one whole number per residue, separated by commas or spaces")
        codes = [spec.offset + int(t) for t in tokens[:n]]
    out[residues] = codes
    return out
