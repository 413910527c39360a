"""`plmforge data check` on large CSV files, read whole and in chunks: wall time and peak resident set of
the process (it includes ~0.45 GB of imported libraries). Synthetic files with random sequences of 50-400
residues and binary labels (the content does not matter for reading cost; real files of this size are not
available here). Results: benchmarks/results.md ("Large datasets") and results.json.

    .venv/bin/python benchmarks/large_data.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_section

ROWS = (100_000, 1_000_000, 3_000_000)
WHOLE_UP_TO = 3_000_000


def make_csv(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    pool = letters[rng.integers(0, 20, 1_000_000)].tobytes().decode()
    with open(path, "w") as fh:
        fh.write("id,aa_seq,label\n")
        for start in range(0, n, 100_000):
            k = min(100_000, n - start)
            offsets, lengths, labels = rng.integers(0, 600_000, k), rng.integers(50, 400, k), rng.integers(0, 2, k)
            fh.write("".join(f"p{start + i},{pool[o:o + n_]},{y}\n"
                             for i, (o, n_, y) in enumerate(zip(offsets, lengths, labels, strict=True))))


def run(path: Path, mode: str) -> dict:
    code = ("import sys; from plmforge.cli import main; from plmforge.train.memory import process_peak_mb; "
            "rc = main(sys.argv[1:]); print('PEAK', process_peak_mb(), flush=True); sys.exit(rc)")
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, "data", "check", str(path), mode, "--problem-type",
                          "single_label_classification"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    peak = float(res.stdout.rsplit("PEAK", 1)[1].split()[0])
    return {"seconds": round(seconds, 1), "peak_mb": round(peak)}


def main() -> None:
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for n in ROWS:
        path = tmp / f"rows_{n}.csv"
        make_csv(path, n)
        size = os.path.getsize(path) / 2**20
        for mode in ("--stream", "--no-stream"):
            if mode == "--no-stream" and n > WHOLE_UP_TO:
                continue
            r = {"rows": n, "file_mb": round(size), "mode": "chunks" if mode == "--stream" else "whole", **run(path, mode)}
            rows.append(r)
            print(r, flush=True)
        path.unlink()
    body = ["`plmforge data check FILE` on synthetic CSV files (random sequences of 50-400 residues, binary labels), "
            "2 CPU cores, each check in a fresh process; peak = the process's maximum resident set, including "
            "about 0.45 GB of libraries imported by every check. `chunks` = `--stream` (the default from 64 MB on): "
            "20,000 rows at a time, keeping 12 bytes per row (length + 64-bit sequence hash); `whole` = "
            "`--no-stream`. Produced by `benchmarks/large_data.py`.", "",
            "| rows | file MB | read | seconds | peak MB |", "|---|---|---|---|---|"]
    body += [f"| {r['rows']:,} | {r['file_mb']:,} | {r['mode']} | {r['seconds']} | {r['peak_mb']:,} |" for r in rows]
    write_section("Large datasets", body, "large_data", rows)


if __name__ == "__main__":
    main()
