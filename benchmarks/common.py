"""Shared measuring code for the benchmark scripts: one training run per child process, so that the
peak memory reported is that run's own."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plmforge.train.memory import process_peak_mb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def measure(overrides: list[str]) -> dict:
    """Train with `overrides` (in this process) and return speed, padding, memory and test metrics."""
    import torch

    from plmforge.config import load_config
    from plmforge.train.run import train

    tmp = Path(tempfile.mkdtemp())
    cfg = load_config(None, [*overrides, f"output.dir={tmp / 'run'}", "output.plots=false"])
    seen = {"real": 0, "padded": 0, "batches": 0}

    def record(epoch, trainer):  # the batches of this epoch, exactly as the sampler produced them
        sampler = trainer.loader("train", train=True).batch_sampler
        sampler.set_epoch(epoch)
        lengths = trainer.asm.encoded["train"].lengths
        for b in sampler:
            seen["real"] += int(sum(lengths[i] for i in b))
            seen["padded"] += int(max(lengths[i] for i in b) * len(b))
            seen["batches"] += 1

    t0 = time.time()
    result = train(cfg, callbacks=[record])
    train_seconds = sum(h["seconds"] for h in result.fit.history)
    stats = json.loads((result.run_dir / "model_stats.json").read_text())
    cuda = torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else process_peak_mb()
    return {"batches": seen["batches"], "real_tokens": seen["real"], "padded_tokens": seen["padded"],
            "padding_fraction": round(1 - seen["real"] / seen["padded"], 4), "train_seconds": round(train_seconds, 1),
            "real_tokens_per_second": round(seen["real"] / train_seconds, 1), "peak_memory_mb": round(peak, 1),
            "peak_memory_kind": "CUDA allocated" if cuda else "process max RSS", "wall_seconds": round(time.time() - t0, 1),
            "trainable": stats["trainable"], "total": stats["total"], "trainable_percent": stats["trainable_percent"],
            "epochs": len(result.fit.history), "test": result.test_metrics["metrics"] if result.test_metrics else None}


def run_in_child(script: str, overrides: list[str]) -> dict:
    out = Path(tempfile.mkdtemp()) / "r.json"
    subprocess.run([sys.executable, script, "--child", str(out), *overrides], check=True)
    return json.loads(out.read_text())


def child_main(argv: list[str]) -> bool:
    """If this process is a child (`--child OUT overrides...`), measure and write OUT; True if it was."""
    if len(argv) < 2 or argv[0] != "--child":
        return False
    Path(argv[1]).write_text(json.dumps(measure(argv[2:])))
    return True


def cpu_model() -> str:
    from plmforge.precision import cpu_name

    return cpu_name()


def environment() -> str:
    """Where a benchmark ran: the CPU model and its vector capability (bf16 is native only on some CPUs)."""
    import torch

    device = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU"
    return (f"{platform.machine()} {cpu_model()} (torch CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, {device}")


def write_section(title: str, body: list[str], key: str, rows: list[dict]) -> None:
    """Replace (or add) one section of benchmarks/results.md and one key of results.json."""
    md = HERE / "results.md"
    text = md.read_text() if md.exists() else "# Benchmark results\n"
    parts = text.split("\n## ")
    head, sections = parts[0], {p.split("\n", 1)[0]: p for p in parts[1:]}
    sections[title] = title + "\n\n" + "\n".join(body) + "\n"
    md.write_text(head.rstrip("\n") + "\n\n" + "\n## ".join([""] + [sections[k] for k in sorted(sections)]).lstrip("\n"))
    js = HERE / "results.json"
    blob = json.loads(js.read_text()) if js.exists() else {}
    blob[key] = {"environment": environment(), "rows": rows}
    js.write_text(json.dumps(blob, indent=2))
