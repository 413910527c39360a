"""`plmforge doctor`: what this machine can do for plmforge and what is missing, each missing part with the
command that adds it. The core (Python, torch, the required packages, the offline AntiBERTy model) decides
the exit code; optional parts (the web UI, QLoRA, DSSP, a browser, Mamba kernels, DeepSpeed, tracking) and the
hub are reported with what their absence costs.

Each check is a function returning Check rows, so that a test can replace what it probes (a package, a
program, the network) and see the report and the exit code change."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, MISSING, FAIL, INFO = "ok", "warn", "missing", "FAIL", "info"


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    status: str  # OK, WARN (works, with a cost), MISSING (an optional part), FAIL (the core does not work), INFO
    detail: str
    fix: str = ""


# optional parts: (import name or program, what it enables, the fix, "module" or "program")
OPTIONAL = [
    ("gradio", "the web UI (plmforge ui)", "pip install 'plmforge[ui]'", "module"),
    ("bitsandbytes", "QLoRA (4-bit backbones; CUDA GPUs)", "pip install 'plmforge[qlora]'", "module"),
    ("mkdssp", "8-state DSSP secondary structure (else 3-state pydssp)", "apt-get install dssp (or conda install "
     "-c conda-forge dssp)", "program"),
    ("chromium", "the web UI's browser tests", "apt-get install chromium (bash scripts/system.sh)", "program"),
    ("mamba_ssm", "PTM-Mamba's fused CUDA kernels (else the plain PyTorch scan, slower)", "pip install mamba-ssm "
     "(CUDA GPUs only)", "module"),
    ("deepspeed", "DeepSpeed ZeRO sharding (the FSDP recipe needs nothing more)", "pip install deepspeed", "module"),
    ("wandb", "Weights & Biases logging (training.report_to=[wandb])", "pip install 'plmforge[tracking]'", "module"),
    ("tensorboard", "TensorBoard logging (training.report_to=[tensorboard])", "pip install 'plmforge[tracking]'",
     "module"),
]


def python_checks() -> list[Check]:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 11)
    return [Check("system", "python", OK if ok else FAIL, f"{version} ({sys.executable})",
                  "" if ok else "install Python 3.11 or newer and re-run scripts/setup.sh")]


def torch_checks() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("system", "torch", FAIL, "not installed", "pip install torch==2.13.0 (a CPU build; for a GPU "
                      "see pytorch.org for the build of your CUDA version)")]
    except Exception as exc:  # noqa: BLE001  (e.g. a CUDA build whose libraries do not load)
        return [Check("system", "torch", FAIL, f"installed but does not load: {exc}", "reinstall the build that "
                      "matches this machine: pip install --force-reinstall torch==2.13.0 (CPU) or pytorch.org's "
                      "command for your CUDA version")]
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    rows = [Check("system", "torch", OK, f"{torch.__version__} ({build})")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            try:
                free, total = torch.cuda.mem_get_info(i)
                memory = f"{free / 2**30:.1f} of {total / 2**30:.1f} GB free"
            except RuntimeError as exc:  # a GPU busy in exclusive mode, or in an error state
                memory = f"memory not readable ({exc})"
            rows.append(Check("device", f"cuda:{i}", OK, f"{torch.cuda.get_device_name(i)}, capability {major}.{minor}, "
                              f"{memory}, bf16 {'native' if major >= 8 else 'not native (use fp16 or fp32)'}"))
    elif torch.version.cuda:
        rows.append(Check("device", "cuda", WARN, "a CUDA build, but no GPU is visible", "check nvidia-smi and the "
                          "driver; CUDA_VISIBLE_DEVICES may hide the GPUs"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        rows.append(Check("device", "mps", OK, "Apple GPU (MPS) available"))
    rows.append(cpu_check())
    return rows


def cpu_check() -> Check:
    import torch

    from plmforge.precision import cpu_name, native_low_precision

    capability = torch.backends.cpu.get_cpu_capability()
    verdict = native_low_precision(torch.bfloat16, "cpu")
    where = f"{cpu_name()}, {os.cpu_count()} cores, torch capability {capability}"
    if verdict.native:
        return Check("device", "cpu", OK, f"{where}; bfloat16 native ({verdict.reason})")
    return Check("device", "cpu", INFO, f"{where}; bfloat16 emulated ({verdict.reason})",
                 "train and predict in fp32 on this CPU (bf16 is refused here unless forced)")


def memory_checks(work_dir: Path) -> list[Check]:
    rows = []
    total, available = _memory_gb()
    if total is not None:
        low = available is not None and available < 4
        rows.append(Check("system", "memory", WARN if low else OK,
                          f"{available:.1f} of {total:.1f} GB available" if available is not None else f"{total:.1f} GB",
                          "close other programs; a frozen AntiBERTy run needs ~2 GB, LoRA on ESM-2 650M ~8 GB on a "
                          "CPU" if low else ""))
    from plmforge.store import cache_root

    for label, path in (("disk (working directory)", work_dir), ("disk (embedding store)", cache_root())):
        probe = path
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        free = shutil.disk_usage(probe).free / 2**30
        rows.append(Check("system", label, WARN if free < 5 else OK, f"{free:.1f} GB free at {probe}",
                          "free space: checkpoints of large models take GBs each" if free < 5 else ""))
    return rows


def _memory_gb() -> tuple[float | None, float | None]:
    try:
        info = {ln.split(":")[0]: ln.split(":")[1] for ln in Path("/proc/meminfo").read_text().splitlines()}
        return int(info["MemTotal"].split()[0]) / 2**20, int(info["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, None
    except (ValueError, OSError, AttributeError):
        return None, None


def package_checks() -> list[Check]:
    """plmforge's own requirements (pyproject's dependencies), each installed at a version it accepts."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return [Check("packages", "packaging", WARN, "not installed: the required packages' versions are not "
                      "checked", "pip install packaging")]

    try:
        requirements = [Requirement(r) for r in md.requires("plmforge") or []]
    except md.PackageNotFoundError:
        return [Check("packages", "plmforge", FAIL, "not installed as a package", "pip install -e . (or bash "
                      "scripts/setup.sh)")]
    rows = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra: reported below with what it enables
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            rows.append(Check("packages", req.name, FAIL, "not installed", f"pip install '{req}'"))
            continue
        fits = req.specifier.contains(version, prereleases=True)
        rows.append(Check("packages", req.name, OK if fits else FAIL, version + ("" if fits else f" (needs {req.specifier})"),
                          "" if fits else f"pip install '{req}'"))
    return rows


