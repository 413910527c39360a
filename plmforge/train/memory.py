"""A peak-memory estimate made before training (parameters, gradients, optimizer state, activations of the
largest batch, runtime overhead), compared with what the machine has, with concrete suggestions when it
will not fit; written to the run directory as memory_estimate.json, where the end of training adds the
measured peak (process max RSS on CPU, the allocator's peak on a GPU) next to it.

Activations per token and encoder layer are counted as 24 hidden-size and 4 intermediate-size values
(what autograd keeps for a transformer layer — queries, keys, values, attention output, layer norms,
residuals, dropout masks, the feed-forward before and after its activation — plus the allocator's slack),
4 bytes each in fp32 and 2.5 on average under bf16/fp16 autocast (some saved tensors stay fp32); attention
weights add 4 tensors of heads x L x L per sequence and layer when they are materialised (eager attention,
or SDPA with attention dropout, which has no fused CPU kernel). Gradient checkpointing keeps each
recomputed layer's input plus two layers' worth (the recomputed layer and its backward). A frozen
backbone runs in eval mode without autograd: about 0.6 of one layer's hidden activations. These
constants were fitted to measured peaks of AntiBERTy runs on CPU (see the README and
benchmarks/results.md, "Memory estimate"); benchmarks/memory.py checks the estimate against measured peaks."""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("plmforge")
MB = 2 ** 20
CPU_OVERHEAD_MB = 450  # the Python + PyTorch + transformers runtime, libraries and the tokenised data
# on a CPU the memory plan splits training batches into parts of at most this many padded tokens: one epoch of
# LoRA on AntiBERTy over 320 EC proteins (batches of 16, AVX2 kernels, 2 threads) took 158 s with parts of 512,
# 169 s with 1,024, 144 s with 1,536, 180 s with 2,048 and 209 s whole, at 1.8, 2.6, 3.3, 3.8 and 8.4 GB peak
# (one sitting; another: 202 s in parts of 512 against 307 s whole; benchmarks/results.md, "LoRA defaults")
CPU_MICRO_BATCH_TOKENS = 512


@dataclass
class MemoryEstimate:
    device: str
    parameters_mb: float
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    overhead_mb: float
    total_mb: float
    available_mb: float | None
    batch: dict[str, Any]
    suggestions: list[str] = field(default_factory=list)
    measured_peak_mb: float | None = None

    @property
    def fits(self) -> bool:
        return self.available_mb is None or self.total_mb <= 0.9 * self.available_mb

    def write(self, run_dir: Path) -> None:
        blob = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
        (run_dir / "memory_estimate.json").write_text(json.dumps(blob, indent=1))


def _dims(config: Any) -> tuple[int, int, int, int]:
    """hidden size, intermediate size, layers, heads from a transformers config (BERT/ESM or T5 names)."""
    hidden = int(getattr(config, "hidden_size", None) or getattr(config, "d_model", 0) or 0)
    inter = int(getattr(config, "intermediate_size", None) or getattr(config, "d_ff", None) or 4 * hidden)
    layers = int(getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None) or 1)
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", None) or 1)
    return hidden, inter, layers, heads


