"""Speed and memory of the frozen-backbone store, the forward pass, LoRA training and prediction, on
real full-length proteins (CLEAN's EC data in ../shared/data/ec, read in place: its research-only
license forbids copying it), with the pretrained AntiBERTy. Each measurement runs in its own process,
so its peak resident memory is its own. Results go to benchmarks/results.md and results.json.

    .venv/bin/python benchmarks/speed.py [--parts store,forward,predict,lora] [--proteins 2000]

Parts: `store` — a frozen run of 20 epochs twice (the second with another head and learning rate
reads the store); `forward` — one pass over every protein: fixed batches of 32 in file order vs
length-sorted token budgets, eager vs SDPA attention, fp32 vs bf16, with the fraction of this CPU's
measured matmul FLOP/s reached; `predict` — `plmforge predict` on every protein vs a loop predicting
one sequence at a time; `lora` — one LoRA epoch: batch 16 padded to the longest vs a token budget of the
same mean batch size, eager vs SDPA, plus a plain HuggingFace `Trainer` script as users write it.
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

from common import HERE, REPO, environment, write_section

from plmforge.train.memory import process_peak_mb

EC = REPO.parent / "shared" / "data" / "ec" / "split10.csv"
WORK = Path(tempfile.gettempdir()) / "plmforge-speed-bench"


def peak_mb() -> float:
    return process_peak_mb()


def dataset(n: int, seed: int = 0) -> Path:
    """n EC proteins (seeded sample), label = EC class (level 1) of the first EC number, as a split dir."""
    import pandas as pd

    out = WORK / f"ec{n}"
    if (out / "test.csv").is_file():
        return out
    df = pd.read_csv(EC, sep="\t").sample(n=n, random_state=seed).reset_index(drop=True)
    df = pd.DataFrame({"id": df["Entry"], "aa_seq": df["Sequence"],
                       "label": [int(ec.split(";")[0].split(".")[0]) - 1 for ec in df["EC number"]]})
    out.mkdir(parents=True, exist_ok=True)
    cut = [int(0.8 * n), int(0.9 * n)]
    for name, part in zip(("train", "validation", "test"), (df[:cut[0]], df[cut[0]:cut[1]], df[cut[1]:]), strict=True):
        part.to_csv(out / f"{name}.csv", index=False)
    return out


# ---- parts (each runs in a child process) -------------------------------------------------------

def run_freeze(n: int, tag: str, extra: list[str]) -> dict:
    from plmforge.config import load_config
    from plmforge.train.run import train

    data = dataset(n)
    t0 = time.time()
    result = train(load_config(None, [
        f"data.dataset={data}", "model.name=antiberty", "method.name=freeze", "data.problem_type=single_label_classification",
        "data.num_labels=7", "training.epochs=20", "training.patience=null", "batching.mode=tokens",
        "batching.max_tokens=8000", f"method.cache_dir={WORK / 'store'}", f"output.dir={WORK / ('run_' + tag)}",
        "output.overwrite=true", "output.plots=false", *extra]))
    return {"run": tag, "wall_seconds": round(time.time() - t0, 1), "peak_memory_mb": round(peak_mb()),
            "test_accuracy": result.test_metrics["metrics"]["accuracy"], "test_mcc": result.test_metrics["metrics"]["mcc"]}


def matmul_flops(dtype_name: str, size: int = 2048, repeat: int = 5) -> float:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    t0 = time.time()
    for _ in range(repeat):
        a @ b
    return 2 * size**3 * repeat / (time.time() - t0)


def forward_pass(n: int, batching: str, attention: str, precision: str) -> dict:
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader

    from plmforge.config import BatchingConfig, DataConfig, ModelConfig
    from plmforge.data.batching import Collator
    from plmforge.data.readers import Table, read_file
    from plmforge.data.validate import table_to_records
    from plmforge.embed import _TASK
    from plmforge.inference import eval_loader
    from plmforge.models.backbone import load_backbone
    from plmforge.models.encoding import encode_records
    from plmforge.tasks import PROBLEM_TYPES

    data = dataset(n)
    bb = load_backbone(ModelConfig(name="antiberty", attention=attention))
    tables = [read_file(data / f"{s}.csv") for s in ("train", "validation", "test")]

    table = Table(pd.concat([t.df for t in tables], ignore_index=True), "ec")
    records = table_to_records(table, DataConfig(dataset="-"), None, with_labels=False)
    enc = encode_records(bb, records, _TASK, None, "all")
    collate = Collator(bb.family.pad_values(bb.tokenizer), PROBLEM_TYPES[_TASK.problem_type])
    if batching == "size32":
        loader = DataLoader(enc, batch_sampler=[list(range(i, min(i + 32, len(enc)))) for i in range(0, len(enc), 32)],
                            collate_fn=collate)
    else:
        loader = eval_loader(enc, BatchingConfig(mode="tokens", max_tokens=8000), collate)
    model = bb.model.eval()
    cfg = model.config
    params = sum(p.numel() for n_, p in model.named_parameters() if "embeddings" not in n_)
    real = padded = attn_flops = 0
    t0 = time.time()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for batch in loader:
            mask = batch["attention_mask"]
            model(**batch["inputs"], attention_mask=mask)
            real += int(mask.sum())
            padded += mask.numel()
            b, width = mask.shape
            attn_flops += 4 * cfg.num_hidden_layers * cfg.hidden_size * b * width * width
    seconds = time.time() - t0
    done_flops = 2 * params * padded + attn_flops  # the work the model really did, padding included
    peak = matmul_flops(precision)
    return {"batching": "fixed 32, file order" if batching == "size32" else "token budget 8000, length-sorted",
            "attention": attention, "precision": precision, "proteins": len(enc), "real_tokens": real,
            "padded_tokens": padded, "seconds": round(seconds, 1), "real_tokens_per_second": round(real / seconds),
            "gflops_per_second": round(done_flops / seconds / 1e9, 1), "matmul_gflops_per_second": round(peak / 1e9, 1),
            "fraction_of_matmul": round(done_flops / seconds / peak, 3), "peak_memory_mb": round(peak_mb())}


def predict_compare(n: int) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    import plmforge
    from plmforge.api import load_run

    rd = WORK / "run_first"
    if not (rd / "best").is_dir():
        raise SystemExit("run the store part first: predict uses its trained run")
    data = dataset(n)
    df = pd.concat([pd.read_csv(data / f"{s}.csv") for s in ("train", "validation", "test")], ignore_index=True)
    run = load_run(rd)
    t0 = time.time()
    batched = plmforge.predict(run, dict(zip(df["id"], df["aa_seq"], strict=True)))
    t_batched = time.time() - t0
    t0 = time.time()
    plmforge.predict(run, dict(zip(df["id"], df["aa_seq"], strict=True)), precision="bf16")
    t_bf16 = time.time() - t0
    # the loop users write: tokenise one sequence, run the model, softmax
    tok, model = run.backbone.tokenizer, run.model.eval()
    probs = []
    t0 = time.time()
    with torch.no_grad():
        for seq in df["aa_seq"]:
            enc = tok([" ".join(seq[:run.backbone.max_residues])], return_tensors="pt")
            hidden = model.backbone(**enc).last_hidden_state
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool)
            mask[0, 0] = mask[0, -1] = False  # [CLS] and [SEP]
            probs.append(torch.softmax(model.head(hidden, mask), -1)[0].numpy())
    t_loop = time.time() - t0
    agree = float(np.mean(np.stack(probs).argmax(1) == batched.predictions.scores.argmax(1)))
    max_diff = float(np.abs(np.stack(probs) - batched.predictions.scores).max())
    return {"proteins": len(df), "plmforge_predict_seconds": round(t_batched, 1), "bf16_seconds": round(t_bf16, 1),
            "one_at_a_time_seconds": round(t_loop, 1), "bf16_speedup": round(t_loop / t_bf16, 2),
            "speedup": round(t_loop / t_batched, 2), "same_prediction_fraction": agree, "max_probability_difference": max_diff}


def lora_epoch(n: int, batching: str, attention: str, checkpointing: str = "false", lean: str = "") -> dict:
    """`lean`: '' (the checkpoint's attention dropout, fp32), 'nodrop' (model.attention_dropout=0, so SDPA can use
    its fused kernel) or 'nodrop-bf16' (and bf16 autocast)."""
    from plmforge.config import load_config
    from plmforge.train.run import train

    data = dataset(n)
    seen = {"real": 0}

    def count(epoch, trainer):
        sampler = trainer.loader("train", train=True).batch_sampler
        sampler.set_epoch(epoch)
        lengths = trainer.asm.encoded["train"].lengths
        seen["real"] += int(sum(lengths[i] for b in sampler for i in b))

    result = train(load_config(None, [
        f"data.dataset={data}", "data.max_samples=400", "model.name=antiberty", "method.name=lora",
        f"model.attention={attention}", "data.problem_type=single_label_classification", "data.num_labels=7",
        "training.epochs=1", "batching.batch_size=16", f"batching.mode={'size' if batching == 'size16' else 'tokens'}",
        f"batching.max_tokens={16 * 360}", f"model.gradient_checkpointing={checkpointing != 'false'}",
        f"model.checkpoint_every={2 if checkpointing == 'every2' else 1}",
        f"output.dir={WORK / ('lora_' + batching + attention + checkpointing + lean)}",
        "output.overwrite=true", "output.plots=false",
        *(["model.attention_dropout=0"] if lean else []),
        *(["training.mixed_precision=bf16"] if lean.endswith("bf16") else [])]), callbacks=[count])
    seconds = result.fit.history[0]["seconds"]
    return {**lora_label(batching, attention, checkpointing, lean),
            "train_seconds": seconds, "real_tokens_per_second": round(seen["real"] / seconds),
            "peak_memory_mb": round(peak_mb())}


def lora_label(batching: str, attention: str, checkpointing: str = "false", lean: str = "") -> dict:
    return {"batching": "batch 16, padded to the longest" if batching == "size16" else f"token budget {16 * 360}",
            "attention": attention + {"true": " + gradient checkpointing", "false": "",
                                      "every2": " + gradient checkpointing of every 2nd layer"}[checkpointing]
            + (" + attention dropout 0" if lean else "") + (" + bf16" if lean.endswith("bf16") else "")}


def hf_trainer_baseline(n: int) -> dict:
    """What users write without plmforge: HF Trainer + peft LoRA, pad-to-longest batches of 16, 1 epoch."""
    import pandas as pd
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        BertForSequenceClassification,
        BertTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from plmforge.models.zoo import antiberty_files

    data = dataset(n)
    df = pd.read_csv(data / "train.csv")
    df = df.sample(n=min(360, len(df)), random_state=42)  # as many as plmforge trains on (400 sampled, 40 carved)
    ckpt, vocab = antiberty_files()
    tok = BertTokenizer(vocab, do_lower_case=False)
    model = BertForSequenceClassification.from_pretrained(ckpt, num_labels=7)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["query", "key", "value"],
                                             task_type="SEQ_CLS"))
    rows = [dict(tok(" ".join(s[:510])), labels=int(y)) for s, y in zip(df["aa_seq"], df["label"], strict=True)]
    real = sum(len(r["input_ids"]) for r in rows)
    args = TrainingArguments(output_dir=str(WORK / "hf"), per_device_train_batch_size=16, num_train_epochs=1,
                             learning_rate=5e-4, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tok))
    t0 = time.time()
    trainer.train()
    seconds = time.time() - t0
    return {"batching": "HF Trainer, batch 16 padded to the longest", "attention": model.config._attn_implementation,
            "train_seconds": round(seconds, 1), "real_tokens_per_second": round(real / seconds),
            "peak_memory_mb": round(peak_mb())}


CHILD = {"freeze": run_freeze, "forward": forward_pass, "predict": predict_compare, "lora": lora_epoch,
         "hf": hf_trainer_baseline}


def child(name: str, out: str, args: list[str]) -> None:
    n = int(args[0])
    rest = args[1:]
    if name == "freeze":
        row = run_freeze(n, rest[0], rest[1:])
    else:
        row = CHILD[name](n, *rest)
    Path(out).write_text(json.dumps(row))


def in_child(name: str, *args: object) -> dict:
    out = Path(tempfile.mkdtemp()) / "row.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, __file__, "--child", name, str(out), *map(str, args)], check=True, env=env)
    row = json.loads(out.read_text())
    print(name, row, flush=True)
    return row


# ---- report -------------------------------------------------------------------------------------

def run_store_part(n: int) -> None:
    import shutil

    shutil.rmtree(WORK / "store", ignore_errors=True)
    first = in_child("freeze", n, "first", "training.learning_rate=0.001")
    second = in_child("freeze", n, "second", "training.learning_rate=0.0003", "head.dropout=0.2")
    ratio = second["wall_seconds"] / first["wall_seconds"]
    body = [f"{n} EC proteins (CLEAN split10, seeded sample; 80/10/10 split; EC class as label), AntiBERTy frozen, "
            f"mean head, 20 epochs, token budget 8000; {environment()}. Produced by `benchmarks/speed.py --parts store`.",
            "", "| run | wall s | peak memory MB | test accuracy | test MCC |", "|---|---|---|---|---|"]
    body += [f"| {r['run']} | {r['wall_seconds']} | {r['peak_memory_mb']} | {r['test_accuracy']:.3f} | "
             f"{r['test_mcc']:.3f} |" for r in (first, second)]
    body += ["", f"Second run (other learning rate and dropout, same store) took {100 * ratio:.1f} % of the first "
             f"(goal <= 10 %: {'met' if ratio <= 0.10 else 'not met'}); peak memory with the mean head "
             f"{max(first['peak_memory_mb'], second['peak_memory_mb'])} MB (goal <= 1536 MB: "
             f"{'met' if max(first['peak_memory_mb'], second['peak_memory_mb']) <= 1536 else 'not met'})."]
    write_section("Speed 1: frozen backbone and the embedding store", body, "speed_store", [first, second])


def run_forward_part(n: int) -> None:
    rows = [in_child("forward", n, b, a, p) for b, a, p in
            (("size32", "eager", "fp32"), ("tokens", "eager", "fp32"), ("tokens", "sdpa", "fp32"),
             ("tokens", "sdpa", "bf16"))]
    base = rows[0]["real_tokens_per_second"]
    body = [f"One forward pass of AntiBERTy over all {rows[0]['proteins']} EC proteins ({rows[0]['real_tokens']} real "
            f"tokens, truncated at 510 residues); {environment()}. Produced by `benchmarks/speed.py --parts forward`. "
            "FLOP/s counts the work done (2 x non-embedding parameters per token, padding included, plus attention); "
            "the matmul reference is a 2048 x 2048 matmul in the same dtype, measured in the same process.", "",
            "| batching | attention | precision | padded tokens | s | real tokens/s | x baseline | GFLOP/s | "
            "matmul GFLOP/s | fraction | peak MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    body += [f"| {r['batching']} | {r['attention']} | {r['precision']} | {r['padded_tokens']} | {r['seconds']} | "
             f"{r['real_tokens_per_second']} | {r['real_tokens_per_second'] / base:.2f} | {r['gflops_per_second']} | "
             f"{r['matmul_gflops_per_second']} | {r['fraction_of_matmul']:.2f} | {r['peak_memory_mb']} |" for r in rows]
    best = rows[-1]["real_tokens_per_second"] / base
    body += ["", f"bf16 + SDPA + length-sorted token budgets: {best:.2f}x the fixed-batch fp32 eager baseline "
             f"(goal >= 2x: {'met' if best >= 2 else 'not met'})."]
    write_section("Speed 2: forward pass", body, "speed_forward", rows)


def run_predict_part(n: int) -> None:
    row = in_child("predict", n)
    body = [f"Predicting all {row['proteins']} EC proteins with the trained frozen-AntiBERTy run of part 1: "
            f"`plmforge.predict` (the run's token-budget batches, fp32) vs a loop that tokenises and predicts one "
            f"sequence at a time; {environment()}. Produced by `benchmarks/speed.py --parts predict`.", "",
            "| plmforge predict s | with --precision bf16 s | one-at-a-time s | speed-up (fp32, bf16) | same predicted "
            "class | max probability difference |", "|---|---|---|---|---|---|",
            f"| {row['plmforge_predict_seconds']} | {row['bf16_seconds']} | {row['one_at_a_time_seconds']} | "
            f"{row['speedup']}, {row['bf16_speedup']} | {row['same_prediction_fraction']:.3f} | "
            f"{row['max_probability_difference']:.1e} |", "",
            f"Goal >= 5x: {'met' if max(row['speedup'], row['bf16_speedup']) >= 5 else 'not met'}."]
    write_section("Speed 4: prediction", body, "speed_predict", [row])


LORA_ROWS = (("size16", "eager"), ("size16", "sdpa"), ("tokens", "eager"), ("tokens", "sdpa"),
             ("tokens", "sdpa", "true"), ("tokens", "sdpa", "false", "nodrop"),
             ("tokens", "sdpa", "false", "nodrop-bf16"), ("tokens", "sdpa", "true", "nodrop-bf16"),
             ("tokens", "sdpa", "every2", "nodrop-bf16"))


def run_lora_part(n: int, reuse: bool = False) -> None:
    """`reuse`: take the rows already in results.json (same labels) and measure only the missing ones."""
    old = json.loads((HERE / "results.json").read_text()).get("speed_lora", {}).get("rows", []) if reuse else []
    known = {(r["batching"], r["attention"]): r for r in old}
    rows = [known.get(tuple(lora_label(*args).values())) or in_child("lora", n, *args) for args in LORA_ROWS]
    hf_row = next((r for r in old if r["batching"].startswith("HF Trainer")), None)
    rows.append(hf_row or in_child("hf", n))
    base, hf = rows[0]["real_tokens_per_second"], rows[-1]["real_tokens_per_second"]
    best = max(rows[:-1], key=lambda r: r["real_tokens_per_second"])
    lean = [r for r in rows[:-1] if r["peak_memory_mb"] <= 3072]
    lean_best = max(lean, key=lambda r: r["real_tokens_per_second"]) if lean else None
    body = [f"One LoRA epoch (rank 8 on query/key/value) of AntiBERTy on 360 EC training proteins (400 sampled, 40 "
            f"carved for validation); {environment()}. Produced by `benchmarks/speed.py --parts lora`.", "",
            "| batching | attention | train s | real tokens/s | x batch-16 eager | x HF Trainer | peak MB |",
            "|---|---|---|---|---|---|---|"]
    body += [f"| {r['batching']} | {r['attention']} | {r['train_seconds']} | {r['real_tokens_per_second']} | "
             f"{r['real_tokens_per_second'] / base:.2f} | {r['real_tokens_per_second'] / hf:.2f} | {r['peak_memory_mb']} |"
             for r in rows]
    body += ["", f"Best plmforge setting ({best['batching']}, {best['attention']}): "
             f"{best['real_tokens_per_second'] / base:.2f}x batch-16 eager (goal >= 2x), "
             f"{best['real_tokens_per_second'] / hf:.2f}x the HF Trainer script (goal >= 1.5x), peak "
             f"{best['peak_memory_mb']} MB (goal <= 3072 MB).",
             "" if lean_best is None else
             f"Fastest setting within 3072 MB ({lean_best['batching']}, {lean_best['attention']}): "
             f"{lean_best['real_tokens_per_second'] / base:.2f}x batch-16 eager, "
             f"{lean_best['real_tokens_per_second'] / hf:.2f}x the HF Trainer script, peak "
             f"{lean_best['peak_memory_mb']} MB (both goals together: "
             f"{'met' if lean_best['real_tokens_per_second'] >= 2 * base else 'not met'}).", "",
             "Why attention dropout matters: AntiBERTy's checkpoint sets attention dropout 0.1, and PyTorch's SDPA "
             "has no fused CPU kernel with dropout, so it falls back to the unfused one that keeps every heads x L x L "
             "matrix for the backward pass; `model.attention_dropout=0` lets the fused kernel run (ESM-2 checkpoints "
             "already use 0). bf16 autocast (`training.mixed_precision=bf16`) halves the remaining activations."]
    write_section("Speed 3: LoRA training", body, "speed_lora", rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="store,forward,predict,lora")
    p.add_argument("--proteins", type=int, default=2000)
    p.add_argument("--reuse", action="store_true", help="lora part: measure only rows missing from results.json")
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for part in args.parts.split(","):
        {"store": run_store_part, "forward": run_forward_part, "predict": run_predict_part,
         "lora": lambda n: run_lora_part(n, args.reuse)}[part](args.proteins)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        sys.path.insert(0, str(HERE))
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