def offline_model_checks() -> list[Check]:
    from plmforge.errors import ConfigError
    from plmforge.models.zoo import antiberty_files

    try:
        checkpoint, _ = antiberty_files()
    except ConfigError as exc:
        return [Check("models", "antiberty", FAIL, str(exc), "pip install antiberty==0.1.3")]
    return [Check("models", "antiberty", OK, f"the offline model is at {checkpoint}")]


def optional_checks(find_module: Callable[[str], object] = importlib.util.find_spec,
                    which: Callable[[str], str | None] = shutil.which) -> list[Check]:
    rows = []
    for name, enables, fix, kind in OPTIONAL:
        found = find_module(name) is not None if kind == "module" else which(name) is not None
        if kind == "program" and name == "chromium" and not found:
            found = which("chromium-browser") is not None
        rows.append(Check("optional", name, OK if found else MISSING, enables, "" if found else fix))
    return rows


def hub_checks(reach: Callable[[], str | None] | None = None, offline: bool = False) -> list[Check]:
    """Where downloaded models are cached, and whether the HuggingFace Hub answers (a short request; not
    tried when `offline`)."""
    from huggingface_hub import constants

    rows = [Check("hub", "cache", INFO, f"downloaded models are kept in {constants.HF_HUB_CACHE}",
                  "set HF_HOME to move it")]
    if offline:
        rows.append(Check("hub", "network", INFO, "not checked (--offline)"))
        return rows
    if constants.HF_HUB_OFFLINE:
        rows.append(Check("hub", "network", INFO, "HF_HUB_OFFLINE is set: only models already in the cache or in "
                          "local directories load"))
        return rows
    error = (reach or reach_hub)()
    if error is None:
        rows.append(Check("hub", "network", OK, "huggingface.co answers: zoo models download on first use"))
    else:
        rows.append(Check("hub", "network", WARN, f"huggingface.co unreachable ({error})",
                          "work offline: antiberty, local model directories and models already in the cache load; "
                          "set HF_HUB_OFFLINE=1 to skip the network; behind a proxy set HTTPS_PROXY"))
    return rows


