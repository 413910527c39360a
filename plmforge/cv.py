"""Cross-validation: K fold runs of one config, their mean and standard deviation, and the fold models
predicting the test split as an ensemble.

    <run>/config.yaml, command.txt, cv.json       the config (cv.folds=K) and the fold assignment
    <run>/fold_1 ... fold_K                       ordinary run directories (their config has cv.fold=i)
    <run>/cv_metrics.csv, cv_metrics.json         per fold: best-epoch validation metrics and test metrics;
                                                  their mean and sample standard deviation (ddof=1)
    <run>/test_ensemble_metrics.json/.csv         the fold models' mean prediction on the test split (95% intervals)
    <run>/test_ensemble_predictions.csv
    <run>/plots/cv_folds.png                      every fold's value and the mean +- sd, per metric
    <run>/plots/cv_curves.png                     every fold's loss and validation metric per epoch

A fold run is re-creatable alone: `plmforge train ... cv.folds=K cv.fold=i` computes the same folds (they
are seeded by training.seed). `--resume <run>` keeps finished folds, continues an interrupted one and
runs the rest.

Heads on a frozen backbone's stored pooled vectors (method freeze, mean pooling) train all folds in one
stacked pass (train/folds.py; cv.together=false runs them one after another); the fold runs then leave the
test intervals to the ensemble and draw their curves together in plots/cv_curves.png.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plmforge import owned, plots
from plmforge.api import load_run, mean_scores, predict_records
from plmforge.compare import compare
from plmforge.config import RunConfig, load_run_config, save_config
from plmforge.errors import ConfigError, RunDirError
from plmforge.events import RunProgress
from plmforge.inference import Predictions, split_metrics
from plmforge.logs import file_logging
from plmforge.outputs import (metrics_blob, prediction_frames, shown_path, summary_table, with_interval, write_frames,
                               write_metrics)
from plmforge.train.run import CONFIG_FILE, preview_command, run_inputs, train
from plmforge.train.folds import train_together
from plmforge.train.setup import prepare_folds

log = logging.getLogger("plmforge")
CV_FILE = "cv.json"


@dataclass
class CVResult:
    run_dir: Path
    folds: list[dict[str, Any]]  # per fold: run_dir, best_epoch, validation and test metrics
    mean: dict[str, dict[str, float]]  # 'validation' / 'test' -> metric -> mean over folds
    sd: dict[str, dict[str, float]]
    ensemble: dict[str, Any] | None  # the test_ensemble_metrics.json blob
    summary: str


def is_cv_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CV_FILE).is_file()


def fold_config(config: RunConfig, fold: int, run_dir: Path) -> RunConfig:
    return config.replace(cv=dataclasses.replace(config.cv, fold=fold),
                          output=dataclasses.replace(config.output, dir=str(run_dir / f"fold_{fold}"),
                                                     overwrite=False))


def cross_validate(config: RunConfig | None = None, *, run_dir: str | Path | None = None, resume: bool = False,
                   progress: bool = True) -> CVResult:
    """Train one run per fold (each validating on its fold), then summarise and ensemble them."""
    if resume:
        rd = Path(run_dir or (config.output.dir if config else ""))
        if not is_cv_run(rd):
            raise RunDirError(f"cannot resume {rd}: it is not a cross-validation run ({CV_FILE} is missing)")
        config = load_run_config(rd)
        config = config.replace(output=dataclasses.replace(config.output, dir=str(rd)))  # where it is now
    assert config is not None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("cross-validation runs its folds one after another in one process, so it cannot run under "
                          "accelerate launch / torchrun; to spread each fold over several processes, launch one run "
                          "per fold: plmforge train ... cv.folds=K cv.fold=i (the folds are the same in every run)")
    if config.cv.folds < 2:
        raise ConfigError("cross-validation needs cv.folds >= 2 (e.g. --cv 5)")
    if config.cv.fold is not None:
        raise ConfigError(f"cv.fold={config.cv.fold} names one fold's run: train it with plmforge train, or drop "
                          "cv.fold to run every fold")
    rd = Path(config.output.dir).expanduser()
    if not resume:
        owned.check_output_dir(rd, "cv", overwrite=config.output.overwrite, inputs=run_inputs(config),
                               other="choose another output.dir (or --resume to continue it)")
    # the folds (and the data) are checked before anything is written
    datas = prepare_folds(config)
    data = datas[0]
    assignment = _assignment(config, datas)
    if not resume:
        owned.replace_dir(rd, "cv", run_inputs(config))
        save_config(config, rd / CONFIG_FILE)
        (rd / "command.txt").write_text(preview_command(config) + "\n")
        (rd / CV_FILE).write_text(json.dumps(assignment, indent=1))
    folds, fold_preds = [], []
    with file_logging(rd / "cv.log", []):
        together = _train_together(config, rd, resume, progress, datas)
        for i in range(1, config.cv.folds + 1):
            if i in together:
                fold, preds = _fold_result(rd / f"fold_{i}", i), together[i].test_predictions
            else:
                log.info("cross-validation: fold %d of %d", i, config.cv.folds)
                fold, preds = _run_fold(config, i, rd, resume, progress)
            folds.append(fold)
            fold_preds.append(preds)
        mean, sd = _aggregate(folds)
        ensemble = None
        if config.cv.ensemble and "test" in data.splits and data.splits["test"].labels is not None:
            ensemble = _ensemble(config, [Path(f["run_dir"]) for f in folds], data.splits["test"], rd, fold_preds,
                                 data.task)
        _write(rd, folds, mean, sd, config, ensemble)
        summary = _summary(rd, config, folds, mean, sd, ensemble)
        log.info("\n%s", summary)
    return CVResult(rd, folds, mean, sd, ensemble, summary)


def _assignment(config: RunConfig, datas: list[Any]) -> dict[str, Any]:
    """Which samples each fold validates on (for cv.json), from the fold runs' own data preparation."""
    out: dict[str, Any] = {"folds": config.cv.folds, "seed": config.training.seed,
                           "group_column": config.data.group_column, "validation": {}}
    for i, data in enumerate(datas, start=1):
        out["validation"][str(i)] = list(data.splits["validation"].ids)
    return out