def largest_batch(lengths: list[int], batching: Any) -> tuple[int, int]:
    """(sequences, padded length) of the largest training batch (or micro-batch) the batching can form."""
    longest = max(lengths) if lengths else 1
    if batching.mode == "tokens":
        n = max(1, batching.max_tokens // longest)
    else:
        n = min(batching.batch_size, max(len(lengths), 1))
    if batching.micro_batch_tokens and n * longest > batching.micro_batch_tokens:
        n = max(1, batching.micro_batch_tokens // longest)
    return n, longest


def estimate(model: torch.nn.Module, backbone_config: Any, lengths: list[int], cfg: Any,
             frozen_backbone: bool, device: torch.device, measure_available: bool = True) -> MemoryEstimate:
    """`lengths`: the training sequences' token counts (special tokens included); `cfg`: the RunConfig.
    `model` may live on the meta device (nothing is read from its tensors); `measure_available=False`
    leaves the device's free memory unread (an estimate for a device this machine does not have)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    params += sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grads, adam = trainable * 4, trainable * 8  # fp32 gradients; AdamW's two moments
    activations, batch = activation_bytes(backbone_config, lengths, cfg, frozen_backbone, device)
    overhead = (300 if device.type == "cuda" else CPU_OVERHEAD_MB) * MB
    total = params + grads + adam + activations + overhead
    # exact values (a small model's parts are far below 0.1 MB); the report and the file round them
    est = MemoryEstimate(device.type, params / MB, grads / MB, adam / MB, activations / MB, overhead / MB, total / MB,
                         available_mb(device) if measure_available else None, batch)
    if not est.fits:
        est.suggestions = _suggest(cfg, est, frozen_backbone, batch["attention_materialised"], batch["padded_length"])
    return est


def activation_bytes(backbone_config: Any, lengths: list[int], cfg: Any, frozen_backbone: bool,
                     device: torch.device) -> tuple[float, dict[str, Any]]:
    """The activations the largest training batch (or micro-batch) keeps, and that batch's shape."""
    n_seq, length = largest_batch(lengths, cfg.batching)
    tokens = n_seq * length
    hidden, inter, layers, heads = _dims(backbone_config)
    width = 2.5 if cfg.training.mixed_precision in ("bf16", "fp16") else 4.0
    dropout = cfg.model.attention_dropout
    if dropout is None:
        dropout = float(getattr(backbone_config, "attention_probs_dropout_prob", 0.0) or 0.0)
    eager = cfg.model.attention == "eager"
    # a frozen backbone runs in eval mode: no dropout, so SDPA stays fused unless eager was asked for
    materialised = eager or (not frozen_backbone and dropout > 0 and device.type == "cpu")
    attention = 4 * n_seq * heads * length * length * width if materialised else 0
    hidden_part = tokens * (24 * hidden + 4 * inter) * width
    if frozen_backbone:
        activations = 0.6 * hidden_part + (n_seq * heads * length * length * width if eager else 0)
    else:
        every = (cfg.model.checkpoint_every or 1) if cfg.model.gradient_checkpointing else None
        activations = _trained_activations(layers, tokens * hidden * width, hidden_part + attention, every)
    return activations, {"sequences": n_seq, "padded_length": length, "tokens": tokens,
                         "attention_materialised": materialised}


def _trained_activations(layers: int, layer_input: float, per_layer: float, every: int | None) -> float:
    """Bytes autograd keeps for a backbone that trains: every layer's activations, or with checkpointing
    on every `every`-th layer, those layers' inputs plus the other layers' activations plus two layers'
    worth (the layer being recomputed and its backward pass)."""
    if every is None:
        return layers * per_layer
    recomputed = -(-layers // every)  # layers 0, every, 2 x every, ...
    return recomputed * layer_input + (layers - recomputed + 2) * per_layer


def _suggest(cfg: Any, est: MemoryEstimate, frozen: bool, materialised: bool, length: int) -> list[str]:
    out = []
    if cfg.batching.mode == "size":
        budget = max(256, int(est.batch["tokens"] * 0.5 * est.available_mb / max(est.total_mb, 1)))
        out.append(f"batching.mode=tokens batching.max_tokens={budget} (length-bucketed batches of about that many "
                   "tokens instead of a fixed number of sequences)")
    if not frozen and not cfg.model.gradient_checkpointing:
        out.append("model.gradient_checkpointing=true (keeps layer inputs only; about 30 % slower)")
    if materialised and cfg.model.attention_dropout != 0:
        out.append("model.attention_dropout=0 (lets scaled-dot-product attention use its fused kernel)")
    if cfg.training.mixed_precision == "no" and _native_bf16(est.device):
        out.append("training.mixed_precision=bf16 (halves activation memory; this device runs it natively)")
    if length > 512:
        out.append(f"model.max_length=512 (the longest training sequence has {length} tokens)")
    return out


def _native_bf16(device_type: str) -> bool:
    """Whether bfloat16 is worth advising here (emulated bf16 is refused: plmforge.precision)."""
    from plmforge.precision import native_low_precision

    return native_low_precision(torch.bfloat16, torch.device(device_type)).native


def available_mb(device: torch.device) -> float | None:
    """Memory this process could use: free GPU memory plus what it holds, or MemAvailable plus this
    process's resident set on Linux (None where it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return round((free + torch.cuda.memory_allocated(device)) / MB, 1)
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        avail = int(info["MemAvailable"].split()[0]) * 1024
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, KeyError, ValueError):
        return None
    return round((avail + rss) / MB, 1)


def measured_peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / MB, 1)
    return process_peak_mb()


def process_peak_mb() -> float:
    """This process's peak resident set. Linux: VmHWM, which starts afresh at exec (ru_maxrss does not: a
    process started from a large one, e.g. the UI's training or a test's subprocess, inherits its peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (MB if sys.platform == "darwin" else 1024), 1)


def report(est: MemoryEstimate) -> None:
    parts = (f"parameters {est.parameters_mb:,.0f} + gradients {est.gradients_mb:,.0f} + optimizer "
             f"{est.optimizer_mb:,.0f} + activations {est.activations_mb:,.0f} + runtime {est.overhead_mb:,.0f}")
    have = f"{est.available_mb:,.0f} MB available" if est.available_mb is not None else "available memory unknown"
    if est.fits:
        log.info("memory estimate: %s MB peak (%s MB); %s", f"{est.total_mb:,.0f}", parts, have)
        return
    log.warning("memory estimate: about %s MB at peak (%s MB) but only %s on this %s; the run may be killed "
                "by the operating system. To use less: %s", f"{est.total_mb:,.0f}", parts, have, est.device,
                "; or ".join(est.suggestions) or "a smaller model")


@dataclass(frozen=True)
class MemoryPlan:
    """How a run keeps its activations within budget: recomputation (on which layers) and micro-batches."""

    checkpointing: bool
    every: int | None  # with checkpointing: every k-th encoder layer recomputes
    micro_batch_tokens: int  # 0 = batches run whole
    reason: str | None  # None: nothing was left to decide (the user's settings, or a frozen backbone)


def default_activation_budget_mb(device: torch.device) -> float:
    """The activation ceiling when model.activation_budget_mb is unset: half of the memory this process could
    use (free GPU memory, or MemAvailable on Linux); unlimited where that cannot be read."""
    avail = available_mb(device)
    return 0.5 * avail if avail is not None else float("inf")


def plan_memory(backbone: Any, lengths: list[int], cfg: Any, frozen_backbone: bool, device: torch.device,
                micro_batches: bool = True) -> MemoryPlan:
    """Resolve what the user left unset (model.gradient_checkpointing, batching.micro_batch_tokens) within the
    activation budget (model.activation_budget_mb, else half of the available memory):

    - where `micro_batches` (one process on a CPU): a training batch above CPU_MICRO_BATCH_TOKENS padded tokens
      runs as length-sorted micro-batches of at most that many (fewer when the budget asks: activations grow
      with the sequences of the longest length), accumulated into the same optimizer step. On a CPU that is
      faster as well as smaller (the parts carry almost no padding), while recomputing every layer cost 1.52-1.66x
      per step (benchmarks/results.md, "Recompute cost");
    - otherwise (a GPU, several processes, or not even one longest sequence fits): batches run whole while
      their activations fit, else gradient checkpointing on every k-th encoder layer with the largest k that
      fits (fewest layers recomputed), or on every layer.

    `backbone`: the loaded transformers model. Explicit settings are kept as given; a frozen backbone keeps no
    activations worth planning."""
    m, b = cfg.model, cfg.batching
    auto_ckpt, auto_micro = m.gradient_checkpointing is None, b.micro_batch_tokens is None
    ckpt = bool(m.gradient_checkpointing)
    every = (m.checkpoint_every or 1) if ckpt else None
    micro = b.micro_batch_tokens or 0
    if frozen_backbone or not (auto_ckpt or auto_micro):
        return MemoryPlan(ckpt, every, micro, None)
    budget = m.activation_budget_mb or default_activation_budget_mb(device)
    source = "model.activation_budget_mb" if m.activation_budget_mb else f"half of the memory available on this {device.type}"

    def activations(on: bool, k: int | None, tokens: int) -> tuple[float, int]:
        trial = cfg.replace(model=replace(m, gradient_checkpointing=on, checkpoint_every=k),
                            batching=replace(b, micro_batch_tokens=tokens))
        used, batch = activation_bytes(backbone.config, lengths, trial, False, device)
        return used / MB, batch["tokens"]

    if auto_micro and micro_batches:
        plan, micro = _plan_parts(activations, ckpt, every, budget, source, max(lengths, default=1))
        if plan is not None:
            return plan
    base, _ = activations(ckpt, every, micro)
    where = f"activations of the largest training batch about {base:,.0f} MB, budget {budget:,.0f} MB ({source})"
    if base <= budget:
        return MemoryPlan(ckpt, every, micro, f"memory plan: batches run whole{'' if ckpt else ', nothing recomputed'}: "
                                              f"{where}")
    if not auto_ckpt:
        return MemoryPlan(ckpt, every, micro, f"memory plan: nothing left to change ({where}); see the estimate's "
                                              "suggestions")
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        return MemoryPlan(False, None, micro, f"memory plan: this model cannot recompute activations ({where})")
    layers = _dims(backbone.config)[2]
    for k in (range(layers, 0, -1) if _selectable_layers(backbone) else (1,)):
        need, _ = activations(True, k, micro)
        if need <= budget or k == 1:
            which = "every layer" if k == 1 else f"every {k}{_ordinal(k)} layer"
            over = "" if need <= budget else " (still above the budget: a token budget, batching.mode=tokens, lowers it)"
            return MemoryPlan(True, k, micro, f"memory plan: gradient checkpointing on {which} (activations about "
                              f"{need:,.0f} MB{over}): {where}; model.gradient_checkpointing=false keeps every activation")
    raise AssertionError("unreachable")


def _plan_parts(activations: Any, ckpt: bool, every: int | None, budget: float, source: str,
                longest: int) -> tuple[MemoryPlan | None, int]:
    """The CPU's micro-batches: parts of CPU_MICRO_BATCH_TOKENS (when a batch is larger), fewer tokens when the
    budget asks. (None, part size) when the parts do not fit: recomputation is planned next, on such parts."""
    whole, tokens = activations(ckpt, every, 0)
    micro = CPU_MICRO_BATCH_TOKENS if tokens > CPU_MICRO_BATCH_TOKENS else 0
    base, tokens = activations(ckpt, every, micro)
    if base > budget:  # activations grow with the sequences of the longest length
        fit = int(budget / (base / tokens)) // longest * longest
        if fit < longest:
            return None, micro
        micro = fit
        base, _ = activations(ckpt, every, micro)
        if base > budget:
            return None, micro
    why = f"activations about {base:,.0f} MB instead of {whole:,.0f} MB for the whole batch, budget {budget:,.0f} MB ({source})"
    if not micro:
        return MemoryPlan(ckpt, every, 0, f"memory plan: batches run whole: {why}"), 0
    return MemoryPlan(ckpt, every, micro, f"memory plan: training batches run as length-sorted micro-batches of at "
                      f"most {micro:,} padded tokens within each optimizer step (the step's loss and gradients are the "
                      f"whole batch's; on a CPU smaller parts run faster): {why}; batching.micro_batch_tokens=0 keeps "
                      "batches whole"), micro


def _ordinal(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _selectable_layers(backbone: Any) -> bool:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return any(isinstance(x, GradientCheckpointingLayer) for x in backbone.modules())