def reach_hub(timeout: float = 3.0) -> str | None:
    """None when https://huggingface.co answers within `timeout` seconds, else why not."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request("https://huggingface.co/api/models?limit=1", method="HEAD"),
                               timeout=timeout)
        return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return str(getattr(exc, "reason", exc))


def store_checks() -> list[Check]:
    from plmforge.store import cache_root, store_infos

    root = cache_root()
    infos = store_infos(root) if root.is_dir() else []
    if not infos:
        return [Check("store", "embeddings", INFO, f"the embedding store at {root} is empty")]
    mb = sum(i.megabytes for i in infos)
    return [Check("store", "embeddings", INFO, f"{sum(i.entries for i in infos)} entries for {len(infos)} model "
                  f"settings, {mb:.1f} MB at {root}", "plmforge cache info lists them; plmforge cache clear frees them")]


def diagnose(work_dir: Path | None = None, *, reach: Callable[[], str | None] | None = None, offline: bool = False,
             find_module: Callable[[str], object] = importlib.util.find_spec,
             which: Callable[[str], str | None] = shutil.which) -> list[Check]:
    """Every check, core first, grouped by area. A check that fails to run is itself reported (as FAIL
    for the core, WARN otherwise), never a crash of the report."""
    checks: list[tuple[str, bool, Callable[[], list[Check]]]] = [
        ("python", True, python_checks), ("torch", True, torch_checks),
        ("memory and disk", False, lambda: memory_checks(work_dir or Path.cwd())),
        ("packages", True, package_checks), ("offline model", True, offline_model_checks),
        ("optional parts", False, lambda: optional_checks(find_module, which)),
        ("hub", False, lambda: hub_checks(reach, offline)), ("embedding store", False, store_checks)]
    rows = []
    for name, core, check in checks:
        try:
            rows += check()
        except Exception as exc:  # noqa: BLE001
            rows.append(Check("doctor", name, FAIL if core else WARN, f"the check failed: {type(exc).__name__}: "
                              f"{exc}", "fix what the message names, then run plmforge doctor again"))
    order = list(dict.fromkeys(r.area for r in rows))
    return sorted(rows, key=lambda r: order.index(r.area))  # (stable: each area's rows keep their order)


def core_works(rows: list[Check]) -> bool:
    return not any(r.status == FAIL for r in rows)


def render(rows: list[Check]) -> str:
    """The report as aligned text: area, name, status, detail, and the fix on the next line."""
    width = max(len(r.name) for r in rows)
    lines, area = [], None
    for r in rows:
        if r.area != area:
            area = r.area
            lines.append(f"{area}:")
        lines.append(f"  {r.name:<{width}}  {r.status:<7}  {r.detail}")
        if r.fix and r.status != OK:
            lines.append(f"  {'':<{width}}  {'':<7}  -> {r.fix}")
    verdict = core_works(rows)
    missing = sum(r.status == MISSING for r in rows)
    lines.append("")
    lines.append(("the core works: plmforge can train and predict here" if verdict else
                  "the core does NOT work here: apply the fixes marked FAIL")
                 + (f"; {missing} optional part{'s' if missing != 1 else ''} missing (see above)" if missing else ""))
    return "\n".join(lines)


def version_line() -> str:
    """plmforge's version with the versions that decide its behaviour."""
    parts = [f"plmforge {_version('plmforge')}", f"python {platform.python_version()}"]
    for name in ("torch", "transformers", "peft", "accelerate"):
        parts.append(f"{name} {_version(name)}")
    return ", ".join(parts)


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"
