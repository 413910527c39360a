"""A bidirectional Mamba language model in plain PyTorch (Gu & Dao 2023), with the mamba-ssm CUDA
kernels used for the selective scan when they are installed and the tensors are on a GPU.

Each layer runs one Mamba block over the sequence and one over the sequence reversed within its own
length (padding stays at the end in both directions, so it never reaches a real position), and fuses
the two. Parameter names follow the reference Mamba block, so weights move between the two scans. A new
model starts from the reference language model's initialisation (`init_like_reference`); loading a
checkpoint replaces all of it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def selective_scan_reference(x, dt, A, B, C, D):  # type: ignore[no-untyped-def]
    """The recurrence written out step by step (for tests): h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,
    y_t = C_t . h_t + D x_t. x, dt: (b, l, d); A: (d, n); B, C: (b, l, n); D: (d,)."""
    b, l, d = x.shape
    h = x.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * B[:, t, None, :] * x[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])
    return torch.stack(ys, 1)


def selective_scan(x, dt, A, B, C, D, chunk: int = 32):  # type: ignore[no-untyped-def]
    """The same recurrence in chunks: inside a chunk every state is a weighted sum of the chunk's inputs
    with weights exp(S_t - S_s) <= 1 (S = cumulative dt*A), so nothing overflows; chunks hand on h."""
    b, l, d = x.shape
    n = A.shape[1]
    h = x.new_zeros(b, d, n)
    out = []
    for start in range(0, l, chunk):
        xs, dts = x[:, start:start + chunk], dt[:, start:start + chunk]
        Bs, Cs = B[:, start:start + chunk], C[:, start:start + chunk]
        t = xs.shape[1]
        log_a = dts.unsqueeze(-1) * A  # (b, t, d, n), <= 0
        S = torch.cumsum(log_a, dim=1)
        diff = S.unsqueeze(2) - S.unsqueeze(1)  # (b, t, s, d, n): S_t - S_s
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
        weights = torch.where(causal[None, :, :, None, None], diff, torch.full_like(diff, -math.inf)).exp()
        inputs = dts.unsqueeze(-1) * Bs.unsqueeze(2) * xs.unsqueeze(-1)  # (b, s, d, n)
        states = torch.einsum("btsdn,bsdn->btdn", weights, inputs) + S.exp() * h.unsqueeze(1)
        out.append((states * Cs.unsqueeze(2)).sum(-1) + D * xs)
        h = states[:, -1]
    return torch.cat(out, 1)


def _kernel_scan():  # type: ignore[no-untyped-def]
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # type: ignore[import-not-found]
    except ImportError:
        return None
    return selective_scan_fn


class MambaBlock(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        with torch.no_grad():  # dt starts in [0.001, 0.1], as in the reference initialisation
            dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))  # causal convolution
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        kernel = _kernel_scan() if x.is_cuda else None
        if kernel is not None:
            y = kernel(x.transpose(1, 2).contiguous(), dt.transpose(1, 2).contiguous(), A,
                       B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float()).transpose(1, 2)
        else:
            y = selective_scan(x.float(), dt.float(), A, B.float(), C.float(), self.D.float()).to(x.dtype)
        return self.out_proj(y * F.silu(z))


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first `length` positions reversed, padding left where it is. Its own inverse."""
    positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
    idx = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class BiMambaLayer(nn.Module):
    def __init__(self, d_model: int, d_state: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.forward_block = MambaBlock(d_model, d_state)
        self.backward_block = MambaBlock(d_model, d_state)
        self.fuse = nn.Linear(2 * d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).long()
        h = self.norm(x) * mask.unsqueeze(-1)
        ahead = self.forward_block(h)
        back = reverse_within(self.backward_block(reverse_within(h, lengths)), lengths)
        return (x + self.fuse(torch.cat([ahead, back], dim=-1))) * mask.unsqueeze(-1)


def init_like_reference(model: nn.Module, n_layers: int, embedding_std: float = 0.02) -> None:
    """Re-initialise a freshly built model as the reference Mamba language model does: the `_init_weights`
    that mamba_ssm's MixerModel and MambaLMHeadModel (mamba_ssm/models/mixer_seq_simple.py) apply after
    building their modules. There, token embeddings are drawn from N(0, initializer_range^2) with
    initializer_range = 0.02, every linear bias is set to zero except dt_proj's (flagged `_no_reinit`: it
    carries the dt initialisation), and each block's out_proj weight keeps PyTorch's default initialisation
    divided by sqrt(n_layers) (the GPT-2 scaling of residual branches by depth, one residual branch a layer).

    The embedding scale matters most here: the LM head is tied to the embedding, so with nn.Embedding's
    default N(0, 1) the first logits have a standard deviation of about sqrt(d_model), the first
    predictions are confidently wrong, and the first masked-LM loss is several times ln(vocab size)
    (19.0 against ln 71 = 4.3 at d_model 32, with the 70 default tokens and one extra PTM); at 0.02 it starts near ln(vocab size), a uniform guess."""
    keep = {id(m.dt_proj.bias) for m in model.modules() if isinstance(m, MambaBlock)}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=embedding_std)
            elif isinstance(module, nn.Linear) and module.bias is not None and id(module.bias) not in keep:
                nn.init.zeros_(module.bias)
            elif isinstance(module, MambaBlock):  # out_proj was just built with the default init: scale it once
                module.out_proj.weight.div_(math.sqrt(n_layers))


class PtmMamba(nn.Module):
    """Token embeddings (+ gated PLM residue embeddings) -> bidirectional Mamba layers -> norm -> LM head."""

    def __init__(self, vocab: int, d_model: int = 256, layers: int = 4, d_state: int = 16, plm_dim: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.plm_proj = nn.Linear(plm_dim, d_model) if plm_dim else None
        self.gate = nn.Linear(2 * d_model, d_model) if plm_dim else None
        self.layers = nn.ModuleList(BiMambaLayer(d_model, d_state) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied
        init_like_reference(self, layers)  # a loaded state dict overwrites every parameter this sets

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, plm: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(ids)
        if self.plm_proj is not None:
            if plm is None:
                raise ValueError("this model fuses PLM embeddings: pass them (or compute them with the PLM)")
            e = self.plm_proj(plm.to(x.dtype))
            x = x + torch.sigmoid(self.gate(torch.cat([x, e], -1))) * e
        m = mask.to(x.dtype)
        x = x * m.unsqueeze(-1)
        for layer in self.layers:
            x = layer(x, m)
        return self.norm(x)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, plm: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.hidden_states(ids, mask, plm))
