"""LoRA on AntiBERTy: plmforge's default run next to the lean settings, bf16 and a VenusFactory-style loop.

Real data: proteins from the EC split of CLEAN (../shared/data/ec/split10.csv, research-use licence: read
from the shared folder, never copied into the project) with one EC number each, labelled by its first
level (7 classes); a seeded draw of 320 / 40 / 40 proteins (train / validation / test); residues
beyond AntiBERTy's 510 are cut as each tool cuts them. One epoch, LoRA rank 8 / alpha 32 / dropout 0.1 on
query, key and value, AdamW at 5e-4, mean pooling, fp32 unless the row says bf16. Every row runs in its own
process (peak memory = that process's maximum resident set: model, data and Python included).

Rows:
  * incumbent: a VenusFactory-style plain loop (batches of 16 in shuffled order, padded to the longest,
    gradient checkpointing on every layer, the checkpoint's attention dropout), written here with
    transformers + peft;
  * defaults: `plmforge train method.name=lora` with nothing else set (on a CPU the memory plan runs each
    batch of 16 as length-sorted parts of at most 512 padded tokens);
  * whole: the same with batching.micro_batch_tokens=0 (batches run whole: the defaults before the plan);
  * micro-N: parts of at most N padded tokens, nothing else changed;
  * lean: token budget 4800, model.attention_dropout=0, model.checkpoint_every=2 (the issue's lean setting);
  * lean-memory: token budget 3200, attention dropout 0, no recomputation;
  * micro-512-no-attention-dropout: the defaults with model.attention_dropout=0 (PyTorch's fused attention);
  * defaults-torch-dropout: the defaults with model.fast_dropout=false (torch's own one-thread generator draws
    the dropout masks; rows measured before model.fast_dropout existed used it too);
  * bf16: lean with training.mixed_precision=bf16 — refused where bf16 is emulated (the refusal and the
    probe's numbers are recorded instead of a 100x slower run).

`--avx2` runs every child with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: PyTorch then uses its AVX2
kernels and oneDNN no AVX512/AMX instructions, as on a CPU without native bf16 (how the issue's machine runs).

    python benchmarks/lora_defaults.py [--avx2] [--rows incumbent,defaults,whole,micro-512,...] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, write_section  # noqa: E402

EC = REPO.parent / "shared" / "data" / "ec" / "split10.csv"
SIZES = {"train": 320, "validation": 40, "test": 40}
LR = 5e-4
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
ROWS = {
    "defaults": [],
    "whole": ["batching.micro_batch_tokens=0"],  # batches of 16 run whole: the defaults before the memory plan
    # micro-batches of a given size (on a CPU the memory plan splits batches into parts), nothing else changed
    "micro-512": ["batching.micro_batch_tokens=512"],
    "micro-1024": ["batching.micro_batch_tokens=1024"],
    "micro-1536": ["batching.micro_batch_tokens=1536"],
    "micro-2048": ["batching.micro_batch_tokens=2048"],
    "lean": ["batching.mode=tokens", "batching.max_tokens=4800", "model.attention_dropout=0",
             "model.gradient_checkpointing=true", "model.checkpoint_every=2"],
    "lean-memory": ["batching.mode=tokens", "batching.max_tokens=3200", "model.attention_dropout=0",
                    "model.gradient_checkpointing=false"],
    "micro-512-no-attention-dropout": ["batching.micro_batch_tokens=512", "model.attention_dropout=0"],
    "defaults-torch-dropout": ["model.fast_dropout=false"],  # the defaults with torch's own dropout masks
    "bf16": ["batching.mode=tokens", "batching.max_tokens=4800", "model.attention_dropout=0",
             "model.gradient_checkpointing=true", "model.checkpoint_every=2", "training.mixed_precision=bf16"],
}


def make_data(out: Path, seed: int = 0) -> dict[str, Path]:
    """Seeded 320/40/40 draw of single-EC proteins, label = EC level 1."""
    import numpy as np

    with EC.open() as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if ";" not in r["EC number"]]
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(rows))[:sum(SIZES.values())]
    paths, start = {}, 0
    for split, n in SIZES.items():
        path = out / f"{split}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "sequence", "label"])
            for i in pick[start:start + n]:
                r = rows[i]
                w.writerow([r["Entry"], r["Sequence"], int(r["EC number"].split(".")[0]) - 1])  # EC 1-7 as 0-6
        paths[split] = path
        start += n
    return paths


def _read(path: Path) -> tuple[list[str], list[str]]:
    """Sequences and labels of one split file."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return [r["sequence"] for r in rows], [r["label"] for r in rows]


def _peak_mb() -> float:
    from plmforge.train.memory import process_peak_mb

    return process_peak_mb()


