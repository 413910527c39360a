"""Heads on stored embeddings: how fast plmforge trains, sweeps and cross-validates once the embedding
store holds the frozen backbone's pooled vectors, next to the floor (a plain PyTorch loop over the same
in-memory tensor) and, where it is installed, Rostlab's biotrainer fed the same vectors.

Real data: the bundled AMP example (3,712 / 465 / 465 peptides), the real pretrained AntiBERTy frozen,
mean pooling. Parts (each writes its rows; all in one run of the script, side by side):

  1. one run with an empty store (fills it), then the same config again (20 epochs, no early stop) at
     batch sizes 16 and 128: plmforge's training loop (from its first epoch to the end of its last,
     validation and checkpoints included) against the plain loop, and the whole second run (test metrics,
     1,000 bootstrap resamples, baselines, plots) against biotrainer's run (when --biotrainer PYTHON names
     an interpreter with biotrainer installed);
  2. a 5-fold cross-validation on the stored vectors against one run with a filled store (five of each,
     alternating; the ratio is the median of the five pairs' ratios).

This kind of shared machine changes speed by up to 2x from one minute to the next, so every comparison is
made in alternating pairs (a plmforge run, then its reference, again and again) and judged by the median of
the pairs' ratios, which a slow spell affects on both sides of a pair; every time is listed beside it.

(The 20-trial sweep is benchmarks/sweep_cost.py.)

    python benchmarks/heads_speed.py [--biotrainer /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, environment, write_section  # noqa: E402

EPOCHS = 20
REPEATS = 5  # cross-validation / one-run pairs
LOOP_REPEATS = 3  # plmforge loop / plain loop pairs per batch size
QUICK = str(REPO / "examples" / "quickstart.yaml")


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def loop_seconds(run_dir: Path) -> float:
    """From the training plan (the first epoch starts) to the last epoch's end: every epoch's training,
    validation and checkpoints."""
    ev = _events(run_dir)
    start = next(e["time"] for e in ev if e["event"] == "plan")
    end = [e["time"] for e in ev if e["event"] == "epoch"][-1]
    return end - start


def plmforge_run(out: Path, batch: int | None, extra: list[str] | None = None) -> dict:
    """The quickstart config for EPOCHS epochs without early stopping at `batch`; as it is for None."""
    from plmforge.config import load_config
    from plmforge.train.run import train

    settings = [] if batch is None else [f"training.epochs={EPOCHS}", "training.patience=null",
                                         f"batching.batch_size={batch}"]
    cfg = load_config(QUICK, [f"output.dir={out}", *settings, *(extra or [])])
    t0 = time.time()
    result = train(cfg, progress=False)
    wall = time.time() - t0
    test = result.test_metrics or {}
    return {"wall_s": round(wall, 2), "loop_s": round(loop_seconds(result.run_dir), 2),
            "test_mcc": test.get("metrics", {}).get("mcc"), "epochs": result.fit.epochs_run}


def stored_vectors(run_dir: Path) -> dict:
    """The run's pooled vectors per split, read from the store as the run read them, with labels."""
    import numpy as np
    import torch

    from plmforge.config import load_run_config
    from plmforge.models.backbone import backbone_fingerprint
    from plmforge.models.build import load_run_backbone
    from plmforge.store import EmbeddingStore, cache_root, record_key
    from plmforge.train.setup import prepare_data

    cfg = load_run_config(run_dir)
    data = prepare_data(cfg)
    backbone = load_run_backbone(cfg, run_dir / "tokenizer")
    store = EmbeddingStore(cache_root(), backbone_fingerprint(backbone, "mean", "float32"))
    out = {}
    for split, recs in data.splits.items():
        keys = np.array([record_key({"sequence": s}) for s in recs.sequences], dtype="S40")
        x = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in store.get_many(keys)]))
        out[split] = (x, torch.as_tensor(np.asarray(recs.labels), dtype=torch.long), list(recs.sequences))
    return out


