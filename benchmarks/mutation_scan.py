"""A full saturation scan of a ~300-residue protein with AntiBERTy: plmforge's batched masked marginals
against a one-site-at-a-time loop (mask, forward, log-softmax; what a script written by hand does), and
wild-type marginals (one pass). The protein is the first of ../shared/data/ec/split10.csv with 290-310
residues (CLEAN's research licence: read from the shared folder, never copied); AntiBERTy is an antibody
model, so the scores of an enzyme mean little: this measures speed, and checks that the loop and the
batched scan give the same numbers.

    python benchmarks/mutation_scan.py
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, write_section

EC = REPO.parent / "shared" / "data" / "ec" / "split10.csv"


def protein() -> tuple[str, str]:
    with EC.open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            seq = row["Sequence"]
            if 290 <= len(seq) <= 310 and set(seq) <= set("ACDEFGHIKLMNPQRSTVWY"):
                return row["Entry"], seq
    raise SystemExit("no protein of 290-310 standard residues in the EC split")


def loop_scan(lm, seq: str):  # type: ignore[no-untyped-def]
    """One masked copy per site, one forward each."""
    import numpy as np
    import torch

    from plmforge.data.notation import AMINO_ACIDS

    ids, where = lm.encode(seq)
    out = np.zeros((len(seq), 20))
    for k in range(len(seq)):
        masked = torch.from_numpy(ids.copy())[None]
        masked[0, where[k]] = lm.mask_id
        with torch.inference_mode():
            lp = torch.log_softmax(lm.model(input_ids=masked).logits[0, where[k]], -1)[lm.aa_ids].numpy()
        out[k] = lp - lp[AMINO_ACIDS.index(seq[k])]
    return out


def main() -> None:
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from plmforge.mutate import scoring as sc
    from plmforge.mutate.lm import load_masked_lm

    entry, seq = protein()
    lm = load_masked_lm("antiberty")
    positions = list(range(1, len(seq) + 1))
    sc.marginal_matrix(lm, seq[:40], [1, 2], "masked_marginal")  # warm-up
    rows, results = [], {}
    for name, run in (("masked marginal, batched (plmforge, its default 2,048-token batches)",
                       lambda: sc.marginal_matrix(lm, seq, positions, "masked_marginal")),
                      ("masked marginal, one site at a time (a hand-written loop)", lambda: loop_scan(lm, seq)),
                      ("wild-type marginal (plmforge, one pass)",
                       lambda: sc.marginal_matrix(lm, seq, positions, "wt_marginal"))):
        t0 = time.time()
        results[name] = run()
        seconds = time.time() - t0
        rows.append({"row": name, "seconds": round(seconds, 2), "sites_per_second": round(len(seq) / seconds, 1)})
        print(rows[-1], flush=True)
    from plmforge.precision import native_low_precision

    verdict = native_low_precision(torch.bfloat16, "cpu")
    if verdict.native:  # bf16 only where this CPU runs it natively (the precision rule)
        lm_bf16 = load_masked_lm("antiberty", precision="bf16")
        t0 = time.time()
        low = sc.marginal_matrix(lm_bf16, seq, positions, "masked_marginal")
        seconds = time.time() - t0
        rows.append({"row": "masked marginal, batched, bf16 (native on this CPU)", "seconds": round(seconds, 2),
                     "sites_per_second": round(len(seq) / seconds, 1),
                     "spearman_vs_fp32": float(spearmanr(low.ravel(), results[next(iter(results))].ravel()).statistic)})
        print(rows[-1], flush=True)
    names = list(results)
    diff = float(np.abs(results[names[0]] - results[names[1]]).max())
    masked, wt = results[names[0]], results[names[2]]
    rho = float(spearmanr(masked.ravel(), wt.ravel()).statistic)
    body = [f"AntiBERTy, every substitution at every position of {entry} ({len(seq)} residues, {19 * len(seq)} "
            f"substitutions; a protein from CLEAN's EC split: speed only, AntiBERTy is an antibody model); "
            f"{environment()}. Produced by `benchmarks/mutation_scan.py`.", "",
            "| scoring | seconds | sites/s |", "|---|---|---|"]
    body += [f"| {r['row']} | {r['seconds']:.1f} | {r['sites_per_second']:.1f} |" for r in rows if "row" in r]
    speed = rows[1]["seconds"] / rows[0]["seconds"]
    body += ["", f"The batched scan ran at {speed:.1f}x the loop's speed and gives the same scores (largest "
             f"difference {diff:.1e}). On a CPU batching gains little: one masked copy of a 300-residue protein already "
             "keeps both cores busy (an earlier run of this script with 8,192-token batches: 9.3 against 12.0 sites/s "
             "for the loop; batches of 400-8,192 tokens all ran at 11-13 sites/s), so the CPU default is 2,048 "
             f"tokens; GPUs were not measured here. Wild-type marginals take one pass; their scores rank the "
             f"substitutions like the masked ones with Spearman {rho:.3f} here."]
    for r in rows:
        if "spearman_vs_fp32" in r:
            body.append(f"bf16 (native on this CPU: AMX/AVX512-BF16) ranks the substitutions like fp32 with Spearman "
                        f"{r['spearman_vs_fp32']:.4f}.")
    rows.append({"max_abs_difference": diff, "spearman_wt_vs_masked": rho})
    write_section("Mutation scan", body, "mutation_scan", rows)


if __name__ == "__main__":
    main()
