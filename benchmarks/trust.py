"""Cross-validation on real data with the real pretrained AntiBERTy (frozen backbone), for the
"Cross-validation" section of results.md:

- amp: the quickstart config (bundled AMP example) with 5 folds: mean +- sd of validation and test
  metrics over folds, the fold ensemble on the test split with its 95% interval, and the composition
  baseline of every fold.
- sumo: SUMOylation site windows (../shared/data/sumo_21mer, centre-residue head), 5 folds of the
  training windows, once with random folds and once with folds that keep each protein's windows together
  (data.group_column=protein, the protein read from the window id): how much does the random-fold CV
  estimate flatter the model compared with the held-out test set?

    python benchmarks/trust.py [--parts amp,sumo] [--sumo-proteins N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, write_section  # noqa: E402

SUMO = REPO.parent / "shared" / "data" / "sumo_21mer"


def _cv(overrides: list[str], config: str | None = None) -> dict:
    from plmforge.config import load_config
    from plmforge.cv import cross_validate

    t0 = time.time()
    result = cross_validate(load_config(config, overrides))
    return {**collect(result.run_dir), "seconds": round(time.time() - t0)}


def collect(rd: Path) -> dict:
    """A finished cross-validation run's numbers, read from its directory."""
    cv = json.loads((rd / "cv_metrics.json").read_text())
    ens = rd / "test_ensemble_metrics.json"
    baselines = [json.loads((Path(f["run_dir"]) / "test_metrics.json").read_text()).get("baselines") or {}
                 for f in cv["folds"]]
    seconds = sum(sum(json.loads(x).get("seconds", 0) for x in (Path(f["run_dir"]) / "metrics_epochs.jsonl")
                      .read_text().splitlines() if x.strip()) for f in cv["folds"])
    return {"mean": cv["mean"], "sd": cv["sd"], "folds": cv["folds"], "baselines": baselines,
            "ensemble": json.loads(ens.read_text()) if ens.is_file() else None, "seconds": round(seconds)}


def _fasta(path: Path, label: int) -> pd.DataFrame:
    ids, seqs = [], []
    for block in path.read_text().split(">")[1:]:
        head, *lines = block.strip().splitlines()
        ids.append(head.strip())
        seqs.append("".join(lines).strip())
    return pd.DataFrame({"id": ids, "aa_seq": seqs, "label": label})


def sumo_data(out: Path, proteins: int, seed: int = 0) -> Path:
    """Train (a seeded subset of whole proteins) and test windows as CSV files with a protein column."""
    train = pd.concat([_fasta(SUMO / "Sumoylation_pos_Train.fasta", 1), _fasta(SUMO / "Sumoylation_neg_Train.fasta", 0)])
    train["protein"] = train["id"].str.rsplit("_", n=1).str[0]
    keep = np.random.default_rng(seed).permutation(sorted(train["protein"].unique()))[:proteins]
    train = train[train["protein"].isin(set(keep))]
    test = pd.concat([_fasta(SUMO / "Sumoylation_pos_Test.fasta", 1), _fasta(SUMO / "Sumoylation_neg_Test.fasta", 0)])
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    return out


