"""What a 20-trial head sweep costs next to one run, with the real AntiBERTy frozen on the AMP example
(the quickstart config), starting from an empty embedding store: one run (which fills the store), then
`plmforge sweep` over learning rate, epochs, head dropout and head hidden size (mean pooling: every
trial reads the pooled vectors the first run stored). Writes the "Sweep cost" section of
results.md.

    python benchmarks/sweep_cost.py [--trials 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, write_section  # noqa: E402

SPACE = {"training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
         "training.epochs": {"low": 3, "high": 10},
         "head.dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
         "head.hidden_size": [128, 256, 512]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plmforge-sweep-cost-"))
    os.environ["PLMFORGE_CACHE_DIR"] = str(tmp / "store")  # empty: the first run pays for the embeddings
    from plmforge.config import load_config
    from plmforge.sweep import parse_space, sweep
    from plmforge.train.run import train

    quick = str(REPO / "examples" / "quickstart.yaml")
    t0 = time.time()
    one = train(load_config(quick, [f"output.dir={tmp / 'one'}"]), progress=False)
    single = time.time() - t0
    t0 = time.time()
    result = sweep(load_config(quick, []), parse_space(SPACE), args.trials, tmp / "sweep", progress=False)
    swept = time.time() - t0
    rows = result.trials
    done = [r for r in rows if r["state"] == "complete"]
    best = result.best
    monitor = one.test_metrics["monitor"] if one.test_metrics else "value"
    body = [f"The quickstart config (AntiBERTy frozen, AMP example, CPU) from an empty embedding store: one run, then "
            f"`plmforge sweep` with {args.trials} trials (TPE, median pruning) over learning rate (1e-4..1e-2, log), "
            "epochs (3..10), head dropout (0..0.5) and head hidden size (128, 256, 512). Produced by "
            "`benchmarks/sweep_cost.py`.", "",
            "| | wall seconds |", "|---|---|",
            f"| one run (computes and stores the embeddings) | {single:.0f} |",
            f"| {args.trials}-trial sweep after it | {swept:.0f} ({swept / single:.2f} x one run; "
            f"{swept / args.trials:.1f} s per trial) |", "",
            f"Goal: the sweep after the store is filled <= 0.7 x one run with an empty store: "
            f"{'met' if swept <= 0.7 * single else 'not met'} ({swept / single:.2f} x; {environment()}). "
            "Every trial trains a mean head on the pooled vectors the single run stored (a pooling other than "
            "mean would first compute per-token states once: a backbone pass, like the first run).", "",
            f"Trials: {len(done)} complete, {sum(r['state'] == 'pruned' for r in rows)} pruned, "
            f"{sum(r['state'] == 'fail' for r in rows)} failed. The single run's best validation {monitor}: "
            f"{one.fit.best_value:.4f}; the sweep's best: {best['value']:.4f} (trial {best['trial']}: "
            + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
            + ")." if best else "no trial completed."]
    if best:
        import json

        def test_mcc(rd: Path) -> str:
            blob = json.loads((rd / "test_metrics.json").read_text())
            ci = (blob.get("intervals") or {}).get(monitor) or {}
            return f"{blob['metrics'][monitor]:.3f} [{ci.get('low', float('nan')):.3f}, {ci.get('high', float('nan')):.3f}]"

        body += ["", f"Test {monitor} (95% interval): the single run {test_mcc(one.run_dir)}, the sweep's best trial "
                 f"{test_mcc(Path(best['run_dir']))}. Choosing among {args.trials} trials on one validation split "
                 "flatters the winner's validation value; its test value is the one to report (or cross-validate it)."]
    write_section("Sweep cost", body, "sweep_cost", [{"single_seconds": round(single, 1),
                                                      "sweep_seconds": round(swept, 1), "trials": rows}])
    print("\n".join(body))


if __name__ == "__main__":
    main()