def plmforge_child(data: dict[str, Path], overrides: list[str]) -> dict:
    from plmforge.config import load_config
    from plmforge.errors import PlmforgeError
    from plmforge.train.run import train

    tmp = Path(tempfile.mkdtemp())
    base = [f"data.train={data['train']}", f"data.validation={data['validation']}", f"data.test={data['test']}",
            "data.sequence_column=sequence", "data.label_column=label", "data.problem_type=single_label_classification",
            "model.name=antiberty", "method.name=lora", "training.epochs=1", f"training.learning_rate={LR}",
            "training.seed=0", f"output.dir={tmp / 'run'}", "output.plots=false"]
    try:
        cfg = load_config(None, [*base, *overrides])
        result = train(cfg, progress=False)
    except PlmforgeError as exc:
        return {"refused": str(exc)}
    import yaml

    resolved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    m = resolved["model"]
    estimate = json.loads((result.run_dir / "memory_estimate.json").read_text())
    seconds = sum(h["seconds"] for h in result.fit.history)
    real = sum(min(len(seq), 510) + 2 for seq in _read(data["train"])[0])  # residues (cut at 510), [CLS], [SEP]
    return {"train_seconds": round(seconds, 1), "peak_memory_mb": round(_peak_mb(), 1),
            "real_tokens_per_second": round(real / seconds, 1) if real else None,
            "estimate_mb": round(estimate["total_mb"]), "test": result.test_metrics["metrics"],
            "resolved": {"batching": resolved["batching"]["mode"], "max_tokens": resolved["batching"]["max_tokens"],
                         "batch_size": resolved["batching"]["batch_size"],
                         "gradient_checkpointing": m["gradient_checkpointing"], "checkpoint_every": m["checkpoint_every"],
                         "micro_batch_tokens": resolved["batching"].get("micro_batch_tokens") or 0,
                         "attention_dropout": m["attention_dropout"],
                         "fast_dropout": m.get("fast_dropout", False)}}