def _train_together(config: RunConfig, rd: Path, resume: bool, progress: bool, datas: list[Any]) -> dict[int, Any]:
    """The folds not started yet, trained in one stacked pass where they can be (train/folds.py): their
    results by fold; empty when they train one after another."""
    fresh = [i for i in range(1, config.cv.folds + 1)
             if not (resume and (_finished(rd / f"fold_{i}") or (rd / f"fold_{i}" / CONFIG_FILE).is_file()))]
    if not config.cv.together or not fresh:
        return {}
    configs = [fold_config(config, i, rd) for i in fresh]
    configs = [c.replace(output=dataclasses.replace(c.output, overwrite=True)) for c in configs]
    results = train_together(configs, progress, [datas[i - 1] for i in fresh])
    return dict(zip(fresh, results, strict=True)) if results is not None else {}


def _finished(fd: Path) -> bool:
    """A fold whose run ended: its events say so."""
    return RunProgress.read(fd).status == "finished"


def _run_fold(config: RunConfig, i: int, rd: Path, resume: bool,
              progress: bool) -> tuple[dict[str, Any], Predictions | None]:
    """The fold's result, and its model's test predictions when it ran here (a kept fold has none)."""
    fd = rd / f"fold_{i}"
    cfg = fold_config(config, i, rd)
    result = None
    if resume and _finished(fd):
        log.info("fold %d finished before: kept", i)
    elif resume and (fd / CONFIG_FILE).is_file() and (fd / "model_stats.json").is_file():
        result = train(run_dir=fd, resume=True, progress=progress)
    else:
        result = train(cfg.replace(output=dataclasses.replace(cfg.output, overwrite=True)), progress=progress)
    return _fold_result(fd, i), result.test_predictions if result is not None else None


def _fold_result(fd: Path, i: int) -> dict[str, Any]:
    epochs = plots.read_jsonl(fd / "metrics_epochs.jsonl")
    test_file = fd / "test_metrics.json"
    test = json.loads(test_file.read_text()) if test_file.is_file() else None
    best = [e for e in epochs if e.get("best_so_far")]
    row = best[-1] if best else (epochs[-1] if epochs else {})
    validation = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
    return {"fold": i, "run_dir": str(fd), "best_epoch": row.get("epoch"), "validation": validation,
            "test": test["metrics"] if test else {}}


def _aggregate(folds: list[dict[str, Any]]) -> tuple[dict, dict]:
    mean: dict[str, dict[str, float]] = {}
    sd: dict[str, dict[str, float]] = {}
    for part in ("validation", "test"):
        names = [k for k in folds[0][part] if all(k in f[part] for f in folds)]
        values = {k: np.array([np.nan if f[part][k] is None else f[part][k] for f in folds], dtype=float)
                  for k in names}
        mean[part] = {k: float(np.nanmean(v)) if np.isfinite(v).any() else None for k, v in values.items()}
        sd[part] = {k: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else None for k, v in values.items()}
    return mean, sd


