"""Batch-size versus token-budget batching: the same training configuration, measured.

Trains AntiBERTy (method `full`, one epoch) on the bundled AMP peptides twice, once with fixed-size
batches and once with a token budget of the same mean batch size in padded tokens, each in its own
process so that peak memory is that run's own. Reports real (non-padding) tokens per second,
padding fraction and peak memory, and writes them to benchmarks/results.md and results.json.

    .venv/bin/python benchmarks/batching.py [--samples 1000] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run_one(mode: str, batch_size: int, max_tokens: int, samples: int, out_json: Path) -> None:
    """Child process: train one epoch and record what the sampler fed the model."""
    import numpy as np
    import torch

    from plmforge.config import load_config
    from plmforge.train.run import train

    tmp = Path(tempfile.mkdtemp())
    cfg = load_config(None, [
        f"data.dataset={REPO / 'examples' / 'data' / 'amp'}", "model.name=antiberty", "method.name=full",
        f"batching.mode={mode}", f"batching.batch_size={batch_size}", f"batching.max_tokens={max_tokens}",
        "training.epochs=1", f"data.max_samples={samples}", f"output.dir={tmp / 'run'}", "output.plots=false",
        "training.learning_rate=5e-5"])
    seen: dict = {}

    def record(epoch, trainer):  # the batches of this epoch, exactly as the sampler produced them
        loader = trainer.loader("train", train=True)
        loader.batch_sampler.set_epoch(epoch)
        lengths = trainer.asm.encoded["train"].lengths
        batches = list(loader.batch_sampler)
        seen["real"] = int(sum(lengths[i] for b in batches for i in b))
        seen["padded"] = int(sum(max(lengths[i] for i in b) * len(b) for b in batches))
        seen["batches"] = len(batches)

    t0 = time.time()
    result = train(cfg, callbacks=[record])
    wall = time.time() - t0
    epoch_seconds = result.fit.history[0]["seconds"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    out_json.write_text(json.dumps({
        "mode": mode, "batch_size": batch_size if mode == "size" else None,
        "max_tokens": max_tokens if mode == "tokens" else None, "train_samples": samples,
        "batches": seen["batches"], "real_tokens": seen["real"], "padded_tokens": seen["padded"],
        "padding_fraction": round(1 - seen["real"] / seen["padded"], 4),
        "train_epoch_seconds": epoch_seconds, "real_tokens_per_second": round(seen["real"] / epoch_seconds, 1),
        "peak_memory_mb": round(peak_mb, 1), "peak_memory_kind": "CUDA allocated" if torch.cuda.is_available()
        else "process max RSS", "wall_seconds": round(wall, 1),
        "val_loss": result.fit.history[0].get("val_loss"), "seed_note": "seed 42",
        "mean_length": float(np.mean(seen["real"] / max(1, samples))),
    }))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--child", nargs=4, metavar=("MODE", "BS", "TOKENS", "OUT"))
    args = p.parse_args()
    if args.child:
        mode, bs, tokens, out = args.child
        run_one(mode, int(bs), int(tokens), args.samples, Path(out))
        return
    # token budget with the same number of padded tokens per batch as batch_size x mean padded width
    budget = args.batch_size * 40
    rows = []
    for mode in ("size", "tokens"):
        out = Path(tempfile.mkdtemp()) / "r.json"
        subprocess.run([sys.executable, __file__, "--samples", str(args.samples), "--child", mode,
                        str(args.batch_size), str(budget), str(out)], check=True)
        rows.append(json.loads(out.read_text()))
    write_results(rows)


def write_results(rows: list[dict]) -> None:
    import torch

    env = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch " \
          f"{torch.__version__}, {'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}"
    (HERE / "results.json").write_text(json.dumps({"batching": rows, "environment": env}, indent=2))
    lines = ["# Benchmark results", "", "## Batching: fixed batch size vs token budget", "",
             f"AntiBERTy, method full, 1 epoch on {rows[0]['train_samples']} AMP training peptides "
             f"(bundled example), {env}. Produced by `benchmarks/batching.py`.", "",
             "| batching | batches | real tokens | padded tokens | padding fraction | real tokens/s | "
             "train epoch s | peak memory MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label = f"size {r['batch_size']}" if r["mode"] == "size" else f"tokens {r['max_tokens']}"
        lines.append(f"| {label} | {r['batches']} | {r['real_tokens']} | {r['padded_tokens']} | "
                     f"{r['padding_fraction']:.3f} | {r['real_tokens_per_second']:.0f} | "
                     f"{r['train_epoch_seconds']:.1f} | {r['peak_memory_mb']:.0f} ({r['peak_memory_kind']}) |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
