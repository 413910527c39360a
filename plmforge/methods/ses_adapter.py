"""`ses_adapter`: a frozen sequence model enriched with structure tokens (Tan et al. 2024, SES-Adapter).

Each structure alphabet the run names (Foldseek 3Di `foldseek_seq`, 8-state DSSP `ss8_seq`, or the
3-state fallback `ss3_seq`, as `plmforge structure` writes them) has a learned embedding; the
embeddings are summed, and the backbone's residue states attend to them through multi-head
cross-attention with rotary positions on queries and keys (keys and values: residue positions only),
followed by a residual connection and layer norm. Any pooling head or the residue head follows. The
backbone stays frozen, so its states come from the persistent embedding store; only the adapter and the
head train."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from plmforge.checks import fraction, positive
from plmforge.errors import ConfigError
from plmforge.inputs import STRUCTURE_ALPHABETS, ModelInput
from plmforge.methods import CacheOptions, MethodSpec, register_method


@dataclass(frozen=True)
class SesOptions(CacheOptions):
    """Structure columns fused into the frozen backbone's residue states by cross-attention."""

    structure_columns: tuple[str, ...] = ("foldseek_seq", "ss8_seq")
    attention_heads: int = 8  # heads of the cross-attention (must divide the backbone's hidden size)
    adapter_dropout: float = 0.1  # on the attention weights and the attended output
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {**CacheOptions.CHOICES,
                                                     "structure_columns": tuple(STRUCTURE_ALPHABETS)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.structure_columns:
            raise ConfigError("method.structure_columns must name at least one structure column: "
                              + ", ".join(STRUCTURE_ALPHABETS))
        for col in self.structure_columns:
            if col not in STRUCTURE_ALPHABETS:
                raise ConfigError(f"method.structure_columns: unknown structure column {col!r}; choose from "
                                  + ", ".join(STRUCTURE_ALPHABETS))
        if len(set(self.structure_columns)) != len(self.structure_columns):
            raise ConfigError("method.structure_columns names a column twice")
        positive("method.attention_heads", self.attention_heads)
        fraction("method.adapter_dropout", self.adapter_dropout)


def input_name(column: str) -> str:
    return f"structure_{column}"


def inputs(options: SesOptions) -> tuple[ModelInput, ...]:
    # code 0 of each structure embedding is padding and special tokens
    return tuple(ModelInput(input_name(c), source=c, alphabet=STRUCTURE_ALPHABETS[c], offset=1, pad=0)
                 for c in options.structure_columns)


def rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotary position code (Su et al. 2021) on (B, heads, L, D): the dot product of a query at i and a
    key at j then depends on i - j, so a residue can find the structure token at its own position."""
    d = x.shape[-1] // 2
    pos = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)[:, None]
    angle = pos * torch.exp(torch.arange(d, device=x.device, dtype=torch.float32) * (-math.log(10000.0) / d))
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., :d], x[..., d:2 * d]
    return torch.cat([a * cos - b * sin, a * sin + b * cos, x[..., 2 * d:]], dim=-1)


class StructureAdapter(nn.Module):
    def __init__(self, hidden: int, alphabets: dict[str, int], heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.p = dropout
        self.embed = nn.ModuleDict({name: nn.Embedding(size + 1, hidden, padding_idx=0)
                                    for name, size in alphabets.items()})
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, H / heads)
        b, n, h = x.shape
        return x.view(b, n, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, tokens: dict[str, torch.Tensor],
                residue_mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, H) residue states; tokens: per structure input (B, L) codes (0 = none);
        residue_mask (B, L): the positions that are residues (keys and values come only from these)."""
        structure = sum(self.embed[name](ids) for name, ids in tokens.items())
        q = rotate(self._split(self.query(hidden)))
        k = rotate(self._split(self.key(structure)))
        v = self._split(self.value(structure))
        keep = residue_mask.clone()
        keep[:, 0] |= ~residue_mask.any(1)  # a row without residues would have no key at all (NaN)
        attended = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=keep[:, None, None, :], dropout_p=self.p if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(hidden.shape)
        return self.norm(hidden + self.dropout(self.out(attended)))


def apply(model, options: SesOptions) -> None:  # type: ignore[no-untyped-def]
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    model.backbone_frozen = True
    hidden = model.hidden_size
    if hidden % options.attention_heads:
        raise ConfigError(f"method.attention_heads={options.attention_heads} does not divide the backbone's hidden "
                          f"size {hidden}; choose a divisor of {hidden}")
    specs = inputs(options)
    model.adapter = StructureAdapter(hidden, {input_name(c): len(STRUCTURE_ALPHABETS[c])
                                              for c in options.structure_columns},
                                     options.attention_heads, options.adapter_dropout)
    model.adapter_inputs = tuple(s.name for s in specs)


register_method(MethodSpec(
    "ses_adapter", "structure tokens (3Di, DSSP) fused into a frozen backbone by cross-attention + head",
    SesOptions, apply, frozen_backbone=True, inputs=inputs))