def _row(name: str, r: dict, metrics: tuple[str, ...]) -> list[str]:
    cells = []
    for m in metrics:
        v, s = r["mean"]["validation"].get(m), r["sd"]["validation"].get(m)
        t, ts = r["mean"]["test"].get(m), r["sd"]["test"].get(m)
        e = (r["ensemble"] or {}).get("metrics", {}).get(m)
        ci = ((r["ensemble"] or {}).get("intervals") or {}).get(m) or {}
        cells.append(f"{v:.3f} +- {s:.3f} | {t:.3f} +- {ts:.3f} | {e:.3f} [{ci.get('low', float('nan')):.3f}, "
                     f"{ci.get('high', float('nan')):.3f}]")
    return [f"| {name} | " + " | ".join(cells) + " |"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="amp,sumo")
    ap.add_argument("--sumo-proteins", type=int, default=800)
    ap.add_argument("--from", dest="source", help="only write the section, from the run directories of an earlier "
                                                  "invocation (its temporary directory)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    tmp = Path(args.source) if args.source else Path(tempfile.mkdtemp(prefix="plmforge-trust-"))
    results: dict = {}
    if args.source:
        results = {k: collect(tmp / k) for k in ("amp", "sumo_random", "sumo_grouped") if (tmp / k).is_dir()}
        parts = []
    if "amp" in parts:
        results["amp"] = _cv([f"output.dir={tmp / 'amp'}", "cv.folds=5", "output.plots=true"],
                             str(REPO / "examples" / "quickstart.yaml"))
        print(json.dumps({k: results["amp"][k] for k in ("mean", "sd", "seconds")}, indent=1), flush=True)
    if "sumo" in parts:
        data = sumo_data(tmp / "sumo_data", args.sumo_proteins)
        base = [f"data.dataset={data}", "data.problem_type=single_label_classification", "model.name=antiberty",
                "method.name=freeze", "head.pooling=centre", "training.epochs=6", "training.learning_rate=0.001",
                "batching.batch_size=64", "training.monitor=mcc", "cv.folds=5"]
        for name, extra in (("random", []), ("grouped", ["data.group_column=protein"])):
            results[f"sumo_{name}"] = _cv([*base, *extra, f"output.dir={tmp / f'sumo_{name}'}"])
            print(name, json.dumps({k: results[f'sumo_{name}'][k] for k in ("mean", "sd", "seconds")}), flush=True)
    metrics = ("mcc", "auroc", "accuracy")
    head = ("| run | " + " | ".join(f"{m}: validation (CV) | {m}: test, per fold | {m}: test, fold ensemble [95% CI]"
                                     for m in metrics) + " |")
    body = ["AntiBERTy frozen (the real pretrained checkpoint), 5-fold cross-validation, CPU; validation = each "
            "fold's held-out part at its best epoch; test = the held-out test file (per fold model: mean +- sample "
            "sd; fold ensemble: mean probabilities, 95% bootstrap interval over test proteins, 1,000 resamples). "
            "Produced by `benchmarks/trust.py`.", "", head, "|---|" + "---|---|---|" * len(metrics)]
    for key, label in (("amp", "AMP example (quickstart config)"), ("sumo_random", "SUMO windows, random folds"),
                       ("sumo_grouped", "SUMO windows, folds grouped by protein")):
        if key in results:
            body += _row(label, results[key], metrics)
    body += ["", "Baselines fitted in every fold run on the same splits (test MCC, mean +- sd over the folds):", ""]
    for key, r in results.items():
        names = sorted({n for b in r["baselines"] for n in b})
        cells = []
        for name in names:
            vals = [b[name]["metrics"].get("mcc") for b in r["baselines"] if name in b]
            vals = [v for v in vals if v is not None]
            if vals:
                cells.append(f"{name} {np.mean(vals):.3f} +- {np.std(vals, ddof=1):.3f}")
        body.append(f"- {key}: " + ", ".join(cells))
    gaps = [(k, r["mean"]["validation"]["mcc"] - r["mean"]["test"]["mcc"]) for k, r in results.items()
            if k.startswith("sumo")]
    if gaps:
        body += ["", "How far the CV estimate (validation MCC) sits above the same fold models' test MCC: "
                 + ", ".join(f"{k} {g:+.3f}" for k, g in gaps) + ". Windows of one protein share sequence around "
                 "their sites; random folds put such windows on both sides, folds grouped by protein do not."]
    if "sumo_random" in results:
        n = len(pd.read_csv(tmp / "sumo_data" / "train.csv"))
        body += ["", f"SUMO: {n:,} training windows from {args.sumo_proteins} proteins (a seeded subset of whole "
                     "proteins), 2,125 test windows; centre-residue head, 6 epochs, monitor MCC."]
    body += ["", "Training time summed over the fold runs' epochs (the backbone ran once per sequence; the embedding "
             "store served the rest): " + ", ".join(f"{k} {r['seconds']:,} s" for k, r in results.items()) + "."]
    rows = [{"run": k, "mean": r["mean"], "sd": r["sd"], "ensemble": (r["ensemble"] or {}).get("metrics"),
             "ensemble_intervals": (r["ensemble"] or {}).get("intervals"), "seconds": r["seconds"]}
            for k, r in results.items()]
    write_section("Cross-validation", body, "cross_validation", rows)


if __name__ == "__main__":
    main()
