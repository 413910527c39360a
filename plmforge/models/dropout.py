"""Dropout whose masks come from a counter-based hash on a CPU.

PyTorch draws a CPU dropout mask from its Mersenne Twister one element at a time, on one thread: about
5-9 ns an element on the CPUs measured here, which made dropout 37 % of a LoRA step on AntiBERTy (the
attention weights alone are heads x L x L per sequence and layer). Here a mask is the splitmix64 finaliser
applied to a counter (a few vectorised integer operations over a quarter of the elements, on every thread),
each 64-bit word cut into four 16-bit uniforms: the same Bernoulli(1 - p) keep-mask, scaled by 1 / (1 - p)
as torch's, about 3x faster. What changes is only the random stream. The stream is seeded by one draw from
torch's own generator per call, so a seeded run repeats, a resumed run continues it, and recomputation
under gradient checkpointing (which restores the generator) draws the same masks.

On CUDA torch's own (Philox, already fast) dropout is used. `install_fast_dropout` puts this into a task
model: every `nn.Dropout` module (hidden states, LoRA inputs, the head) and, for models that use
transformers' attention interface, the dropout on attention weights (the unfused path that training with
attention dropout takes anyway; evaluation and dropout 0 stay on SDPA's own kernels).
"""

from __future__ import annotations

from typing import Any

import torch

# splitmix64's constants as signed 64-bit integers (torch has no uint64 arithmetic)
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB
ATTENTION = "plmforge_sdpa"


def _shift(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 words (torch's is arithmetic)."""
    return z.bitwise_right_shift(bits).bitwise_and_((1 << (64 - bits)) - 1)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, seed: int,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool tensor of `shape`, True with probability 1 - p (p resolved to 1/65536), from `seed`."""
    return keep_masks(shape, p, [seed], device)[0]


def keep_masks(shape: torch.Size | tuple[int, ...], p: float, seeds: list[int],
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(len(seeds), *shape) bool: row i is keep_mask(shape, p, seeds[i]), all made in one pass."""
    n = 1
    for s in shape:
        n *= int(s)
    z = torch.arange((n + 3) // 4, dtype=torch.int64, device=device).mul_(_GOLDEN)
    z = z.unsqueeze(0) + torch.tensor(seeds, dtype=torch.int64, device=device).unsqueeze(1)  # (S, words)
    z = z.bitwise_xor_(_shift(z, 30)).mul_(_MIX1)
    z = z.bitwise_xor_(_shift(z, 27)).mul_(_MIX2)
    z = z.bitwise_xor_(_shift(z, 31))
    uniform = z.view(torch.int16)[:, :n].reshape(len(seeds), *shape)  # -32768..32767, each equally likely
    return uniform >= round(p * 65536) - 32768


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)  # one byte an element, as torch's own dropout keeps
        ctx.scale = scale
        return x.mul(mask).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return grad.mul(mask).mul_(ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    if p >= 1.0:
        return x * 0.0
    seed = int(torch.randint(-(2**62), 2**62, (1,)).item())  # one draw from torch's generator
    return _MaskedScale.apply(x, keep_mask(x.shape, p, seed), 1.0 / (1.0 - p))


class FastDropout(torch.nn.Dropout):
    """nn.Dropout with the hashed CPU masks (same p, same train/eval behaviour)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
               **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: SDPA's own kernels unless training drops attention weights on a
    CPU (where SDPA would take its unfused path anyway): then the same computation with the hashed mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    simple = (kwargs.get("position_bias") is None and getattr(module, "num_key_value_groups", 1) == 1
              and query.shape[2] == key.shape[2] and not getattr(module, "is_causal", False))
    if not (dropout and module.training and query.device.type == "cpu" and simple):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scale  # (B, heads, L, L)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True = attend (SDPA's convention)
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # the masks SDPA gets


def install_fast_dropout(model: torch.nn.Module) -> int:
    """Swap every nn.Dropout of `model` for FastDropout and move transformers models that run SDPA to the
    attention above; how many dropout modules were swapped."""
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    for sub in model.modules():
        config = getattr(sub, "config", None)
        # only models written for transformers' attention interface read it (T5, remote code: not all do)
        if (getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(sub, "set_attn_implementation")
                and getattr(type(sub), "_supports_attention_backend", False)):
            _register()
            sub.set_attn_implementation(ATTENTION)
    return swapped
