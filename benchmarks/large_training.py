"""Training on large synthetic CSV files with the splits in memory and on disk (data.storage): the whole
`plmforge train` pipeline on 100,000 rows, and the data path (read, validate, tokenise, one epoch of
collated batches) on millions; wall time and the peak resident set of the process. Results:
benchmarks/results.md ("Training on large datasets") and results.json.

    .venv/bin/python benchmarks/large_training.py [--train-rows 100000] [--rows 1000000] [--disk-only 3000000]
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

from common import write_section
from large_data import make_csv


def tiny_esm(directory: Path) -> Path:
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVESIKRDTPNQFYMHCWXBUZO", ".", "-", "<null_1>", "<mask>"]
    (directory / "vocab.txt").write_text("\n".join(vocab))
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=512, pad_token_id=1, mask_token_id=len(vocab) - 1,
                    position_embedding_type="absolute", token_dropout=False)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(directory)
    EsmTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    return directory


def run(train: Path, test: Path, model: Path, storage: str, out: Path) -> dict:
    """The whole `plmforge train` pipeline, sequences cut to 64 residues so that the epoch is affordable here."""
    code = ("import sys; from plmforge.cli import main; from plmforge.train.memory import process_peak_mb; "
            "rc = main(sys.argv[1:]); print('PEAK', process_peak_mb(), flush=True); sys.exit(rc)")
    args = ["train", "--train-file", str(train), "--test-file", str(test), "--model", str(model),
            "--problem-type", "single_label_classification", "--method", "full", "--epochs", "1",
            "--output", str(out), "data.storage=" + storage, "model.max_length=64", "batching.mode=tokens",
            "batching.max_tokens=8000", "training.logging_steps=500", "output.plots=false", "output.bootstrap=0",
            "output.baselines=false", "model.attention_dropout=0"]
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, "PLMFORGE_CACHE_DIR": str(out.parent / "store")})
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    epoch = json.loads((out / "metrics_epochs.jsonl").read_text().splitlines()[0])
    return {"what": "plmforge train", "storage": storage, "seconds": round(wall, 1),
            "epoch_seconds": epoch["seconds"], "peak_mb": round(float(res.stdout.rsplit("PEAK", 1)[1].split()[0]))}


DATA_PATH = """
import sys, time
import torch
from torch.utils.data import DataLoader
from plmforge.config import load_config
from plmforge.data.batching import make_batch_sampler
from plmforge.train.memory import process_peak_mb
from plmforge.train.setup import assemble
t0 = time.perf_counter()
asm = assemble(load_config(None, sys.argv[1:]))
t1 = time.perf_counter()
data = asm.encoded["train"]
sampler = make_batch_sampler(data.lengths, "tokens", 0, 16000, 0, True)
tokens = 0
for batch in DataLoader(data, batch_sampler=sampler, collate_fn=asm.collator()):
    tokens += int(batch["attention_mask"].sum())
t2 = time.perf_counter()
print("RESULT", t1 - t0, t2 - t1, tokens, process_peak_mb(), flush=True)
"""


def data_path(train: Path, model: Path, storage: str, out: Path) -> dict:
    """What training does with the data at full length: read, validate, tokenise and carve (assemble),
    then one epoch of shuffled token batches collated from the split (no model step)."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", DATA_PATH, f"data.train={train}", f"model.name={model}",
                          "data.problem_type=single_label_classification", f"data.storage={storage}"],
                         capture_output=True, text=True, env={**os.environ, "PLMFORGE_CACHE_DIR": str(out / "store")})
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    setup, loader, tokens, peak = map(float, res.stdout.rsplit("RESULT", 1)[1].split())
    return {"what": "data path", "storage": storage, "seconds": round(wall, 1), "setup_seconds": round(setup, 1),
            "epoch_of_batches_seconds": round(loader, 1), "tokens": int(tokens), "peak_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--disk-only", type=int, nargs="*", default=[3_000_000])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = tiny_esm(tmp / "esm")
    test = tmp / "test.csv"
    make_csv(test, 5_000, seed=1)
    rows = []
    for n in sorted({*args.train_rows, *args.rows, *args.disk_only}):
        path = tmp / f"rows_{n}.csv"
        make_csv(path, n)
        size = os.path.getsize(path) / 2**20
        for storage in ("disk", "memory"):
            if n in args.train_rows:
                rows.append({"rows": n, "file_mb": round(size), **run(path, test, model, storage, tmp / f"run_{n}_{storage}")})
                print(rows[-1], flush=True)
            if n in args.rows or (n in args.disk_only and storage == "disk"):
                rows.append({"rows": n, "file_mb": round(size), **data_path(path, model, storage, tmp)})
                print(rows[-1], flush=True)
        path.unlink()
    body = ["Synthetic CSV files of random sequences of 50-400 residues with binary labels (validation carved from "
            "them, 10%); a tiny random ESM (1 layer, 32 wide), so that the data's share of memory is what grows; "
            "2 CPU cores, each run in a fresh process. `disk` = `data.storage=disk` (the default from 64 MB of "
            "split files): read in chunks, validated, the records and their tokens kept in files on disk, read back row by row; "
            "`memory` = `data.storage=memory` (everything in Python lists). Peak = the process's maximum resident "
            "set (about 0.5 GB of it is libraries and the model).", "",
            "- `plmforge train`: the whole pipeline (read, validate, tokenise, 1 epoch of full fine-tuning, "
            "validation, test on 5,000 rows), sequences cut to 64 residues (`model.max_length=64`) so that the epoch "
            "is affordable on 2 CPU cores. The two runs train the same model on the same batches (tested: identical "
            "weights).",
            "- data path: the same reading, validation, tokenising and carving at full length (`assemble`), then one "
            "epoch of shuffled token batches (16,000 tokens) collated from the split, without the model step.", "",
            "| rows | file MB | what | splits | seconds | of which setup | peak MB |", "|---|---|---|---|---|---|---|"]
    body += [f"| {r['rows']:,} | {r['file_mb']:,} | {r['what']} | {r['storage']} | {r['seconds']} | "
             f"{r.get('setup_seconds', '')} | {r['peak_mb']:,} |" for r in rows]
    disk = {r["rows"]: r["peak_mb"] for r in rows if r["what"] == "data path" and r["storage"] == "disk"}
    if len(disk) > 1:
        (a, pa), (b, pb) = sorted(disk.items())[0], sorted(disk.items())[-1]
        body += ["", f"On disk the peak grows by about {(pb - pa) * 2**20 / (b - a):.0f} bytes per row ({a:,} -> {b:,} "
                     "rows): offsets into the files, the labels, and the epoch's batch lists."]
    body += ["", "Produced by `benchmarks/large_training.py`."]
    write_section("Training on large datasets", body, "large_training", rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