def incumbent_child(data: dict[str, Path]) -> dict:
    """A VenusFactory-style plain loop: shuffled batches of 16 padded to the longest, gradient
    checkpointing, LoRA through peft, mean pooling and a linear classifier, one epoch; then the test split."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from sklearn.metrics import accuracy_score, matthews_corrcoef
    from transformers import BertModel, BertTokenizer

    from plmforge.models.zoo import antiberty_files

    torch.manual_seed(0)
    ckpt, vocab = antiberty_files()
    tok = BertTokenizer(vocab, do_lower_case=False)
    bert = BertModel.from_pretrained(ckpt, add_pooling_layer=False, attn_implementation="sdpa")
    bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    bert = get_peft_model(bert, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                           target_modules=["query", "key", "value"]))

    seqs, labels = _read(data["train"])
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(c) for c in labels])
    head = torch.nn.Linear(bert.base_model.model.config.hidden_size, len(classes))
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=LR)

    def encode(batch: list[str]) -> dict:
        return tok([" ".join(s[:510]) for s in batch], padding="longest", return_tensors="pt")

    def forward(enc: dict) -> torch.Tensor:
        hidden = bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1))

    order = np.random.default_rng(0).permutation(len(seqs))
    bert.train()
    t0 = time.time()
    real = 0
    for start in range(0, len(order), 16):
        idx = order[start:start + 16]
        enc = encode([seqs[i] for i in idx])
        real += int(enc["attention_mask"].sum())
        loss = torch.nn.functional.cross_entropy(forward(enc), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.time() - t0
    bert.eval()
    tseqs, tlabels = _read(data["test"])
    preds = []
    with torch.inference_mode():
        for start in range(0, len(tseqs), 32):
            preds += forward(encode(tseqs[start:start + 32])).argmax(-1).tolist()
    truth = [classes.index(c) if c in classes else -1 for c in tlabels]
    return {"train_seconds": round(seconds, 1), "peak_memory_mb": round(_peak_mb(), 1),
            "real_tokens_per_second": round(real / seconds, 1),
            "test": {"accuracy": accuracy_score(truth, preds), "mcc": matthews_corrcoef(truth, preds)}}


def run_child(row: str, data_dir: Path, avx2: bool) -> dict:
    out = Path(tempfile.mkdtemp()) / "r.json"
    env = {**os.environ, **(AVX2_ENV if avx2 else {})}
    subprocess.run([sys.executable, __file__, "--child", row, str(data_dir), str(out)], check=True, env=env)
    return json.loads(out.read_text())


def child(row: str, data_dir: Path, out: Path) -> None:
    data = {s: data_dir / f"{s}.csv" for s in SIZES}
    result = incumbent_child(data) if row == "incumbent" else plmforge_child(data, ROWS[row])
    if row == "bf16" or "refused" in result:
        from plmforge.precision import native_low_precision
        import torch

        probe = native_low_precision(torch.bfloat16, torch.device("cpu"))
        result["bf16_probe"] = {"native": probe.native, "reason": probe.reason}
    result["environment"] = environment()
    out.write_text(json.dumps(result))


def render(rows: list[dict]) -> list[str]:
    inc = next((r for r in rows if r["row"] == "incumbent" and "train_seconds" in r), None)
    body = ["One epoch of LoRA on AntiBERTy over 320 proteins (EC level 1, 7 classes; validation 40, test 40; "
            "produced by `benchmarks/lora_defaults.py`). Speed-up and memory are relative to the "
            "VenusFactory-style loop in the same environment, run in the same sitting (`reference_seconds` in "
            "results.json: this machine's speed drifted, the incumbent took 387 s early in the afternoon and 488-498 s "
            "late, so only rows of one sitting compare to the second). The test split has 40 proteins: test numbers "
            "after one epoch say that a run learned, not which setting is more accurate.", "",
            "| environment | row | settings as resolved | train s | speed-up | real tokens/s | peak MB | "
            "estimate MB | test MCC | test accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    order = ["incumbent", *ROWS]
    rows = sorted(rows, key=lambda r: (r["environment"], order.index(r["row"]) if r["row"] in order else len(order)))
    for r in rows:
        env = r["environment"]
        if "refused" in r:
            body.append(f"| {env} | {r['row']} | refused: {r['refused'].splitlines()[0][:200]} | | | | | | | |")
            continue
        res = r.get("resolved")
        settings = ("batches of 16 padded to the longest, checkpointing every layer, attention dropout 0.1"
                    if res is None else
                    (f"{res['batching']} "
                     + (f"{res['max_tokens']} tokens" if res["batching"] == "tokens" else f"{res['batch_size']}")
                     + (f", parts of <= {res['micro_batch_tokens']} tokens" if res.get("micro_batch_tokens") else ", whole")
                     + f", checkpointing {'every ' + str(res['checkpoint_every']) if res['gradient_checkpointing'] else 'off'}"
                     + f", attention dropout {res['attention_dropout'] if res['attention_dropout'] is not None else 'checkpoint (0.1)'}"
                     + (", hashed dropout masks" if res.get("fast_dropout") else ", torch's dropout masks")))
        base = next((x for x in rows if x["row"] == "incumbent" and x["environment"] == env and "train_seconds" in x),
                    inc)
        reference = r.get("reference_seconds") or (base["train_seconds"] if base else None)
        speed = f"{reference / r['train_seconds']:.2f}x" if reference else "-"
        t = r["test"]
        runs = r.get("train_seconds_runs")
        seconds = f"{r['train_seconds']:.0f}" + (f" ({min(runs):.0f}-{max(runs):.0f}, {len(runs)} runs)" if runs else "")
        body.append(f"| {env} | {r['row']} | {settings} | {seconds} | {speed} | "
                    f"{r['real_tokens_per_second'] or 0:.0f} | {r['peak_memory_mb']:.0f} | {r.get('estimate_mb', '-')} | "
                    f"{t['mcc']:.3f} | {t['accuracy']:.3f} |")
    for r in rows:
        base = next((x for x in rows if x["row"] == "incumbent" and x["environment"] == r["environment"]
                     and "train_seconds" in x), None)
        if r["row"] == "defaults" and base and "train_seconds" in r:
            reference = r.get("reference_seconds") or base["train_seconds"]
            speed, mem = reference / r["train_seconds"], r["peak_memory_mb"] / base["peak_memory_mb"]
            met = "met" if speed >= 3 and mem <= 1 else "not met"
            body += ["", f"Goal (defaults >= 3x the incumbent's speed at <= its peak memory) on {r['environment']}: "
                     f"{speed:.2f}x the speed at {mem:.2f}x the memory: {met}."]
    return body


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--avx2", action="store_true", help="run as on a CPU with AVX2 only (no native bf16)")
    p.add_argument("--rows", default=",".join(["incumbent", *ROWS]))
    p.add_argument("--keep", action="store_true", help="add to the rows already in results.json")
    p.add_argument("--repeat", type=int, default=1, help="runs per row (the median is reported, with the range)")
    args = p.parse_args()
    data_dir = Path(tempfile.mkdtemp())
    make_data(data_dir)
    rows = []
    if args.keep:
        from common import HERE

        rows = json.loads((HERE / "results.json").read_text()).get("lora_defaults", {}).get("rows", [])
    names = args.rows.split(",")
    measured: dict[str, list[dict]] = {row: [] for row in names}
    for _ in range(args.repeat):  # rounds over the rows, so a drift of the machine's speed hits every row alike
        for row in names:
            measured[row].append(run_child(row, data_dir, args.avx2))
    stored = next((x for x in rows if x["row"] == "incumbent" and "train_seconds" in x), None)
    now = measured.get("incumbent")
    reference = (sorted(x["train_seconds"] for x in now)[len(now) // 2] if now else
                 stored["train_seconds"] if stored else None)
    for row in names:
        runs = measured[row]
        r = runs[0]
        if len(runs) > 1 and "train_seconds" in r:  # the median run, with every run's time and the largest peak
            r = sorted(runs, key=lambda x: x["train_seconds"])[len(runs) // 2]
            r["train_seconds_runs"] = [x["train_seconds"] for x in runs]
            r["peak_memory_mb"] = max(x["peak_memory_mb"] for x in runs)
        r["row"] = row
        r["reference_seconds"] = reference
        print(json.dumps(r), flush=True)
        rows = [x for x in rows if not (x["row"] == row and x["environment"] == r["environment"])] + [r]
        write_section("LoRA defaults", render(rows), "lora_defaults", rows)


if __name__ == "__main__":
    main()
