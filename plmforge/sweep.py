"""Hyperparameter sweeps with Optuna: every trial an ordinary run directory.

    plmforge sweep --config base.yaml --space space.yaml --trials 20 [section.key=value ...] [--out DIR]

The space file maps config keys to what to try:

    training.learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}   # a real number (log scale)
    training.epochs: {low: 2, high: 8}                                # whole numbers when both ends are
    head.dropout: {low: 0.0, high: 0.5, step: 0.1}
    head.pooling: [mean, attention1d, light_attention]                # one of a list

Trials are proposed by the TPE sampler (seeded with training.seed) and judged by the best validation
value of the monitored metric; after each epoch a trial reports that value and is stopped early when it
is below the median of earlier trials at the same epoch (Optuna's median pruner; `--no-prune` turns it
off). With a frozen backbone the trials read their embeddings from the persistent store, so only the
first trial runs the backbone.

    <out>/trial_000 ...            ordinary runs (config.yaml, checkpoints, metrics, plots)
    <out>/sweep_trials.csv         one row per trial: state, value, parameters, epochs, seconds
    <out>/sweep.json               direction, monitor, the best trial; <out>/study.db the Optuna study
    <out>/best_config.yaml         the best trial's config, ready for `plmforge train --config`
    <out>/plots/sweep.png          the value of every trial and the best so far; value against each parameter

`--resume <out>` continues a sweep to its number of trials (an interrupted trial counts as failed).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plmforge import owned
from plmforge.config import _SECTION_TYPES, RunConfig, config_from_dict, save_config, saved_before_test_splits
from plmforge.errors import ConfigError, PlmforgeError, RunDirError, did_you_mean
from plmforge.logs import file_logging
from plmforge.train.run import CONFIG_FILE, run_inputs, train
from plmforge.train.setup import prepare_data

log = logging.getLogger("plmforge")
BASE_FILE, SPACE_FILE, SWEEP_FILE = "sweep_base.yaml", "sweep_space.yaml", "sweep.json"


@dataclass(frozen=True)
class Param:
    key: str  # section.key
    kind: str  # 'float', 'int' or 'categorical'
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass
class SweepResult:
    out_dir: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    summary: str


def _config_field(key: str) -> None:
    section, _, name = key.partition(".")
    if section not in _SECTION_TYPES:
        raise ConfigError(f"sweep space: {key!r} names no config section{did_you_mean(section, _SECTION_TYPES)}; "
                          f"sections are {', '.join(_SECTION_TYPES)}")
    if section == "method" or section == "cv":
        if section == "cv":
            raise ConfigError("sweep space: cv keys cannot be swept (a trial is one run)")
        return  # method options depend on the method: checked when a trial's config is built
    names = [f for f in _SECTION_TYPES[section].__dataclass_fields__ if f != "CHOICES"]
    if name not in names:
        raise ConfigError(f"sweep space: {key!r} is not a config key{did_you_mean(name, names)}; "
                          f"the {section} keys are {', '.join(names)}")


def parse_space(raw: Any, where: str = "the sweep space") -> list[Param]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where} must map config keys to ranges or lists, e.g. "
                          "training.learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}")
    out = []
    for key, spec in raw.items():
        key = str(key)
        _config_field(key)
        if key in ("output.dir", "output.overwrite"):
            raise ConfigError(f"sweep space: {key} is set by the sweep (one directory per trial)")
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"sweep space: {key} has an empty list of choices")
            out.append(Param(key, "categorical", choices=tuple(spec)))
            continue
        if not isinstance(spec, dict) or "low" not in spec or "high" not in spec:
            raise ConfigError(f"sweep space: {key} must be a list of choices or {{low: .., high: ..}} "
                              f"(optionally log: true, step: ..), got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "step", "type"}
        if unknown:
            raise ConfigError(f"sweep space: {key} has unknown field(s) {', '.join(sorted(unknown))}; "
                              "use low, high, log, step, type")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"sweep space: {key} low and high must be numbers, got {low!r} and {high!r}")
        if not low < high:
            raise ConfigError(f"sweep space: {key} needs low < high, got low={low}, high={high}")
        kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
        if kind not in ("int", "float"):
            raise ConfigError(f"sweep space: {key} type must be int or float, got {kind!r}")
        log_scale = bool(spec.get("log", False))
        if log_scale and low <= 0:
            raise ConfigError(f"sweep space: {key} is on a log scale, so low must be > 0, got {low}")
        step = spec.get("step")
        if step is not None and log_scale:
            raise ConfigError(f"sweep space: {key} cannot have both log: true and a step")
        out.append(Param(key, kind, float(low), float(high), log_scale, None if step is None else float(step)))
    return out


def read_space(path: str | Path) -> list[Param]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep space file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep space file {str(p)!r} is not valid YAML: {exc}") from None
    return parse_space(raw, f"sweep space file {p}")


def _suggest(trial: Any, p: Param) -> Any:
    if p.kind == "categorical":
        return trial.suggest_categorical(p.key, list(p.choices))
    if p.kind == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)


def trial_config(base: RunConfig, params: dict[str, Any], run_dir: Path) -> RunConfig:
    raw = base.to_dict()
    for key, value in params.items():
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = value
    raw["output"]["dir"] = str(run_dir)
    raw["output"]["overwrite"] = True  # an interrupted trial's directory is replaced when its number is reused
    return config_from_dict(raw)


def check_space(base: RunConfig, space: list[Param]) -> None:
    """Every value the space can give builds a valid config (the ends of ranges, every choice)."""
    for p in space:
        values = list(p.choices) if p.kind == "categorical" else [p.low, p.high]
        for v in values:
            v = int(v) if p.kind == "int" else v
            try:
                trial_config(base, {p.key: v}, Path(base.output.dir))
            except ConfigError as exc:
                raise ConfigError(f"sweep space: {p.key}={v!r} does not make a valid run: {exc}") from None


def sweep(base: RunConfig | None, space: list[Param] | None, trials: int, out_dir: str | Path | None = None, *,
          prune: bool = True, resume: bool = False, progress: bool = False) -> SweepResult:
    import optuna

    if resume:
        out = Path(out_dir or "")
        if not (out / SWEEP_FILE).is_file():
            raise RunDirError(f"cannot resume: {out} is not a sweep directory ({SWEEP_FILE} is missing)")
        state = json.loads((out / SWEEP_FILE).read_text())
        base = config_from_dict(saved_before_test_splits(yaml.safe_load((out / BASE_FILE).read_text())))
        space = parse_space(yaml.safe_load((out / SPACE_FILE).read_text()))
        prune = state["prune"]
    assert base is not None and space is not None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a sweep runs its trials one after another in one process, so it cannot run under "
                          "accelerate launch / torchrun; run the sweep in one process (e.g. on one GPU), then the "
                          "best config distributed")
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    out = Path(out_dir or base.output.dir)
    if base.cv.folds:
        raise ConfigError("a sweep's trials are single runs: drop cv.folds (cross-validate the best config after)")
    if not resume:
        owned.check_output_dir(out, "sweep", overwrite=base.output.overwrite, inputs=run_inputs(base),
                               other="choose another --out (or --resume to continue it)")
    check_space(base, space)
    data = prepare_data(base)  # the data and the monitored metric, checked before anything is written
    monitor, direction = data.task.monitor, data.task.direction
    del data  # (splits kept on disk go with it)
    if not resume:
        owned.replace_dir(out, "sweep", run_inputs(base))
        save_config(base, out / BASE_FILE)
        (out / SPACE_FILE).write_text(yaml.safe_dump(_space_dict(space), sort_keys=False))
    state = {"monitor": monitor, "direction": direction, "trials": trials, "prune": prune,
             "space": _space_dict(space), "best": None}
    (out / SWEEP_FILE).write_text(json.dumps(state, indent=2))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=base.training.seed, n_startup_trials=min(10, max(2, trials // 3)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if prune else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=f"sqlite:///{(out / 'study.db').resolve()}", study_name="plmforge-sweep",
                                direction="maximize" if direction == "max" else "minimize", sampler=sampler,
                                pruner=pruner, load_if_exists=resume)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # interrupted before: counts as failed
        log.warning("trial %d was interrupted in an earlier session: counted as failed", t.number)
    held: dict[int, Any] = {}  # the best trial's test predictions, while it is the best
    with file_logging(out / "sweep.log", []):
        while len(study.trials) < trials:
            number, preds = _one_trial(study, base, space, out, monitor, trials, progress)
            best = _best(study)
            if preds is not None and best is not None and best.number == number:
                held = {number: preds}
            _write(out, study, space, state)
        _complete_best(out, study, held)
        _write(out, study, space, state)
        rows = _rows(study, space, out)
        summary = _summary(out, study, state, rows)
        log.info("\n%s", summary)
    return SweepResult(out, rows, state["best"], summary)


def _complete_best(out: Path, study: Any, held: dict[int, Any]) -> None:
    """The best trial's test intervals, baselines, verdict and plots (the trials skip them: only the winner's
    are read); from its predictions kept in memory, or predicted again when it ran in an earlier session."""
    from plmforge.config import load_run_config
    from plmforge.train.run import complete_test_report, training_plots

    best = _best(study)
    if best is None:
        return
    rd = out / best.user_attrs["run_dir"]
    metrics = rd / "test_metrics.json"
    if not metrics.is_file():  # no test split: the training plots only
        if load_run_config(rd).output.plots and not (rd / "plots" / "loss.png").is_file():
            training_plots(rd)
        return
    if "report" not in json.loads(metrics.read_text()):
        return  # completed before
    preds = held.get(best.number)
    if preds is None:
        from plmforge.api import load_run, predict_records

        run = load_run(rd)
        preds = predict_records(run, prepare_data(run.config).splits["test"]).predictions
    log.info("test intervals and baselines for the best trial, %d", best.number)
    complete_test_report(rd, preds)


def _one_trial(study: Any, base: RunConfig, space: list[Param], out: Path, monitor: str, trials: int,
               progress: bool) -> tuple[int, Any]:
    """Runs one trial; returns its number and its test predictions (None when it has none)."""
    import optuna

    trial = study.ask()
    params = {p.key: _suggest(trial, p) for p in space}
    rd = out / f"trial_{trial.number:03d}"
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    log.info("trial %d of %d: %s", trial.number + 1, trials, text)
    t0 = time.time()

    def report(epoch: int, trainer: Any) -> None:
        value = trainer.history[-1].get(f"val_{monitor}")
        if value is None or math.isnan(value):
            return
        trial.report(value, epoch)
        if trial.should_prune():
            trainer.request_stop(f"pruned by the sweep: validation {monitor} {value:.4f} at epoch {epoch + 1} is "
                                 "behind the median of earlier trials")

    trial.set_user_attr("run_dir", rd.name)
    try:
        config = trial_config(base, params, rd)
        result = train(config, callbacks=[report], progress=progress, test_report=False)
    except KeyboardInterrupt:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    except PlmforgeError as exc:  # e.g. a combination the model cannot run: the sweep goes on
        log.warning("trial %d failed: %s", trial.number, exc)
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return trial.number, None
    trial.set_user_attr("seconds", round(time.time() - t0, 1))
    trial.set_user_attr("epochs_run", result.fit.epochs_run)
    value = result.fit.best_value
    if result.fit.stop_reason and result.fit.stop_reason.startswith("pruned"):
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif value is None or math.isnan(value):
        trial.set_user_attr("error", f"validation {monitor} is undefined")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)
    return trial.number, result.test_predictions


def _space_dict(space: list[Param]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in space:
        if p.kind == "categorical":
            out[p.key] = list(p.choices)
        else:
            spec: dict[str, Any] = {"low": int(p.low) if p.kind == "int" else p.low,
                                    "high": int(p.high) if p.kind == "int" else p.high, "type": p.kind}
            if p.log:
                spec["log"] = True
            if p.step is not None:
                spec["step"] = p.step
            out[p.key] = spec
    return out


def _rows(study: Any, space: list[Param], out: Path) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                      if t.intermediate_values else None)
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": value,
                     **{p.key: t.params.get(p.key) for p in space},
                     "epochs_run": t.user_attrs.get("epochs_run"), "seconds": t.user_attrs.get("seconds"),
                     "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error", "")})
    return rows


def _best(study: Any) -> Any:
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return study.best_trial if done else None


def _write(out: Path, study: Any, space: list[Param], state: dict[str, Any]) -> None:
    rows = _rows(study, space, out)
    with (out / "sweep_trials.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["trial"])
        w.writeheader()
        w.writerows(rows)
    best = _best(study)
    if best is not None:
        rd = out / best.user_attrs["run_dir"]
        state["best"] = {"trial": best.number, "value": best.value, "params": best.params, "run_dir": str(rd)}
        raw = yaml.safe_load((rd / CONFIG_FILE).read_text())
        raw["output"]["dir"] = str(out / "best")
        raw["output"]["overwrite"] = False
        header = (f"# the best of {len(rows)} sweep trials: trial {best.number}, validation {state['monitor']} "
                  f"{best.value:.4f}\n# run it: plmforge train --config {out / 'best_config.yaml'}\n")
        (out / "best_config.yaml").write_text(header + yaml.safe_dump(raw, sort_keys=False))
    (out / SWEEP_FILE).write_text(json.dumps(state, indent=2))
    if rows:
        from plmforge import plots

        (out / "plots").mkdir(exist_ok=True)
        params = [(p.key, list(p.choices) if p.kind == "categorical" else None, p.log) for p in space]
        plots.sweep(rows, params, state["monitor"], state["direction"], out / "plots" / "sweep.png")


def _summary(out: Path, study: Any, state: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    from plmforge.outputs import summary_table

    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail")}
    table = [("sweep directory", str(out)),
             ("trials", f"{len(rows)} ({counts['complete']} complete, {counts['pruned']} pruned, "
                        f"{counts['fail']} failed)"),
             ("judged by", f"best validation {state['monitor']} ({state['direction']})")]
    best = state.get("best")
    if best:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        table += [("best trial", f"{best['trial']} ({Path(best['run_dir']).name}): {best['value']:.4f}"),
                  ("best parameters", params),
                  ("best config", f"{out / 'best_config.yaml'}  (plmforge train --config {out / 'best_config.yaml'})")]
    table.append(("written", "sweep_trials.csv, sweep.json, best_config.yaml, plots/sweep.png"))
    return summary_table(table)