def _ensemble(config: RunConfig, fold_dirs: list[Path], test: Any, rd: Path,
              fold_preds: list[Predictions | None], task: Any) -> dict[str, Any]:
    """The fold models' mean probabilities (or values) on the test split, with metrics and intervals: from
    the predictions each fold run made with its best weights, or (a fold kept from an earlier session)
    predicted again."""
    log.info("test split: ensemble of the %d fold models", len(fold_dirs))
    preds_of = []
    for fd, preds in zip(fold_dirs, fold_preds, strict=True):
        if preds is None:
            preds = predict_records(load_run(fd), test).predictions
        preds_of.append(preds)
    scores = mean_scores([p.scores for p in preds_of])
    labels = preds_of[0].labels
    preds = Predictions(scores, labels, None)
    metrics = split_metrics(task, preds)
    blob = metrics_blob(metrics, task, "test", len(test), labels, scores,
                        {"ensemble_of": [str(fd) for fd in fold_dirs]}, config.data.residue_classes)
    if config.output.bootstrap:
        blob.update(compare(task, None, labels, scores, config.output.bootstrap, config.training.seed,
                            baselines=False))
    write_metrics(blob, rd, "test_ensemble")
    if config.output.save_predictions:
        write_frames(rd / "test_ensemble_predictions.csv", prediction_frames(
            task.problem, test.ids, test.sequences, scores, labels, config.data.residue_classes))
    return blob


def _write(rd: Path, folds: list[dict[str, Any]], mean: dict, sd: dict, config: RunConfig,
           ensemble: dict[str, Any] | None) -> None:
    blob = {"folds": folds, "mean": mean, "sd": sd, "sd_kind": "sample standard deviation over folds (ddof=1)",
            "monitor": json.loads((Path(folds[0]["run_dir"]) / "task.json").read_text())["task"]["monitor"]}
    (rd / "cv_metrics.json").write_text(json.dumps(blob, indent=2))
    columns = [(part, k) for part in ("validation", "test") for k in mean[part]]
    with (rd / "cv_metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fold", "best_epoch"] + [f"{part}_{k}" for part, k in columns])
        for f in folds:
            w.writerow([f["fold"], f["best_epoch"]] + [_num(f[part].get(k)) for part, k in columns])
        w.writerow(["mean", ""] + [_num(mean[part][k]) for part, k in columns])
        w.writerow(["sd", ""] + [_num(sd[part][k]) for part, k in columns])
    if config.output.plots:
        (rd / "plots").mkdir(exist_ok=True)
        plots.cv_folds(folds, mean, sd, rd / "plots" / "cv_folds.png", ensemble)
        plots.cv_curves([Path(f["run_dir"]) for f in folds], blob["monitor"], rd / "plots" / "cv_curves.png")


def _num(v: Any) -> str:
    return "" if v is None else f"{v:.6g}"


def _summary(rd: Path, config: RunConfig, folds: list, mean: dict, sd: dict, ensemble: dict | None) -> str:
    def mean_sd(part: str, k: str) -> str:
        m, s = mean[part].get(k), sd[part].get(k)
        return "n/a" if m is None else f"{m:.4f} +- {s:.4f}" if s is not None else f"{m:.4f}"

    rows = [("run directory", shown_path(rd)), ("cross-validation", f"{config.cv.folds} folds"
                                         + (f", groups of {config.data.group_column} kept apart"
                                            if config.data.group_column else ""))]
    rows += [(f"validation {k}", mean_sd("validation", k) + "  (mean +- sd over folds)") for k in mean["validation"]]
    rows += [(f"test {k}", mean_sd("test", k) + "  (each fold model alone)") for k in mean["test"] if k != "loss"]
    if ensemble:
        intervals = ensemble.get("intervals") or {}
        rows += [(f"ensemble test {k}", with_interval(v, intervals.get(k))) for k, v in ensemble["metrics"].items()
                 if k != "loss"]
    written = [n for n in ("cv_metrics.csv", "cv_metrics.json", "test_ensemble_metrics.json",
                           "test_ensemble_predictions.csv", "plots/cv_folds.png", "plots/cv_curves.png")
               if (rd / n).exists()]
    rows.append(("written", ", ".join(written)))
    rows.append(("fold runs", ", ".join(Path(f["run_dir"]).name for f in folds)))
    return summary_table(rows)
