"""Does this device run half precision (bfloat16, float16) natively? And the refusal of a precision
setting that it would only emulate.

Why: a CPU without AVX512-BF16 or AMX (an AVX2-only AMD EPYC, say) runs bfloat16 through a slow
fallback; one user measured 309 s per training step with training.mixed_precision=bf16 against 5 s in
float32. The CPU flags alone do not settle it: oneDNN can be capped by ONEDNN_MAX_CPU_ISA and torch's own
kernels by ATEN_CPU_CAPABILITY. So on a CPU a short timed matmul (a few milliseconds, at most a few tenths
of a second where bf16 is emulated) decides, and the flags are reported beside it. On a CUDA GPU bfloat16
is native from compute capability 8.0 (Ampere) on, float16 on every GPU.

The verdict is measured once per process and device. `PLMFORGE_ASSUME_NATIVE_BF16=1` (or `0`) skips the
CPU measurement and declares bfloat16 native (or emulated); the tests use it to stand in for either kind
of machine.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch

from plmforge.errors import ConfigError

log = logging.getLogger("plmforge")

ASSUME_ENV = "PLMFORGE_ASSUME_NATIVE_BF16"
SLOWDOWN_LIMIT = 1.5  # a low precision this much slower than float32 (or more) is not native
PROBE_SIZE = 256  # n of the timed n x n matmuls: emulated bf16 already takes ~20 ms here, native ~0.1 ms
PROBE_REPEATS = 3
PROBE_BUDGET_S = 0.25  # per dtype: fewer repeats once this much time has been spent timing
LOW_PRECISION = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16}
_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
_SHORT = {torch.bfloat16: "bf16", torch.float16: "fp16"}
# set by the CLI where a flag cannot reach the config (`plmforge train --resume RUN --force-precision`)
FORCE_PRECISION: ContextVar[bool] = ContextVar("FORCE_PRECISION", default=False)
_said: set[tuple[object, ...]] = set()  # verdicts already logged (one line per process, not one per call)


@dataclass(frozen=True)
class Verdict:
    """Whether a dtype runs natively on a device, and the evidence in words (with the measured times)."""

    native: bool
    reason: str
    slowdown: float | None = None  # low-precision time / float32 time, where measured


def default_device() -> torch.device:
    """The device plmforge trains and predicts on: the (current) CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _device_key(device: torch.device | str | None) -> tuple[str, int | None]:
    """(type, index) of a device; a CUDA device without an index is the current one."""
    dev = default_device() if device is None else torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        return "cuda", torch.cuda.current_device()
    return dev.type, dev.index


def native_low_precision(dtype: torch.dtype, device: torch.device | str | None = None) -> Verdict:
    """Whether `dtype` (torch.bfloat16 or torch.float16) runs natively on `device` (default: the one
    plmforge uses). Measured once per process; PLMFORGE_ASSUME_NATIVE_BF16 overrides the CPU's bfloat16
    verdict (read at every call, so it can be changed in a running process)."""
    if dtype not in _NAMES:
        raise ValueError(f"native_low_precision takes torch.bfloat16 or torch.float16, got {dtype}")
    kind, index = _device_key(device)
    assumed = _assumed(dtype, kind)
    return assumed if assumed is not None else _measured(dtype, kind, index)


def _assumed(dtype: torch.dtype, kind: str) -> Verdict | None:
    """The verdict PLMFORGE_ASSUME_NATIVE_BF16 declares for bfloat16 on a CPU, else None."""
    value = os.environ.get(ASSUME_ENV, "").strip()
    if not value or dtype != torch.bfloat16 or kind != "cpu":
        return None
    if value not in ("0", "1"):
        raise ConfigError(f"{ASSUME_ENV} must be 1 (bfloat16 is native on this CPU) or 0 (it is not), got {value!r}; "
                          "unset it to measure")
    native = value == "1"
    return Verdict(native, f"{ASSUME_ENV}={value} declares that this CPU {'has' if native else 'lacks'} native "
                           "bfloat16 (not measured)")


@functools.lru_cache(maxsize=None)
def _measured(dtype: torch.dtype, kind: str, index: int | None) -> Verdict:
    if kind == "cpu":
        return _cpu_verdict(dtype)
    if kind == "cuda":
        return _cuda_verdict(dtype, index)
    return Verdict(True, f"{_NAMES[dtype]} is not checked on {kind} devices")


def reset() -> None:
    """Forget the measured verdicts and which ones were logged (for tests; a process otherwise measures once)."""
    _measured.cache_clear()
    _said.clear()


def _cuda_verdict(dtype: torch.dtype, index: int | None) -> Verdict:
    """float16 runs on every CUDA GPU; bfloat16 natively from compute capability 8.0 (Ampere) on."""
    if not torch.cuda.is_available():
        return Verdict(False, "no CUDA GPU is available")
    major, minor = torch.cuda.get_device_capability(index)
    gpu = f"{torch.cuda.get_device_name(index)}, compute capability {major}.{minor}"
    if dtype == torch.float16:
        return Verdict(True, f"float16 runs natively on every CUDA GPU ({gpu})")
    if torch.version.hip or major >= 8:
        return Verdict(True, f"bfloat16 runs natively on this GPU ({gpu})")
    emulated = torch.cuda.is_bf16_supported()  # True where PyTorch can emulate it
    return Verdict(False, f"this GPU ({gpu}) has no native bfloat16 (it needs compute capability 8.0 or newer: A100, "
                          f"RTX 30xx and later); {'PyTorch emulates it, far slower' if emulated else 'it cannot run it'}")


