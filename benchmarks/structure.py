"""Structures per second for `plmforge structure` on the 48 real PDB/mmCIF files in
../shared/data/structures: 1 and 2 worker processes, with mkdssp (8 states) and with the pydssp
fallback (3 states). Results: benchmarks/results.md ("Structure tokens") and results.json.

    .venv/bin/python benchmarks/structure.py
"""

from __future__ import annotations

import sys
import time

from common import REPO, environment, write_section

FILES = REPO.parent / "shared" / "data" / "structures" / "files"


def measure(workers: int, secondary: str) -> dict:
    from plmforge.structure.build import structure_tokens

    t0 = time.perf_counter()
    result = structure_tokens([FILES], workers=workers, secondary=secondary, progress=False)
    seconds = time.perf_counter() - t0
    files = len(result.reports)
    residues = sum(len(c.sequence) for c in result.chains)
    return {"workers": workers, "secondary": result.secondary.description, "files": files,
            "chains": len(result.chains), "residues": residues, "left_out": len(result.skipped()),
            "seconds": round(seconds, 2), "structures_per_second": round(files / seconds, 2),
            "residues_per_second": round(residues / seconds)}


def main() -> None:
    sys.path.insert(0, str(REPO))
    from plmforge.structure.tokens import mkdssp_path

    rows = []
    for secondary in (["mkdssp"] if mkdssp_path() else []) + ["pydssp"]:
        for workers in (1, 2):
            rows.append(measure(workers, secondary))
            print(rows[-1], flush=True)
    body = [f"`plmforge structure` over the {rows[0]['files']} real PDB/mmCIF files of ../shared/data/structures "
            f"({rows[0]['chains']} protein chains, {rows[0]['residues']} residues; DNA chains left out and "
            f"reported); {environment()}. Wall time includes starting the worker processes. Produced by "
            "`benchmarks/structure.py`.", "",
            "| secondary structure | workers | s | structures/s | residues/s | chains | left out |",
            "|---|---|---|---|---|---|---|"]
    body += [f"| {r['secondary'].split(' (')[0]} | {r['workers']} | {r['seconds']} | {r['structures_per_second']} | "
             f"{r['residues_per_second']} | {r['chains']} | {r['left_out']} |" for r in rows]
    body += ["", "mkdssp (a separate process per file) dominates the time; reading, 3Di (mini3di) and pydssp take "
             "a fraction of it."]
    write_section("Structure tokens", body, "structure_tokens", rows)


if __name__ == "__main__":
    main()
