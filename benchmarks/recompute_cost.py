"""What gradient checkpointing costs per LoRA step on AntiBERTy: one step (forward, backward, AdamW) on a batch
of 16 x 512 random tokens, with nothing recomputed, every layer recomputed, or every second layer, with the
checkpoint's attention dropout (0.1: PyTorch's SDPA falls back to its unfused kernel) and without it. Each
setting runs in its own process (peak = that process's maximum resident set); mean of steps 2-4.

    python benchmarks/recompute_cost.py [--avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_section  # noqa: E402

SETTINGS = [(every, drop) for drop in (0.1, 0.0) for every in (None, 1, 2)]
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def child(every: int | None, dropout: float, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertModel

    from plmforge.models.backbone import enable_checkpointing
    from plmforge.models.zoo import antiberty_files
    from plmforge.train.memory import process_peak_mb

    torch.manual_seed(0)
    ckpt, _ = antiberty_files()
    bert = BertModel.from_pretrained(ckpt, add_pooling_layer=False, attn_implementation="sdpa",
                                     attention_probs_dropout_prob=dropout)
    if every is not None:
        enable_checkpointing(bert, every)
    bert = get_peft_model(bert, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["query", "key", "value"]))
    opt = torch.optim.AdamW([p for p in bert.parameters() if p.requires_grad], lr=1e-4)
    bert.train()
    ids = torch.randint(5, 25, (16, 512))
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.mean().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    out.write_text(json.dumps({"every": every, "attention_dropout": dropout, "step_seconds": round(sum(times[1:]) / 3, 2),
                               "peak_memory_mb": round(process_peak_mb()), "environment": environment()}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(None if sys.argv[2] == "none" else int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--avx2", action="store_true", help="run as on a CPU with AVX2 only (no native bf16)")
    args = p.parse_args()
    env = {**os.environ, **(AVX2_ENV if args.avx2 else {})}
    rows = []
    for every, drop in SETTINGS:
        out = Path(tempfile.mkdtemp()) / "r.json"
        subprocess.run([sys.executable, __file__, "--child", "none" if every is None else str(every), str(drop),
                        str(out)], check=True, env=env)
        rows.append(json.loads(out.read_text()))
        print(rows[-1], flush=True)
    body = ["One LoRA step (rank 8 on query/key/value; forward, backward, AdamW) of AntiBERTy on 16 x 512 random "
            "tokens, mean of steps 2-4, each setting in its own process (`benchmarks/recompute_cost.py`).", "",
            "| environment | attention dropout | recomputed layers | step s | vs nothing recomputed | peak MB |",
            "|---|---|---|---|---|---|"]
    for r in rows:
        base = next(x for x in rows if x["every"] is None and x["attention_dropout"] == r["attention_dropout"])
        what = "none" if r["every"] is None else ("every layer" if r["every"] == 1 else f"every {r['every']}nd")
        body.append(f"| {r['environment']} | {r['attention_dropout']} | {what} | {r['step_seconds']:.2f} | "
                    f"{r['step_seconds'] / base['step_seconds']:.2f}x | {r['peak_memory_mb']} |")
    write_section("Recompute cost", body, "recompute_cost", rows)
    print("\n".join(body))


if __name__ == "__main__":
    main()
