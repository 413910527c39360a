"""The biotrainer side of benchmarks/heads_speed.py: Rostlab's biotrainer (2.x) trained on the same stored pooled
vectors, in its own environment, started the way its README starts it (`biotrainer train --config config.yml`).

Inputs written into out_dir (not timed):
  sequences.fasta   one record per protein, `>{split}_{i} TARGET={label} SET={train|val|test}`, the format
                    biotrainer_core.input_files.read_FASTA parses (attributes `KEY=VALUE` after the id);
  embeddings.h5     one dataset per protein, keyed as biotrainer keys its embeddings files: sha256 of
                    f"{seq}_{len(seq)}" (biotrainer_core/functions/hashing.py, calculate_sequence_hash), with the
                    record id in attrs["original_id"] (biotrainer_core/h5_files/h5_handling.py,
                    store_embedding_to_handle); biotrainer loads it with embeddings_file and embeds nothing;
  config.yml        protocol sequence_to_class, FNN, AdamW ("adam") at lr 1e-3, cross-entropy, the given epochs
                    and batch size, patience above the epoch count (so every epoch runs, as plmforge's runs
                    without early stopping), 1,000 bootstrap iterations on the test set, cpu, seed 42.

Timed: the whole `biotrainer train` process (interpreter start, imports, config checks, loading, training,
testing, bootstrapping, baselines, writing out.yml). Training time alone is biotrainer's own measurement
(derived_values.training_elapsed_time in out.yml: its training step around all splits' solver.train).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

BOOTSTRAP = 1000
SETS = {"train": "train", "validation": "val", "test": "test"}  # our split names -> biotrainer's SET values


def sequence_hash(seq: str) -> str:
    """biotrainer's embedding key (biotrainer_core.functions.hashing.calculate_sequence_hash)."""
    return hashlib.sha256(f"{seq}_{len(seq)}".encode()).hexdigest()


def write_inputs(vectors: dict, out_dir: Path) -> tuple[Path, Path]:
    import h5py
    import numpy as np

    fasta, h5 = out_dir / "sequences.fasta", out_dir / "embeddings.h5"
    seen: dict[str, str] = {}
    with open(fasta, "w") as f, h5py.File(h5, "w") as store:
        for split, (x, y, seqs) in vectors.items():
            xs = np.asarray(x.detach().cpu().numpy(), dtype=np.float32)
            ys = y.tolist()
            if not (len(xs) == len(ys) == len(seqs)):
                raise ValueError(f"{split}: {len(xs)} vectors, {len(ys)} labels, {len(seqs)} sequences")
            for i, (vec, label, seq) in enumerate(zip(xs, ys, seqs)):
                rid = f"{split}_{i}"
                key = sequence_hash(seq)
                # biotrainer keys everything (targets, sets, embeddings) by sequence, so a repeated sequence would
                # collapse into one record: refuse rather than silently train on fewer proteins.
                if key in seen:
                    raise ValueError(f"sequence of {rid} repeats {seen[key]}: biotrainer keys records by sequence")
                seen[key] = rid
                f.write(f">{rid} TARGET={int(label)} SET={SETS[split]}\n{seq}\n")
                store.create_dataset(key, data=vec)
                store[key].attrs["original_id"] = rid
    return fasta, h5


def write_config(out_dir: Path, fasta: Path, h5: Path, epochs: int, batch: int) -> Path:
    cfg = {
        "protocol": "sequence_to_class",
        "input_file": str(fasta),
        "embeddings_file": str(h5),
        "model_choice": "FNN",
        "optimizer_choice": "adam",  # biotrainer's "adam" is AdamW(amsgrad=True, weight_decay=1e-2)
        "loss_choice": "cross_entropy_loss",
        "learning_rate": 1e-3,
        "num_epochs": epochs,
        "batch_size": batch,
        "patience": epochs + 1,  # early stopping never triggers: all epochs run
        "bootstrapping_iterations": BOOTSTRAP,
        "device": "cpu",
        "seed": 42,
        "output_dir": str(out_dir / "output"),
        "force_execution": True,  # never reuse an out.yml left by an earlier run in the same directory
    }
    path = out_dir / "config.yml"
    # flat scalars only: JSON's quoting of strings is valid YAML
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    return path


def command(python: str, config: Path) -> list[str]:
    """`biotrainer train --config config.yml` (the README's command) with the console script next to the given
    interpreter; `python -m biotrainer.shared.cli` (the module the console script runs) when there is none."""
    script = Path(python).parent / "biotrainer"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "train", "--config", str(config)]
    return [python, "-m", "biotrainer.shared.cli", "train", "--config", str(config)]