def _cpu_verdict(dtype: torch.dtype) -> Verdict:
    """Time `dtype` against float32 on the same matmul; the flags and the torch capability go into the reason."""
    try:
        low, fp32 = _time_matmul(dtype), _time_matmul(torch.float32)
    except RuntimeError as exc:  # a build without the kernel
        return Verdict(False, f"a {_NAMES[dtype]} matmul failed on this CPU ({_cpu_description(dtype)}): {exc}")
    slowdown = low / fp32
    native = slowdown <= SLOWDOWN_LIMIT
    short = _SHORT[dtype]
    if native:
        pace = f"{1 / slowdown:.1f}x faster than" if slowdown < 1 else "about as fast as"
        outcome = f"{_NAMES[dtype]} runs natively, {pace} float32"
    else:
        outcome = f"{_NAMES[dtype]} is emulated, {slowdown:.0f}x slower than float32"
    flags = _cpu_flags(short)
    if bool(flags) != native:
        outcome += " (the CPU flags say otherwise; the measurement decides)"
    return Verdict(native, f"{short} matmul {_ms(low)} ms vs fp32 {_ms(fp32)} ms ({PROBE_SIZE}x{PROBE_SIZE}, one "
                           f"thread) on this CPU ({_cpu_description(dtype)}): {outcome}", slowdown)


def _time_matmul(dtype: torch.dtype) -> float:
    """The best time in ms of a few PROBE_SIZE^2 matmuls in `dtype` on one thread, after a warm-up call.
    One thread: the comparison is steadier when no thread waits for a busy core. Own random generator:
    the global seed of a run is not touched; no autocast: float32 stays float32."""
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=gen).to(dtype)
    b = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=gen).to(dtype)
    best, spent = float("inf"), 0.0
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            torch.mm(a, b)  # warm-up: oneDNN picks and builds its kernel here
            for _ in range(PROBE_REPEATS):
                start = time.perf_counter()
                torch.mm(a, b)
                took = time.perf_counter() - start
                best, spent = min(best, took), spent + took
                if spent > PROBE_BUDGET_S:
                    break
    finally:
        torch.set_num_threads(threads)
    return max(best, 1e-9) * 1000


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def _cpu_description(dtype: torch.dtype) -> str:
    """Model name, torch's capability, the CPU flags that name the dtype, and any env var capping the kernels."""
    short = _SHORT[dtype]
    flags = _cpu_flags(short)
    parts = [cpu_name(), f"torch capability {torch.backends.cpu.get_cpu_capability()}",
             f"flags {', '.join(flags)}" if flags else f"no {short} CPU flag"]
    caps = [f"{name}={os.environ[name]}" for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
            if os.environ.get(name)]
    return "; ".join(parts + ([", ".join(caps)] if caps else []))


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo, else torch's or the platform's report)."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith("model name") and ":" in line:
            return line.split(":", 1)[1].strip()
    caps = _capabilities()
    return str(caps.get("cpu_name") or platform.processor() or platform.machine() or "unknown CPU")


def _capabilities() -> dict[str, object]:
    """torch.cpu.get_capabilities() where this torch has it (2.9 and later), else nothing."""
    try:
        return dict(torch.cpu.get_capabilities())  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return {}


def _cpu_flags(token: str) -> list[str]:
    """The CPU's feature flags that name `token` (bf16: avx512_bf16, amx_bf16 on x86; bf16 on ARM), from
    torch's capability table and /proc/cpuinfo."""
    found = {name for name, on in _capabilities().items() if on is True and token in name}
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")) and ":" in line:
            found.update(flag for flag in line.split(":", 1)[1].split() if token in flag)
    return sorted(found)


def check_precision(kind: str | None, device: torch.device | str | None, force: bool, where: str, *,
                    fix: str, keep: str) -> Verdict | None:
    """Refuse `kind` ('bf16'/'fp16'; anything else is full precision and passes) on a device that does not
    run it natively, unless `force`: the ConfigError gives the measured reason, `fix` (the float32 setting)
    and `keep` (how to force it). `where` names the setting as the user wrote it. A native CPU verdict is
    logged once (info), a forced emulated one as a warning."""
    dtype = LOW_PRECISION.get(kind or "")
    if dtype is None:
        return None
    device_key = _device_key(device)
    verdict = native_low_precision(dtype, device)
    force = force or FORCE_PRECISION.get()
    if not verdict.native and not force:
        raise ConfigError(f"{where} would run far slower than float32 here: {verdict.reason}. Use {fix}; to keep "
                          f"{kind} anyway, {keep}")
    if verdict.native and device_key[0] != "cpu":
        return verdict
    said = (dtype, device_key, verdict)
    if said not in _said:
        _said.add(said)
        if verdict.native:
            log.info("%s: %s", where, verdict.reason)
        else:
            log.warning("%s is kept (forced) although this device does not run it natively, so it is much slower: "
                        "%s", where, verdict.reason)
    return verdict
