"""The structure a structure-aware masked LM reads beside the wild type, one symbol per residue: Foldseek 3Di
letters for SaProt (from a PDB/mmCIF file through plmforge.structure, or given as a string with `#` where the
structure is unknown), ProSST's whole-number structure tokens (from ProSST's own quantizer, which plmforge
does not run: given as text or a file). Checked against the wild type residue by residue."""

from __future__ import annotations

import re
from pathlib import Path

from plmforge.errors import ConfigError, DataError
from plmforge.inputs import THREE_DI, first_non_3di

FOLDSEEK = "foldseek_seq"  # SaProt's structure field


def structure_symbols(field: str | None, wild_type: str, model_name: str, structure: str | Path | None = None,
                      chain: str | None = None, tokens: str | None = None) -> list[str] | None:
    """The symbols the model `model_name` (reading the structure field `field`, None: sequence only) takes at
    every residue of `wild_type`; None for a sequence-only model. Refused, naming the fix, when the model
    and what was given do not match."""
    if field is None:
        if structure is not None or tokens is not None:
            raise ConfigError(f"{model_name} reads sequences only: --structure and --structure-tokens are for "
                              "structure-aware models (SaProt, ProSST)")
        return None
    if structure is not None and tokens is not None:
        raise ConfigError("give the structure once: --structure FILE or --structure-tokens, not both")
    if field == FOLDSEEK:
        if structure is not None:
            letters = list(foldseek_letters(structure, chain, wild_type))
        elif tokens is not None:
            letters = list(_text(tokens).replace(" ", "").replace("\n", ""))
            bad = first_non_3di("".join(letters))
            if bad is not None:
                raise DataError(f"{letters[bad]!r} at position {bad + 1} is not a 3Di letter", file="--structure-tokens",
                                hint=f"3Di letters are {THREE_DI} (either case), # where the structure is unknown")
        else:
            raise ConfigError(f"{model_name} reads a Foldseek 3Di letter at every residue: give the structure as "
                              "--structure FILE (PDB/mmCIF; --chain to pick a chain) or --structure-tokens with "
                              "the 3Di string (# where unknown)")
        return _aligned(letters, wild_type, "3Di letters")
    if structure is not None:
        raise ConfigError(f"{model_name} reads its own structure tokens, made by ProSST's structure quantizer, which "
                          "plmforge does not run: give them with --structure-tokens (one whole number per residue, "
                          "comma- or space-separated, or a file holding them)")
    if tokens is None:
        raise ConfigError(f"{model_name} reads a structure token at every residue ({field}): give them with "
                          "--structure-tokens (one whole number per residue, or a file holding them)")
    parts = [p for p in re.split(r"[,\s]+", _text(tokens).strip().strip("[]")) if p]
    bad = next((k for k, p in enumerate(parts) if not p.isdigit()), None)
    if bad is not None:
        raise DataError(f"{parts[bad]!r} (token {bad + 1}) is not a whole number", file="--structure-tokens",
                        hint="one whole-number structure token per residue, separated by commas or spaces")
    return _aligned(parts, wild_type, "structure tokens")


def foldseek_letters(path: str | Path, chain: str | None, wild_type: str | None = None) -> str:
    """The 3Di string of one chain of a structure file, its sequence checked against `wild_type`."""
    found = read_chain(path, chain)
    if wild_type is not None and found.sequence != wild_type:
        raise DataError(_mismatch(wild_type, found.sequence), file=str(path),
                        hint="the structure must hold every residue of the wild type, in order; for a partial "
                             "structure give --structure-tokens with # where it has no residue")
    from plmforge.structure.tokens import foldseek_tokens

    return foldseek_tokens(found)


def read_chain(path: str | Path, chain: str | None):  # type: ignore[no-untyped-def]
    """One protein chain of a PDB/mmCIF file: the one named, or the only one."""
    from plmforge.structure.reader import StructureFileError, read_structure

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError("no such structure file", file=str(path), hint="give a PDB or mmCIF file")
    try:
        chains = read_structure(p).chains
    except StructureFileError as exc:
        raise DataError(str(exc), file=str(path)) from None
    names = [c.name for c in chains]
    if chain is not None:
        if chain not in names:
            raise DataError(f"no protein chain {chain!r}; its protein chains are {', '.join(names) or 'none'}",
                            file=str(path), hint="pick one with --chain")
        return chains[names.index(chain)]
    if len(chains) != 1:
        raise DataError(f"{len(chains)} protein chains ({', '.join(names)})", file=str(path),
                        hint="pick the wild type's chain with --chain")
    return chains[0]


def numbering_note(chain) -> str | None:  # type: ignore[no-untyped-def]
    """What a user should know when a chain's residues become a wild type numbered from 1: gaps in the
    structure's own numbering, or a first residue other than 1 (mutant positions count the chain's observed
    residues, not the file's numbers)."""
    numbers = list(chain.numbers)
    gaps = sum(1 for a, b in zip(numbers, numbers[1:]) if b - a > 1)
    if not gaps and numbers[:1] == [1]:
        return None
    return (f"chain {chain.name}: residues numbered {numbers[0]}-{numbers[-1]} in the file"
            + (f" with {gaps} gap{'s' if gaps != 1 else ''} (unresolved residues)" if gaps else "")
            + f"; positions here count its {len(numbers)} observed residues from 1")


def _text(tokens: str) -> str:
    """The tokens themselves, or the content of a file holding them."""
    p = Path(str(tokens)).expanduser()
    try:
        is_file = p.is_file()
    except OSError:  # (too long for a file name: the tokens themselves)
        is_file = False
    return p.read_text() if is_file else str(tokens)


def _aligned(symbols: list[str], wild_type: str, what: str) -> list[str]:
    if len(symbols) != len(wild_type):
        raise DataError(f"{len(symbols)} {what} for a wild type of {len(wild_type)} residues",
                        file="--structure-tokens", hint="give one per residue of the wild type")
    return symbols


def _mismatch(wild_type: str, chain: str) -> str:
    first = next((k for k, (a, b) in enumerate(zip(wild_type, chain)) if a != b), min(len(wild_type), len(chain)))
    return (f"the chain's sequence ({len(chain)} residues) differs from the wild type ({len(wild_type)} residues) "
            f"first at position {first + 1} (wild type {wild_type[first:first + 1] or 'end'}, structure "
            f"{chain[first:first + 1] or 'end'})")
