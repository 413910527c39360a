"""Batching and PTM-aware masking for PTM-Mamba: length-sorted token-budget batches, padding, and the
masked-LM corruption that selects PTM tokens with their own probability."""

from __future__ import annotations

import numpy as np
import torch

from plmforge.ptm.tokens import SPECIALS, PtmTokenizer


def batches(lengths: np.ndarray, size: int, max_tokens: int, rng: np.random.Generator | None) -> list[list[int]]:
    """Length-sorted batches of at most `size` sequences and `max_tokens` padded tokens; shuffled when
    `rng` is given."""
    order = np.argsort(lengths, kind="stable")
    out, cur, longest = [], [], 0
    for i in order:
        longest_new = max(longest, int(lengths[i]))
        if cur and (len(cur) >= size or longest_new * (len(cur) + 1) > max_tokens):
            out.append(cur)
            cur, longest_new = [], int(lengths[i])
        cur.append(int(i))
        longest = longest_new
    if cur:
        out.append(cur)
    if rng is not None:
        rng.shuffle(out)
    return out


def collate(seqs: list[np.ndarray], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.from_numpy(s)
        mask[r, :len(s)] = 1
    return ids, mask


def mask_tokens(ids: torch.Tensor, mask: torch.Tensor, tok: PtmTokenizer, aa_prob: float, ptm_prob: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """PTM-aware masking: amino acids are chosen with `aa_prob`, PTM tokens with `ptm_prob`; of those
    80 % become <mask>, 10 % a random token, 10 % stay. Returns (inputs, labels with -100 elsewhere)."""
    is_ptm = ids >= tok.first_ptm
    prob = torch.where(is_ptm, ptm_prob, aa_prob) * mask
    chosen = torch.rand(ids.shape, generator=gen) < prob
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=gen)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = tok.mask_id
    random_ids = torch.randint(len(SPECIALS), len(tok), ids.shape, generator=gen)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels
