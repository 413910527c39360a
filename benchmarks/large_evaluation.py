"""`plmforge evaluate` on large labelled CSV files, read whole (`--no-stream`) and in chunks onto disk
(`--stream`, the default from 64 MB): wall time and the peak resident set of the process for the whole
command (read, validate, tokenise, predict, metrics, 1000 bootstrap resamples, prediction table and plots
written). Results: benchmarks/results.md ("Evaluating large datasets") and results.json.

    .venv/bin/python benchmarks/large_evaluation.py [--rows 1000000] [--disk-only 3000000]
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
from large_training import tiny_esm

PEAK = ("import sys; from plmforge.cli import main; from plmforge.train.memory import process_peak_mb; "
        "rc = main(sys.argv[1:]); print('PEAK', process_peak_mb(), flush=True); sys.exit(rc)")


def _plmforge(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, env={**os.environ, **env})
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return time.perf_counter() - start, float(res.stdout.rsplit("PEAK", 1)[1].split()[0])


def trained_run(tmp: Path) -> Path:
    """A run of the tiny ESM on 2,000 rows, sequences cut to 64 residues (so that predicting millions of
    them is affordable on 2 CPU cores); 1000 bootstrap resamples, as by default."""
    train = tmp / "train.csv"
    make_csv(train, 2_000, seed=2)
    _plmforge(["train", "--train-file", str(train), "--model", str(tiny_esm(tmp / "esm")), "--problem-type",
               "single_label_classification", "--method", "full", "--epochs", "1", "--output", str(tmp / "run"),
               "model.max_length=64", "output.plots=false"], {"PLMFORGE_CACHE_DIR": str(tmp / "store")})
    return tmp / "run"


def evaluate(run: Path, data: Path, storage: str, out: Path) -> dict:
    flag = "--stream" if storage == "disk" else "--no-stream"
    wall, peak = _plmforge(["evaluate", str(run), "--data", str(data), "--output", str(out), flag,
                            "--max-tokens", "16000"], {})
    blob = json.loads((out / "eval_metrics.json").read_text())
    return {"storage": storage, "seconds": round(wall, 1), "peak_mb": round(peak), "metrics": blob["metrics"],
            "intervals": blob.get("intervals")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--disk-only", type=int, nargs="*", default=[3_000_000])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    run = trained_run(tmp)
    rows = []
    for n in sorted({*args.rows, *args.disk_only}):
        path = tmp / f"rows_{n}.csv"
        make_csv(path, n)
        size = os.path.getsize(path) / 2**20
        done = {}
        for storage in ("disk", "memory") if n in args.rows else ("disk",):
            done[storage] = evaluate(run, path, storage, tmp / f"eval_{n}_{storage}")
            rows.append({"rows": n, "file_mb": round(size), **done[storage]})
            print({k: v for k, v in rows[-1].items() if k not in ("metrics", "intervals")}, flush=True)
        if len(done) == 2 and (done["disk"]["metrics"], done["disk"]["intervals"]) != \
                (done["memory"]["metrics"], done["memory"]["intervals"]):
            raise SystemExit(f"{n} rows: different metrics on disk and in memory")
        path.unlink()
    body = ["`plmforge evaluate RUN --data FILE` on synthetic CSV files of random sequences of 50-400 residues "
            "with binary labels; the run is a tiny random ESM (1 layer, 32 wide) fine-tuned on 2,000 rows with "
            "sequences cut to 64 residues, so that predicting millions of them is affordable; 2 CPU cores, each "
            "command in a fresh process. The whole command: read, validate, tokenise, predict (16,000-token "
            "batches), metrics, 1000 bootstrap resamples for the intervals, the prediction table and plots "
            "written. `disk` = `--stream` (the default from 64 MB): read in chunks, records and tokens kept in "
            "files on disk, predictions written in blocks of 20,000 proteins; `memory` = `--no-stream` (the file "
            "read whole). Both give the same metrics and intervals (checked by the script). Peak = the process's "
            "maximum resident set (about 0.5 GB of it is libraries and the model).", "",
            "| rows | file MB | read | seconds | peak MB |", "|---|---|---|---|---|"]
    body += [f"| {r['rows']:,} | {r['file_mb']:,} | {r['storage']} | {r['seconds']} | {r['peak_mb']:,} |" for r in rows]
    disk = {r["rows"]: r["peak_mb"] for r in rows if r["storage"] == "disk"}
    if len(disk) > 1:
        (a, pa), (b, pb) = sorted(disk.items())[0], sorted(disk.items())[-1]
        body += ["", f"On disk the peak grows by about {(pb - pa) * 2**20 / (b - a):.0f} bytes per row ({a:,} -> "
                     f"{b:,} rows): the predictions and labels the metrics need, offsets into the files, and the "
                     "batch lists."]
    body += ["", "Produced by `benchmarks/large_evaluation.py`."]
    write_section("Evaluating large datasets", body, "large_evaluation",
                  [{k: v for k, v in r.items() if k != "intervals"} for r in rows])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
