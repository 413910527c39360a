"""Low-N learning curves (`plmforge train ... --few-shot 24,48,96,192 --repeats 5`): the same config trained on
random subsets of the training data of each size, each size several times (another subset each time), with
the test metrics' mean and sample standard deviation per size — the setting protein engineers with a few
dozen measured variants are in.

    <out>/config.yaml, command.txt          the config the runs share; few_shot_plan.json: sizes and repeats
    <out>/n<size>_r<repeat>/                ordinary runs: data.train_samples=<size>, data.train_draw=<repeat - 1>
                                            (test metrics without intervals and baselines, as a sweep's trials)
    <out>/few_shot.csv                      per run: size, repeat, draw, epochs, every test metric
    <out>/few_shot.json                     the runs, and per size the mean and sd (ddof=1) of every test metric
    <out>/plots/few_shot.png                the judged test metric against the training size: every run a dot,
                                            the mean with +- one sd

The test split is the same for every run (the data's test file, or the test split carved from it with the
config's seed, which every run keeps), so the sizes are compared on one yardstick; a validation split carved
from the training data is carved from each run's subset. `--resume <out>` keeps finished runs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plmforge import owned
from plmforge.compare import judged_metric
from plmforge.config import RunConfig, load_run_config, save_config
from plmforge.errors import ConfigError, RunDirError
from plmforge.events import RunProgress
from plmforge.logs import file_logging
from plmforge.outputs import summary_table
from plmforge.train.run import CONFIG_FILE, preview_command, run_inputs, train
from plmforge.train.setup import prepare_data

log = logging.getLogger("plmforge")
FILE = "few_shot.json"


@dataclass
class FewShotResult:
    out_dir: Path
    runs: list[dict[str, Any]]
    by_size: dict[int, dict[str, dict[str, float | None]]]  # size -> metric -> {mean, sd}
    metric: str
    summary: str


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in str(text).split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--few-shot {text!r}: give training sizes as integers, e.g. 24,48,96,192") from None
    if not sizes or sizes[0] < 2:
        raise ConfigError(f"--few-shot {text!r}: every size must be at least 2")
    return sizes


def is_few_shot_run(directory: str | Path) -> bool:
    return (Path(directory) / "few_shot_plan.json").is_file()


def few_shot(config: RunConfig | None, sizes: list[int] | None = None, repeats: int = 5, *,
             out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> FewShotResult:
    """Train `repeats` runs at each training size and summarise their test metrics per size."""
    if resume:
        rd = Path(out_dir or (config.output.dir if config else ""))
        if not (rd / "few_shot_plan.json").is_file():
            raise RunDirError(f"cannot resume {rd}: it is not a few-shot run (few_shot_plan.json is missing)")
        plan = json.loads((rd / "few_shot_plan.json").read_text())
        config, sizes, repeats = load_run_config(rd), plan["sizes"], plan["repeats"]
        config = config.replace(output=dataclasses.replace(config.output, dir=str(rd)))
    assert config is not None and sizes
    if repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    if config.cv.folds:
        raise ConfigError("--few-shot and --cv are two different experiments: run one of them")
    rd = Path(config.output.dir).expanduser()
    if not resume:
        owned.check_output_dir(rd, "fewshot", overwrite=config.output.overwrite, inputs=run_inputs(config),
                               other="choose another output.dir (or --resume to continue it)")
    data = prepare_data(config)  # the data and the largest size are checked before anything is written
    available = len(data.splits["train"]) + (len(data.splits["validation"]) if data.validation_carved else 0)
    if sizes[-1] > available:
        raise ConfigError(f"--few-shot size {sizes[-1]} is above the {available} training samples the data has; "
                          f"use sizes up to {available}")
    if "test" not in data.splits or data.splits["test"].labels is None:
        raise ConfigError("a few-shot curve is measured on a labelled test split: give data.test (or keep "
                          "data.test_fraction above 0)")
    if not resume:
        owned.replace_dir(rd, "fewshot", run_inputs(config))
        save_config(config, rd / CONFIG_FILE)
        (rd / "command.txt").write_text(preview_command(config) + f" --few-shot {','.join(map(str, sizes))} "
                                        f"--repeats {repeats}\n")
        (rd / "few_shot_plan.json").write_text(json.dumps({"sizes": sizes, "repeats": repeats}))
    metric = judged_metric(data.task)
    runs = []
    with file_logging(rd / "fewshot.log", []):
        for size in sizes:
            for r in range(repeats):
                log.info("few-shot: %d training samples, repeat %d of %d", size, r + 1, repeats)
                runs.append(_one(config, rd, size, r, resume, progress))
        by_size = _aggregate(runs)
        _write(rd, runs, by_size, metric, config)
        summary = _summary(rd, by_size, metric, repeats)
        log.info("\n%s", summary)
    return FewShotResult(rd, runs, by_size, metric, summary)


def _one(config: RunConfig, rd: Path, size: int, repeat: int, resume: bool, progress: bool) -> dict[str, Any]:
    run_dir = rd / f"n{size}_r{repeat + 1}"
    if not (resume and RunProgress.read(run_dir).status == "finished"):
        cfg = config.replace(data=dataclasses.replace(config.data, train_samples=size, train_draw=repeat),
                             output=dataclasses.replace(config.output, dir=str(run_dir), overwrite=True))
        train(cfg, progress=progress, test_report=False)
    test = json.loads((run_dir / "test_metrics.json").read_text())
    epochs = [json.loads(x) for x in (run_dir / "metrics_epochs.jsonl").read_text().splitlines() if x.strip()]
    return {"size": size, "repeat": repeat + 1, "draw": repeat, "run_dir": str(run_dir), "epochs": len(epochs),
            "test": test["metrics"]}


def _aggregate(runs: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, float | None]]]:
    out: dict[int, dict[str, dict[str, float | None]]] = {}
    for size in sorted({r["size"] for r in runs}):
        part = [r for r in runs if r["size"] == size]
        out[size] = {}
        for key in part[0]["test"]:
            values = np.array([np.nan if r["test"].get(key) is None else r["test"][key] for r in part], dtype=float)
            finite = values[np.isfinite(values)]
            out[size][key] = {"mean": float(finite.mean()) if len(finite) else None,
                              "sd": float(finite.std(ddof=1)) if len(finite) > 1 else None}
    return out


def _write(rd: Path, runs: list[dict[str, Any]], by_size: dict, metric: str, config: RunConfig) -> None:
    keys = list(runs[0]["test"])
    with (rd / "few_shot.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["size", "repeat", "draw", "epochs", *[f"test_{k}" for k in keys]])
        for r in runs:
            w.writerow([r["size"], r["repeat"], r["draw"], r["epochs"],
                        *["" if r["test"].get(k) is None else f"{r['test'][k]:.6g}" for k in keys]])
    (rd / FILE).write_text(json.dumps({"metric": metric, "runs": runs, "by_size": {str(k): v for k, v in
                                                                                   by_size.items()},
                                       "sd_kind": "sample standard deviation over repeats (ddof=1)"}, indent=1))
    if config.output.plots:
        _plot(runs, by_size, metric, rd / "plots" / "few_shot.png")


def _plot(runs: list[dict[str, Any]], by_size: dict, metric: str, out: Path) -> None:
    from plmforge.plots import _plt

    out.parent.mkdir(exist_ok=True)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    xs = [r["size"] for r in runs]
    ax.scatter(xs, [r["test"].get(metric, np.nan) for r in runs], s=14, alpha=0.5, color="#3182bd",
               label="one run (its own random subset)")
    sizes = sorted(by_size)
    means = [by_size[s][metric]["mean"] if by_size[s][metric]["mean"] is not None else np.nan for s in sizes]
    sds = [by_size[s][metric]["sd"] or 0.0 for s in sizes]
    ax.errorbar(sizes, means, yerr=sds, fmt="o-", color="black", capsize=4, label="mean +- sd")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("training samples (log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title("Few-shot learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _summary(rd: Path, by_size: dict, metric: str, repeats: int) -> str:
    def shown(v: dict[str, float | None]) -> str:
        if v["mean"] is None:
            return "n/a"
        return f"{v['mean']:.4f}" + (f" +- {v['sd']:.4f}" if v["sd"] is not None and not math.isnan(v["sd"]) else "")

    rows = [("few-shot run", str(rd)), ("repeats per size", str(repeats))]
    rows += [(f"n = {size}", f"test {metric} {shown(v[metric])}") for size, v in by_size.items()]
    rows.append(("written", ", ".join(n for n in ("few_shot.csv", FILE, "plots/few_shot.png") if (rd / n).exists())))
    return summary_table(rows)
