"""Zero-shot scores of substitutions from a masked language model.

- masked marginal: the site masked, log p(mutant) - log p(wild type) there (the scoring the ESM-1v paper found
  best); one forward pass per site, all sites of a scan batched by a token budget;
- wild-type marginal: the same difference read from one unmasked pass over the wild type (one pass per window);
- pseudo-log-likelihood (pll): sum over every position of log p(residue | that position masked), of the
  variant minus of the wild type; exact for multiple substitutions, but one pass per residue per sequence.

Marginal scores of a variant with several substitutions are the sum of its sites' scores (each read in the
wild-type context). A sequence longer than the model takes is read in windows of the model's length: for a
masked site, the window centred on the site (clipped at the ends); for wild-type marginals, windows every half
length, each site read in the one where it lies most central.

Structure-aware models read a structure token at every residue beside it (`structure`: one symbol per residue,
windowed with the sequence): SaProt's tokens pair a residue with its Foldseek 3Di letter, and a masked site keeps
its letter (`#d`: residue unknown, structure known); an amino acid's probability there is the sum over its tokens
with every structure letter (SaProt's own scoring);
ProSST takes its structure tokens as a second input, left whole when a residue is masked.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from plmforge.errors import ConfigError
from plmforge.mutate.lm import MaskedLM, MaskedLMEnsemble, Site, Tokens
from plmforge.data.notation import AMINO_ACIDS, Substitution, apply

log = logging.getLogger("plmforge")
Scorer = MaskedLM | MaskedLMEnsemble  # one masked LM, or several averaged site by site
SCORINGS = ("masked_marginal", "wt_marginal", "pll")
INDEX = {a: i for i, a in enumerate(AMINO_ACIDS)}


def _centred(n: int, width: int, site: int) -> int:
    """Start of the window of `width` residues around 0-based `site` in a sequence of n."""
    return 0 if n <= width else min(max(site - width // 2, 0), n - width)


def _most_central(n: int, width: int, site: int) -> int:
    if n <= width:
        return 0
    starts = sorted(set(range(0, n - width + 1, max(width // 2, 1))) | {n - width})
    return min(starts, key=lambda s: (abs(site - (s + width / 2)), s))


class _Windows:
    """Tokens of windows of one sequence (and its structure symbols), encoded once each."""

    def __init__(self, lm: Scorer, sequence: str, width: int, structure: list[str] | None) -> None:
        self.lm, self.sequence, self.width, self.structure = lm, sequence, width, structure
        self._cache: dict[int, Tokens] = {}

    def __call__(self, start: int) -> Tokens:
        if start not in self._cache:
            end = start + self.width
            self._cache[start] = self.lm.encode(self.sequence[start:end],
                                                None if self.structure is None else self.structure[start:end])
        return self._cache[start]


def site_log_probs(lm: Scorer, sequence: str, positions: list[int], scoring: str, *, max_tokens: int | None = None,
                   window: int | None = None, progress: Any = None, structure: list[str] | None = None) -> np.ndarray:
    """(len(positions), 20) log-probabilities of the 20 amino acids at each 1-based position: with the site
    masked (masked_marginal, pll) or from the unmasked wild type (wt_marginal)."""
    width = min(window or lm.max_residues, lm.max_residues)
    n = len(sequence)
    windows = _Windows(lm, sequence, width, structure)
    if scoring == "wt_marginal":
        groups: dict[int, list[int]] = {}
        for k, p in enumerate(positions):
            groups.setdefault(_most_central(n, width, p - 1), []).append(k)
        items, order = [], []
        for start, ks in groups.items():
            tok = windows(start)
            at = np.array([positions[k] - 1 - start for k in ks])
            items.append(Site(tok.ids, tok.extra, tok.where[at], tok.candidates[at]))
            order.append(ks)
        parts = lm.site_log_probs(items, max_tokens, progress)
        out = np.empty((len(positions), len(AMINO_ACIDS)))
        for ks, part in zip(order, parts, strict=True):
            out[ks] = part
        return out
    items = []
    for p in positions:
        start = _centred(n, width, p - 1)
        tok = windows(start)
        masked = tok.ids.copy()
        token = tok.where[p - 1 - start]
        masked[token] = tok.masks[p - 1 - start]  # (SaProt: the residue hidden, its 3Di letter kept)
        items.append(Site(masked, tok.extra, np.array([token]), tok.candidates[[p - 1 - start]]))
    return np.concatenate(lm.site_log_probs(items, max_tokens, progress)) if items else np.empty((0, 20))


def marginal_matrix(lm: Scorer, sequence: str, positions: list[int], scoring: str, **kw: Any) -> np.ndarray:
    """(len(positions), 20): log p(a) - log p(wild type) at each position, by masked or wild-type marginals."""
    if scoring not in ("masked_marginal", "wt_marginal"):
        raise ConfigError(f"marginal_matrix takes masked_marginal or wt_marginal, not {scoring!r}")
    lp = site_log_probs(lm, sequence, positions, scoring, **kw)
    wt = np.array([INDEX[sequence[p - 1]] for p in positions])
    return lp - lp[np.arange(len(positions)), wt][:, None]


def pseudo_log_likelihoods(lm: Scorer, sequences: list[str], *, max_tokens: int | None = None,
                           window: int | None = None, progress: Any = None,
                           structure: list[str] | None = None) -> np.ndarray:
    """Sum over positions of log p(residue | its position masked), per sequence (residues other than the 20
    amino acids, e.g. X, are left out of the sum)."""
    out = np.zeros(len(sequences))
    for i, seq in enumerate(sequences):
        positions = [k + 1 for k, a in enumerate(seq) if a in INDEX]
        lp = site_log_probs(lm, seq, positions, "pll", max_tokens=max_tokens, window=window, progress=progress,
                            structure=structure)
        out[i] = float(lp[np.arange(len(positions)), [INDEX[seq[p - 1]] for p in positions]].sum())
    return out


def score_variants(lm: Scorer, wild_type: str, variants: list[tuple[Substitution, ...]], scoring: str, *,
                   max_tokens: int | None = None, window: int | None = None, progress: Any = None,
                   structure: list[str] | None = None) -> np.ndarray:
    """One score per variant (higher = predicted fitter than the wild type). Wild-type letters must have
    been checked against `wild_type` (notation.check_against)."""
    if scoring not in SCORINGS:
        raise ConfigError(f"unknown scoring {scoring!r}; choose from {', '.join(SCORINGS)}")
    if scoring == "pll":
        mutants = sorted({apply(v, wild_type) for v in variants})
        values = pseudo_log_likelihoods(lm, [wild_type, *mutants], max_tokens=max_tokens, window=window,
                                        progress=progress, structure=structure)  # (substitutions: one structure)
        by_seq = dict(zip(mutants, values[1:], strict=True))
        return np.array([by_seq[apply(v, wild_type)] - values[0] for v in variants])
    positions = sorted({s.position for v in variants for s in v})
    bad = [p for p in positions if wild_type[p - 1] not in INDEX]
    if bad:
        raise ConfigError(f"the wild type has {wild_type[bad[0] - 1]!r} at position {bad[0]}: marginal scores need "
                          "one of the 20 amino acids at every mutated site")
    matrix = marginal_matrix(lm, wild_type, positions, scoring, max_tokens=max_tokens, window=window,
                             progress=progress, structure=structure)
    row = {p: k for k, p in enumerate(positions)}
    return np.array([sum(matrix[row[s.position], INDEX[s.mt]] for s in v) for v in variants])
