"""Batch-size versus token-budget batching: the same training configuration, measured.

Trains AntiBERTy (method `full`, one epoch) on bundled AMP peptides twice, with fixed-size batches and
with a token budget, each in its own process. Reports real (non-padding) tokens per second, padding
fraction and peak memory into benchmarks/results.md and results.json.

    .venv/bin/python benchmarks/batching.py [--samples 600] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import sys

from common import REPO, child_main, environment, run_in_child, write_section


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    budget = args.batch_size * 40  # the same padded tokens per batch as batch_size rows of 40 tokens
    base = [f"data.dataset={REPO / 'examples' / 'data' / 'amp'}", "model.name=antiberty", "method.name=full",
            "training.epochs=1", f"data.max_samples={args.samples}", "training.learning_rate=5e-5",
            f"batching.batch_size={args.batch_size}", f"batching.max_tokens={budget}"]
    rows = []
    for mode in ("size", "tokens"):
        row = run_in_child(__file__, [*base, f"batching.mode={mode}"])
        row["batching"] = f"size {args.batch_size}" if mode == "size" else f"tokens {budget}"
        rows.append(row)
    body = [f"AntiBERTy, method full, 1 epoch on {args.samples} AMP training peptides (bundled example), "
            f"{environment()}. Produced by `benchmarks/batching.py`.", "",
            "| batching | batches | real tokens | padded tokens | padding fraction | real tokens/s | train s | "
            "peak memory MB |", "|---|---|---|---|---|---|---|---|"]
    body += [f"| {r['batching']} | {r['batches']} | {r['real_tokens']} | {r['padded_tokens']} | "
             f"{r['padding_fraction']:.3f} | {r['real_tokens_per_second']:.0f} | {r['train_seconds']:.1f} | "
             f"{r['peak_memory_mb']:.0f} ({r['peak_memory_kind']}) |" for r in rows]
    write_section("Batching: fixed batch size vs token budget", body, "batching", rows)
    print("\n".join(body))


if __name__ == "__main__":
    if not child_main(sys.argv[1:]):
        main()