def read_result(python: str, out_yml: Path) -> dict:
    """The numbers we need from out.yml, read in biotrainer's environment with its own loader (out.yml is
    written with ruamel's round-trip dumper)."""
    code = r"""
import json, sys
from biotrainer_core.data_classes import BiotrainerModelResult
r = BiotrainerModelResult.from_file(sys.argv[1])
d = r.derived_values
splits = {name: {"elapsed_time": t.elapsed_time, "epochs": len(t.training_losses),
                 "best_epoch": t.best_epoch_metrics.epoch if t.best_epoch_metrics else None,
                 "best_validation": dict(t.best_epoch_metrics.validation) if t.best_epoch_metrics else None}
          for name, t in r.training_results.items()}
tests = {}
for name, t in r.test_results.items():
    boot = {}
    for m in t.bootstrapped_metrics or []:
        boot[m.name] = m.model_dump()
    tests[name] = {"metrics": dict(t.inference_result.metrics) if t.inference_result else None, "bootstrapped": boot,
                   "baselines": sorted((t.baselines or {}).keys())}
print(json.dumps({"version": d.biotrainer_version, "training_elapsed_time": d.training_elapsed_time,
                  "pipeline_elapsed_time": d.pipeline_elapsed_time, "bootstrapping_iterations":
                  r.config.get("bootstrapping_iterations"), "num_epochs": r.config.get("num_epochs"),
                  "splits": splits, "tests": tests}, default=str))
"""
    out = subprocess.run([python, "-c", code, str(out_yml)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def phase_seconds(log_file: Path) -> dict:
    """Seconds between biotrainer's own log lines (its logger_out.log): the test-set bootstrap and the
    sanity-check baselines (each bootstrapped with the same iteration count)."""
    import datetime
    import re

    stamps: dict[str, float] = {}
    marks = {"boot_start": "Running bootstrapping evaluation", "boot_end": "Bootstrapping results for test set",
             "base_start": "Running sanity checks on test set", "base_end": "Sanity check on test results"}
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
    for line in log_file.read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if not m:
            continue
        for name, text in marks.items():
            if text in line and name not in stamps:
                stamps[name] = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    out = {}
    for key, (a, b) in {"bootstrap_s": ("boot_start", "boot_end"), "baselines_s": ("base_start", "base_end")}.items():
        if a in stamps and b in stamps:
            out[key] = round(stamps[b] - stamps[a], 2)
    return out


def run_biotrainer(python: str, vectors: dict, out_dir: Path, epochs: int, batch: int) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fasta, h5 = write_inputs(vectors, out_dir)
    config = write_config(out_dir, fasta, h5, epochs, batch)
    cmd = command(python, config)
    log = out_dir / "biotrainer.log"
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, stdout=f, stderr=subprocess.STDOUT, cwd=out_dir)
        wall = time.perf_counter() - t0
    found = sorted((out_dir / "output").rglob("out.yml"), key=lambda p: p.stat().st_mtime)
    if not found:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"biotrainer wrote no out.yml (exit {proc.returncode}); see {log}:\n{tail}")
    res = read_result(python, found[-1])
    split = res["splits"].get("hold_out") or next(iter(res["splits"].values()))
    test = res["tests"].get("test") or next(iter(res["tests"].values()))
    metrics = test["metrics"] or {}
    boot = test["bootstrapped"]
    mcc_boot = boot.get("mcc") or boot.get("matthews-corr-coeff") or {}
    return {
        "version": res["version"],
        "wall_s": round(wall, 2),
        "train_s": round(res["training_elapsed_time"], 2),
        "pipeline_s": round(res["pipeline_elapsed_time"], 2) if res["pipeline_elapsed_time"] is not None else None,
        "test_mcc": metrics.get("mcc", metrics.get("matthews-corr-coeff")),
        "test_accuracy": metrics.get("accuracy"),
        # what its bootstrapped test metrics say they used (the config's bootstrapping_iterations, default 30)
        "bootstrap": mcc_boot.get("iterations", res["bootstrapping_iterations"]),
        "test_mcc_bootstrap": mcc_boot or None,
        "epochs": split["epochs"],
        **phase_seconds(found[-1].parent / "logger_out.log"),
        "outside_pipeline_s": round(wall - res["pipeline_elapsed_time"], 2) if res["pipeline_elapsed_time"] else None,
        "baselines": test["baselines"],
        "best_epoch": split["best_epoch"],
        "model": "FNN",
        "exit_code": proc.returncode,
        "command": " ".join(cmd),
        "out_yml": str(found[-1]),
    }
