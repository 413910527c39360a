"""Named per-residue model inputs: what feeds each keyword argument of a model's forward.

A model family names the inputs its backbone takes (input_ids, and for structure-token models a
structure column); a method may add inputs of its own that go to its adapter instead (the SES-Adapter's
structure tokens). Both are encoded the same way, aligned to the tokens, and padded per input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plmforge.errors import DataError

SEQUENCE = "sequence"  # the record field holding the amino-acid sequence


@dataclass(frozen=True)
class ModelInput:
    """One named per-residue input (a keyword argument of the backbone's or an adapter's forward).

    `source` is the record field that feeds it: the amino-acid `sequence` (tokenised by the family's
    tokenizer), or a data column of per-residue symbols (e.g. structure tokens), one symbol per residue,
    encoded as `offset + alphabet.index(symbol)` and `pad` at special-token and padding positions."""

    name: str
    source: str = SEQUENCE
    alphabet: str = ""
    offset: int = 0
    pad: int = 0


def encode_symbols(spec: ModelInput, text: str, special: np.ndarray, row: str) -> np.ndarray:
    """One record's symbols at its residue tokens (truncated with the sequence), `pad` elsewhere."""
    out = np.full(len(special), spec.pad, dtype=np.int64)
    n = int((~special).sum())
    codes = []
    for pos, symbol in enumerate(text[:n]):
        k = spec.alphabet.find(symbol)
        if k < 0:
            raise DataError(f"unknown symbol {symbol!r} at position {pos + 1} of {len(text)}", file=row,
                            column=spec.source, hint=f"{spec.source} uses the symbols {spec.alphabet}")
        codes.append(spec.offset + k)
    out[~special] = codes
    return out
