"""Prediction heads, registered by their `head.pooling` name. Sequence heads pool over residue tokens
only: padding and the backbone's special tokens are masked out everywhere (means, softmaxes,
max-pools and convolutions), so a sequence's prediction does not depend on the batch it is in. The
per-residue head predicts at every token; the loss and metrics count residue tokens only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from plmforge.errors import ConfigError
from plmforge.registry import Registry


@dataclass(frozen=True)
class HeadSpec:
    name: str
    build: type[nn.Module]  # (in_dim, hidden, out_dim, dropout) -> module
    per_residue: bool  # one prediction per residue (else one per sequence)
    description: str
    pooled_input: bool = False  # can start from a stored pooled vector (`from_pooled`)


HEADS: Registry[HeadSpec] = Registry("head")


def register_head(name: str, per_residue: bool = False, pooled_input: bool = False):
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        HEADS.register(name, HeadSpec(name, cls, per_residue, (cls.__doc__ or "").strip().split("\n")[0],
                                      pooled_input))
        return cls

    return wrap


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # x (B, L, D), mask (B, L) -> (B, D)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # scores (B, L) or (B, C, L); mask (B, L)
    m = mask if scores.dim() == 2 else mask.unsqueeze(1)
    scores = scores.masked_fill(~m, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


@register_head("mean", pooled_input=True)
class MeanPoolHead(nn.Module):
    """Masked mean over residue embeddings, then a two-layer MLP."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = _mlp(in_dim, hidden, out_dim, dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(masked_mean(hidden, mask))  # (B, out)

    def from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """From precomputed mean vectors (B, D), e.g. read from the embedding store."""
        return self.mlp(pooled)


@register_head("attention1d")
class Attention1dHead(nn.Module):
    """A 1-D convolution scores every residue; the masked softmax of the scores weights the sum."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float, kernel: int = 9) -> None:
        super().__init__()
        self.score = nn.Conv1d(in_dim, 1, kernel, padding=kernel // 2)
        self.mlp = _mlp(in_dim, hidden, out_dim, dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = hidden * mask.unsqueeze(-1).to(hidden.dtype)  # zero padding so the conv cannot see it
        scores = self.score(x.transpose(1, 2)).squeeze(1)  # (B, L)
        weights = masked_softmax(scores, mask)  # (B, L)
        pooled = torch.bmm(weights.unsqueeze(1), x).squeeze(1)  # (B, D)
        return self.mlp(pooled)


@register_head("light_attention")
class LightAttentionHead(nn.Module):
    """Light attention (Staerk et al. 2021): value and attention convolutions; the attention-weighted
    sum is concatenated with a max-pool of the values taken over residues only. LayerNorm replaces
    the paper's BatchNorm so that batches of one sequence (token budgets) train the same way."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float, kernel: int = 9) -> None:
        super().__init__()
        self.values = nn.Conv1d(in_dim, in_dim, kernel, padding=kernel // 2)
        self.attention = nn.Conv1d(in_dim, in_dim, kernel, padding=kernel // 2)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Sequential(nn.Linear(2 * in_dim, hidden), nn.Dropout(dropout), nn.ReLU(),
                                 nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = (hidden * mask.unsqueeze(-1).to(hidden.dtype)).transpose(1, 2)  # (B, D, L), padding zeroed
        values = self.dropout(self.values(x))  # (B, D, L)
        weights = masked_softmax(self.attention(x), mask)  # (B, D, L), softmax over residues
        attended = (values * weights).sum(-1)  # (B, D)
        neg = torch.finfo(values.dtype).min
        maxed = values.masked_fill(~mask.unsqueeze(1), neg).max(dim=-1).values  # (B, D), padding excluded
        return self.out(torch.cat([attended, maxed], dim=-1))


@register_head("centre")
class CentreHead(nn.Module):
    """The embedding of the window's centre residue (site windows such as 33-mers around a modified
    residue): residue (n - 1) // 2 of the n residue tokens, then a two-layer MLP."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = _mlp(in_dim, hidden, out_dim, dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = mask.sum(1)  # (B,) residues per sequence
        first = mask.float().argmax(1)  # (B,) index of the first residue token
        centre = first + (n - 1).clamp(min=0) // 2  # (B,)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), centre]  # (B, D)
        return self.mlp(picked)


@register_head("residue", per_residue=True)
class ResidueHead(nn.Module):
    """Per-residue prediction: a two-layer MLP applied to every token (B, L, D) -> (B, L, out);
    special and padding tokens are excluded by the loss and the metrics."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = _mlp(in_dim, hidden, out_dim, dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden)


def resolve_pooling(pooling: str | None, problem: Any) -> str:
    """The head a run uses: the configured one if it fits the problem type's level, else an error;
    unset, the problem type's default (mean pooling, or the per-residue head)."""
    fitting = [name for name, spec in HEADS.items() if spec.per_residue == problem.per_residue]
    if pooling is None:
        return fitting[0]
    if HEADS.lookup(pooling, "head.pooling").per_residue != problem.per_residue:
        level = "one prediction per residue" if problem.per_residue else "one prediction per sequence"
        raise ConfigError(f"head.pooling={pooling!r} does not fit {problem.name}, which needs {level}; "
                          f"choose one of {', '.join(fitting)} (or leave head.pooling unset)")
    return pooling


def build_head(name: str, in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Module:
    return HEADS[name].build(in_dim, hidden, out_dim, dropout)
