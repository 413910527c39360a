"""Tokenising by table gives exactly the tokenizer's ids and special masks (tiny ESM, BERT and T5
tokenizers and the real AntiBERTy one, with rare and unknown residues and truncation), and is not used
where a tokenizer does not give each residue a token of its own."""

from __future__ import annotations

import numpy as np
import pytest

from plmforge.config import load_config
from plmforge.models import residue_tokens
from plmforge.models.build import load_run_backbone
from plmforge.models.families import FAMILIES

LETTERS = list(residue_tokens.LETTERS)


def _sequences(n: int = 600) -> list[str]:
    rng = np.random.default_rng(0)
    return ["".join(rng.choice(LETTERS, int(rng.integers(1, 70)))) for _ in range(n)]


def _both(family, tokenizer, seqs, limit=50):  # type: ignore[no-untyped-def]
    residue_tokens._TABLES.pop(tokenizer, None)
    fast = family._tokenise(tokenizer, seqs, limit, None, chunk=128)
    used = residue_tokens._TABLES.get(tokenizer) is not None
    residue_tokens._TABLES[tokenizer] = None  # the tokenizer itself
    slow = family._tokenise(tokenizer, seqs, limit, None, chunk=128)
    residue_tokens._TABLES.pop(tokenizer, None)
    return fast, slow, used


def _equal(a, b) -> None:  # type: ignore[no-untyped-def]
    (name,) = a.inputs
    assert len(a.inputs[name]) == len(b.inputs[name])
    for x, y, sx, sy in zip(a.inputs[name], b.inputs[name], a.special, b.special, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y) and np.array_equal(sx, sy)
    assert (a.n_truncated, a.n_unknown, a.rare_mapped) == (b.n_truncated, b.n_unknown, b.rare_mapped)


@pytest.mark.parametrize("family", ["esm", "bert", "t5", "antiberty"])
def test_the_table_gives_the_tokenizers_ids(tiny_models, family):
    name = "antiberty" if family == "antiberty" else str(tiny_models[family])
    backbone = load_run_backbone(load_config(None, [f"model.name={name}", "data.train=x.csv"]))
    fast, slow, used = _both(backbone.family, backbone.tokenizer, _sequences())
    assert used  # these tokenizers give every residue one token
    _equal(fast, slow)
    if family == "antiberty":
        assert fast.n_unknown > 0  # AntiBERTy has no X: fed as the unknown token, counted the same


class _PerResidue:
    """A toy tokenizer: [1] + one token per residue + [2], with `rule` to change that."""

    unk_token_id = 0

    def rule(self, text: str, toks: list[int]) -> list[int]:
        return toks

    def __call__(self, texts, **_):  # type: ignore[no-untyped-def]
        ids = [[1, *self.rule(t, [100 + ord(c) for c in t]), 2] for t in texts]
        return {"input_ids": ids, "special_tokens_mask": [[1] + [0] * (len(x) - 2) + [1] for x in ids]}


class _Pairs(_PerResidue):
    """'AC' is one token: residues are not one token each."""

    def rule(self, text, toks):  # type: ignore[no-untyped-def]
        out, i = [], 0
        while i < len(text):
            out.append(5 if text[i:i + 2] == "AC" else toks[i])
            i += 2 if text[i:i + 2] == "AC" else 1
        return out


class _Triples(_PerResidue):
    """The residue after 'KRK' gets another token (a rule on three residues)."""

    def rule(self, text, toks):  # type: ignore[no-untyped-def]
        return [9 if k >= 3 and text[k - 3:k] == "KRK" else x for k, x in enumerate(toks)]


class _Moody(_PerResidue):
    """The fourth W of 'WWWW' gets another token (a rule on four residues)."""

    def rule(self, text, toks):  # type: ignore[no-untyped-def]
        return [7 if k >= 3 and text[k - 3:k + 1] == "WWWW" else x for k, x in enumerate(toks)]


def test_every_triple_appears_once():
    text = residue_tokens.every_triple(residue_tokens.LETTERS)
    triples = [text[i:i + 3] for i in range(len(text) - 2)]
    assert len(triples) == len(set(triples)) == 25 ** 3


def test_a_tokenizer_that_merges_residues_gets_no_table():
    assert residue_tokens.build(_Pairs(), lambda s: s) is None
    assert residue_tokens.build(_Triples(), lambda s: s) is None  # seen on the text with every triple
    assert residue_tokens.build(_Moody(), lambda s: s) is not None  # a rule on four residues: caught per chunk


def test_a_disagreement_turns_the_table_off_and_the_tokenizer_decides():
    family = FAMILIES["esm"]
    tok = _Moody()
    seqs = [*_sequences(128), "WWWWAC", *_sequences(300)]  # the second chunk starts with the rule
    fast, slow, used = _both(family, tok, seqs)
    _equal(fast, slow)
    assert fast.inputs["input_ids"][128].tolist() == [1, 187, 187, 187, 7, 165, 167, 2]
    assert not used  # turned off at the second chunk