def plain_loop(vectors: dict, batch: int, lr: float, seed: int = 42) -> float:
    """The floor: the same head shape (dropout, linear, GELU, linear as plmforge's mean head) trained with
    AdamW on the in-memory tensor, shuffled every epoch, validated every epoch in one pass."""
    import torch

    torch.manual_seed(seed)
    x, y, _ = vectors["train"]
    xv, yv, _ = vectors["validation"]
    h = x.shape[1]
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(h, h), torch.nn.GELU(), torch.nn.Dropout(0.1),
                               torch.nn.Linear(h, 2))
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    t0 = time.time()
    for _ in range(EPOCHS):
        head.train()
        for idx in torch.randperm(len(x)).split(batch):
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
        head.eval()
        with torch.no_grad():
            (head(xv).argmax(1) == yv).float().mean().item()
    return time.time() - t0


def cross_validation(out: Path, together: bool = True) -> dict:
    from plmforge.config import load_config
    from plmforge.cv import cross_validate

    cfg = load_config(QUICK, [f"output.dir={out}", "cv.folds=5", f"cv.together={str(together).lower()}"])
    t0 = time.time()
    result = cross_validate(cfg, progress=False)
    return {"wall_s": round(time.time() - t0, 2), "validation_mcc": result.mean["validation"].get("mcc"),
            "ensemble_test_mcc": (result.ensemble or {}).get("metrics", {}).get("mcc")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--biotrainer", help="a Python interpreter with biotrainer installed (its own environment)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plmforge-heads-"))
    os.environ["PLMFORGE_CACHE_DIR"] = str(tmp / "store")  # empty: the first run pays for the embeddings
    import torch

    first = plmforge_run(tmp / "first", 32)
    rows = {"first run, empty store (batch 32)": first}
    vectors = stored_vectors(tmp / "first")
    floors = {}
    loop_ratios = {}
    for batch in (16, 128):
        runs, plains = [], []
        for n in range(LOOP_REPEATS):
            runs.append(plmforge_run(tmp / f"second_{batch}_{n}", batch))
            plains.append(round(plain_loop(vectors, batch, 1e-3), 2))
        ratios = [r["loop_s"] / p for r, p in zip(runs, plains)]
        k = sorted(range(LOOP_REPEATS), key=lambda i: ratios[i])[LOOP_REPEATS // 2]  # the median pair
        rows[f"second run, batch {batch}"] = {**runs[k], "loop_s_all": [r["loop_s"] for r in runs],
                                              "plain_s_all": plains}
        floors[batch] = plains[k]
        loop_ratios[batch] = ratios[k]
    # the config the folds run, alternating with the cross-validation three times (medians: this kind of
    # shared machine varies by +-20 % from one run to the next)
    pairs = [(plmforge_run(tmp / f"one_filled_{n}", None), cross_validation(tmp / f"cv_{n}")) for n in range(REPEATS)]
    ratios = [c["wall_s"] / o["wall_s"] for o, c in pairs]
    k = sorted(range(REPEATS), key=lambda i: ratios[i])[REPEATS // 2]  # the median pair
    one_filled = {**pairs[k][0], "wall_s_all": [p[0]["wall_s"] for p in pairs]}
    cv = {**pairs[k][1], "wall_s_all": [p[1]["wall_s"] for p in pairs], "ratios": [round(r, 2) for r in ratios]}
    cv_alone = cross_validation(tmp / "cv_alone", together=False)
    bio = None
    if args.biotrainer:
        from biotrainer_side import run_biotrainer

        bio = run_biotrainer(args.biotrainer, vectors, tmp / "biotrainer", EPOCHS, 128)
    body = [f"The quickstart config (AntiBERTy frozen, mean head, AMP example: 3,712 train / 465 validation / 465 "
            f"test peptides), {EPOCHS} epochs without early stopping, learning rate 1e-3; {environment()}. "
            "Produced by `benchmarks/heads_speed.py`. Loop = from the first epoch's start to the last epoch's end "
            "(training, validation every epoch, checkpoints); whole run = the command's wall time (data, model, "
            "training, test metrics with 1,000 bootstrap resamples, baselines, plots).", "",
            f"Second runs: the median of {LOOP_REPEATS} alternating pairs (plmforge run, plain loop) by their ratio; "
            "all loop times in brackets.", "",
            "| run | batch | loop s | plain PyTorch loop s | loop / plain | whole run s | test MCC |",
            "|---|---|---|---|---|---|---|",
            f"| first run, empty store | 32 | {first['loop_s']} | | | {first['wall_s']} | {first['test_mcc']:.3f} |"]
    for batch in (16, 128):
        r = rows[f"second run, batch {batch}"]
        body.append(f"| second run, filled store | {batch} | {r['loop_s']} {r['loop_s_all']} | {floors[batch]} "
                    f"{r['plain_s_all']} | {loop_ratios[batch]:.2f} | {r['wall_s']} | {r['test_mcc']:.3f} |")
    ratio_cv = ratios[k]
    body += ["", f"5-fold cross-validation on the stored vectors (the quickstart config as it is: 8 epochs, early "
             "stopping, batch 32; the folds' heads trained together, cv.together): "
             f"{cv['wall_s']:.1f} s against {one_filled['wall_s']:.1f} s for one run with a filled store "
             f"({ratio_cv:.2f}x, the median of {REPEATS} alternating pairs' ratios {cv['ratios']}; goal <= 1.5x: "
             f"{'met' if ratio_cv <= 1.5 else 'not met'}; cross-validation {cv['wall_s_all']} s, one run "
             f"{one_filled['wall_s_all']} s); "
             f"validation MCC {cv['validation_mcc']:.3f} (mean over folds), fold-ensemble test MCC "
             f"{cv['ensemble_test_mcc']:.3f}. The folds one after another (cv.together=false, each fold a whole run "
             f"with its own intervals, baselines and plots): {cv_alone['wall_s']:.1f} s "
             f"({cv_alone['wall_s'] / one_filled['wall_s']:.2f}x), validation MCC {cv_alone['validation_mcc']:.3f}, "
             f"ensemble test MCC {cv_alone['ensemble_test_mcc']:.3f}."]
    worst = max(loop_ratios.values())
    body.append(f"plmforge's loop is at most {worst:.2f}x the plain loop (goal <= 2x: {'met' if worst <= 2 else 'not met'}).")
    if bio:
        r = rows["second run, batch 128"]
        body += ["", f"biotrainer {bio['version']} (its own environment) on the same stored vectors, batch 128, "
                 f"{EPOCHS} epochs, {bio['bootstrap']} bootstrap iterations: {bio['wall_s']:.1f} s whole run "
                 f"(training {bio['train_s']:.1f} s), test MCC {bio['test_mcc']:.3f}. plmforge's whole second run "
                 f"at batch 128: {r['wall_s']:.1f} s = {r['wall_s'] / bio['wall_s']:.2f}x biotrainer's (goal <= 1.5x)."]
    else:
        body += ["", "biotrainer was not run here: it needs Python >= 3.12 and this machine has 3.11 only "
                 "(pass --biotrainer PYTHON on a machine that has it)."]
    write_section("Heads on stored embeddings", body, "heads_speed",
                  [{"name": k, **v} for k, v in rows.items()] + [{"name": "plain loop", **{str(b): s for b, s in
                                                                   floors.items()}},
                                                                  {"name": "cv5", **cv}, {"name": "one filled", **one_filled},
                                                                  {"name": "cv5 one after another", **cv_alone},
                                                                  *([{"name": "biotrainer", **bio}] if bio else [])])
    print("\n".join(body))
    del torch


if __name__ == "__main__":
    main()
