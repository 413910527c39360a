"""Tokenising by table: protein tokenizers give every residue one token of its own, so a sequence's
ids are the special tokens before, one id per residue, and the special tokens after. Looking residues
up in a table of 128 ids gives the same ids as the tokenizer (ESM's Python tokenizer takes about a
millisecond per sequence; the table, microseconds) — a million-row dataset tokenises in seconds.

The table is only used when it is exact: it is built from the tokenizer itself (every letter alone),
checked on a text holding every triple of letters (a tokenizer that merges residues shows it there),
and every chunk's first sequence is compared with the tokenizer's own output; any difference turns the
table off for that tokenizer and the tokenizer is used."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("plmforge")

LETTERS = "ACDEFGHIKLMNPQRSTVWYBZUOX"  # what validated sequences hold (plmforge.data.validate)
_TABLES: weakref.WeakKeyDictionary[Any, ResidueTable | None] = weakref.WeakKeyDictionary()


def _call(tokenizer: Any, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    out = tokenizer(texts, return_special_tokens_mask=True, add_special_tokens=True, truncation=False)
    return ([np.asarray(x, dtype=np.int64) for x in out["input_ids"]],
            [np.asarray(x, dtype=bool) for x in out["special_tokens_mask"]])


@dataclass(frozen=True)
class ResidueTable:
    ids: np.ndarray  # int64[128]: the token of each residue letter (ASCII code), -1 where there is none
    prefix: np.ndarray  # special tokens before the residues
    suffix: np.ndarray  # and after

    def encode(self, seq: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, special mask), or None when a letter has no entry."""
        try:
            codes = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            return None
        residues = self.ids[codes]
        if (residues < 0).any():
            return None
        ids = np.concatenate([self.prefix, residues, self.suffix])
        special = np.zeros(len(ids), dtype=bool)
        special[:len(self.prefix)] = True
        special[len(ids) - len(self.suffix):] = True
        return ids, special


def every_triple(letters: str) -> str:
    """A de Bruijn sequence: every run of three letters appears once (15,627 letters for 25), so a
    tokenizer that would merge any pair or triple of residues shows it on this one text."""
    k, n = len(letters), 3
    a = [0] * (k * n)
    out: list[int] = []

    def db(t: int, p: int) -> None:
        if t > n:
            if n % p == 0:
                out.extend(a[1:p + 1])
        else:
            a[t] = a[t - p]
            db(t + 1, p)
            for j in range(a[t - p] + 1, k):
                a[t] = j
                db(t + 1, t)

    db(1, 1)
    return "".join(letters[i] for i in out + out[:n - 1])


def build(tokenizer: Any, prepare: Callable[[str], str], quiet: Callable[[], Any] = nullcontext) -> ResidueTable | None:
    """The table for this tokenizer and the family's text preparation (`prepare`: residues -> the
    tokenizer's text), or None when some residue is not one token of its own. `quiet`: a context that
    silences the tokenizer's warnings (the check text is longer than any model takes)."""
    try:
        row = every_triple(LETTERS)
        with quiet():
            alone_ids, alone_special = _call(tokenizer, [prepare(c) for c in LETTERS])
            row_ids, row_special = _call(tokenizer, [prepare(row)])
    except Exception as exc:  # a tokenizer that cannot take these texts: the tokenizer path decides
        log.debug("no residue table: %s", exc)
        return None
    unk = getattr(tokenizer, "unk_token_id", None)
    table = np.full(128, -1, dtype=np.int64)
    prefix = suffix = None
    for c, ids, special in zip(LETTERS, alone_ids, alone_special, strict=True):
        residue = np.flatnonzero(~special | (ids == unk)) if unk is not None else np.flatnonzero(~special)
        if len(residue) != 1:
            return None
        k = int(residue[0])
        if prefix is None:
            prefix, suffix = ids[:k], ids[k + 1:]
        elif not (np.array_equal(prefix, ids[:k]) and np.array_equal(suffix, ids[k + 1:])):
            return None
        table[ord(c)] = ids[k]
    assert prefix is not None and suffix is not None
    result = ResidueTable(table, prefix, suffix)
    encoded = result.encode(row)
    if encoded is None or not np.array_equal(encoded[0], row_ids[0]) or not _same_special(encoded, row_ids[0],
                                                                                          row_special[0], unk):
        return None
    return result


def _same_special(encoded: tuple[np.ndarray, np.ndarray], ids: np.ndarray, special: np.ndarray,
                  unk: int | None) -> bool:
    theirs = special & (ids != unk) if unk is not None else special
    return bool(np.array_equal(encoded[1], theirs))


def table_for(tokenizer: Any, prepare: Callable[[str], str],
              quiet: Callable[[], Any] = nullcontext) -> ResidueTable | None:
    """The tokenizer's table, built once (None: use the tokenizer)."""
    try:
        if tokenizer in _TABLES:
            return _TABLES[tokenizer]
    except TypeError:  # not weak-referenceable: build every time
        return build(tokenizer, prepare, quiet)
    _TABLES[tokenizer] = table = build(tokenizer, prepare, quiet)
    return table


def agrees(table: ResidueTable, tokenizer: Any, prepare: Callable[[str], str], seq: str) -> bool:
    """Whether the table encodes `seq` exactly as the tokenizer does; if not, the table is dropped."""
    mine = table.encode(seq)
    ids, special = _call(tokenizer, [prepare(seq)])
    unk = getattr(tokenizer, "unk_token_id", None)
    same = mine is not None and np.array_equal(mine[0], ids[0]) and _same_special(mine, ids[0], special[0], unk)
    if not same:
        log.info("the residue table disagrees with the tokenizer on a sequence; tokenising with the tokenizer")
        try:
            _TABLES[tokenizer] = None
        except TypeError:
            pass
    return same
