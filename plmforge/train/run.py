"""`train`: one function from a config to a finished run directory (used by the CLI and the UI)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from collections.abc import Callable
from contextlib import nullcontext
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from plmforge import checkpoint as ckpt
from plmforge import owned, plots, threshold
from plmforge.compare import compare, judged_metric
from plmforge.config import RunConfig, config_to_overrides, load_run_config, save_config
from plmforge.errors import ConfigError, RunDirError
from plmforge.events import EVENTS_FILE, ConsoleProgress, EventLog
from plmforge.inference import Predictions
from plmforge.logs import buffered, file_logging
from plmforge.methods import METHODS
from plmforge.models.backbone import enable_checkpointing
from plmforge.models.task_model import count_parameters
from plmforge.outputs import (metrics_blob, prediction_frames, shown_path, summary_table, with_interval, write_frames,
                              write_metrics)
from plmforge.precision import check_precision, default_device
from plmforge.train.loop import FitResult, Trainer
from plmforge.train.memory import estimate as estimate_memory
from plmforge.train.memory import measured_peak_mb, plan_memory
from plmforge.train.memory import report as report_memory
from plmforge.train.setup import Assembled, assemble

log = logging.getLogger("plmforge")
CONFIG_FILE = "config.yaml"
TASK_FILE = "task.json"


@dataclass
class RunResult:
    run_dir: Path
    fit: FitResult
    test_metrics: dict[str, Any] | None
    summary: str
    test_predictions: Predictions | None = None  # the best weights' test predictions (main process)


def preview_command(config: RunConfig) -> str:
    return " ".join(["plmforge", "train", *map(shlex.quote, config_to_overrides(config))])


def run_inputs(config: RunConfig) -> list[str]:
    """The local paths a run reads: its data files and a local model directory (never replaced)."""
    return owned.inputs_of(config.data) + ([config.model.name] if Path(config.model.name).expanduser().exists()
                                            else [])


def _check_run_dir(run_dir: Path, overwrite: bool, resume: bool, config: RunConfig | None = None) -> None:
    if resume:
        if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / "model_stats.json").is_file():
            raise RunDirError(f"cannot resume: {run_dir} is not a complete plmforge run directory ({CONFIG_FILE} "
                              "or model_stats.json is missing: the run stopped while it was being set up); "
                              "start it again (with --overwrite if plmforge made the directory)")
        return
    owned.check_output_dir(run_dir, "run", overwrite=overwrite, inputs=run_inputs(config) if config else (),
                           other="choose another output.dir (or --resume to continue it)")


def check_hardware(config: RunConfig) -> None:
    """Refuse settings the machine cannot honour, instead of silently training without them (or, for a
    precision the device only emulates, many times slower: unless training.force_precision)."""
    mp = config.training.mixed_precision
    gpu = torch.cuda.is_available()
    if mp == "fp16" and not gpu:
        raise ConfigError("training.mixed_precision=fp16 needs a CUDA GPU and none is available; "
                          "use no (float32), or bf16 on a CPU with native bfloat16")
    check_precision(mp, default_device(), config.training.force_precision, f"training.mixed_precision={mp}",
                    fix="training.mixed_precision=no (float32)" + (" or fp16" if gpu else ""),
                    keep="pass --force-precision to plmforge train (or set training.force_precision=true)")
    for tracker in config.training.report_to:  # the tracker names are their package names
        try:
            __import__(tracker)
        except ImportError:
            raise ConfigError(f"training.report_to={tracker} needs the {tracker} package: "
                              f"pip install {tracker}  (or pip install 'plmforge[tracking]')") from None


def _plan_memory(asm: Assembled, lengths: list[int], frozen: bool, state: PartialState) -> Assembled:
    """Resolve what the user left to the memory plan (gradient checkpointing, micro-batches) from the memory
    estimate, switch recomputation on in the loaded backbone when chosen, and keep the decisions in the run's
    config (config.yaml), so a resumed run keeps them. Neither changes what a step computes, only its memory
    and time."""
    m, b = asm.config.model, asm.config.batching
    plan = plan_memory(asm.backbone.model, lengths, asm.config, frozen, state.device,
                       micro_batches=state.device.type == "cpu" and state.num_processes == 1)
    if plan.checkpointing and not m.gradient_checkpointing:
        enable_checkpointing(asm.backbone.model, plan.every or 1)
    if plan.reason:
        log.info("%s", plan.reason)
    config = asm.config.replace(model=dataclasses.replace(m, gradient_checkpointing=plan.checkpointing,
                                                          checkpoint_every=plan.every),
                                batching=dataclasses.replace(b, micro_batch_tokens=plan.micro_batch_tokens))
    return dataclasses.replace(asm, config=config)


def _write_run_files(asm: Assembled, run_dir: Path) -> None:
    cfg = asm.config
    save_config(cfg, run_dir / CONFIG_FILE)
    (run_dir / "command.txt").write_text(preview_command(cfg) + "\n")
    asm.data.write_split_mapping(run_dir / "split_mapping.json", cfg.training.seed)
    stats = count_parameters(asm.model)
    stats["backbone_total"] = sum(p.numel() for p in asm.model.backbone.parameters())
    stats["head_total"] = sum(p.numel() for p in asm.model.head.parameters())
    stats["method"] = cfg.method.name
    (run_dir / "model_stats.json").write_text(json.dumps(stats, indent=2))
    task = {"task": asdict(asm.data.task), "label_scaler": asm.scaler.to_dict(),
            "backbone": {"source": asm.backbone.source, "family": asm.backbone.family.name,
                         "max_residues": asm.backbone.max_residues, "hidden_size": asm.backbone.hidden_size},
            "data_notes": asm.data.notes}
    (run_dir / TASK_FILE).write_text(json.dumps(task, indent=2))
    asm.backbone.tokenizer.save_pretrained(str(run_dir / "tokenizer"))
    log.info("model: %s parameters, %s trainable (%.2f%%) with method %s", f"{stats['total']:,}",
             f"{stats['trainable']:,}", stats["trainable_percent"], cfg.method.name)


def emit_start(events: EventLog, config: RunConfig, rd: Path, resume: bool, **extra: Any) -> None:
    """A run's first events: what it is and who started it, then the set-up phase."""
    events.emit("start", run_dir=str(rd), model=config.model.name, method=config.method.name,
                epochs=config.training.epochs, resume=resume, pid=os.getpid(),
                user=os.environ.get("PLMFORGE_USER") or None, **extra)
    events.emit("phase", phase="setup")


def record_setup(asm: Assembled, rd: Path, events: EventLog, memory: Any, files: bool = True) -> None:
    """The run's files (`files`: a new run), its memory estimate, and the `model` event with its sizes."""
    if files:
        _write_run_files(asm, rd)
    memory.write(rd)
    stats = json.loads((rd / "model_stats.json").read_text())
    events.emit("model", **{k: stats[k] for k in ("total", "trainable", "trainable_percent")})


def train(config: RunConfig | None = None, *, run_dir: str | Path | None = None, resume: bool = False,
          callbacks: list[Callable[[int, Trainer], None]] | None = None, progress: bool = True,
          test_report: bool = True) -> RunResult:
    """Train, evaluate on the test split and write everything to the run directory, with structured
    progress events in <run>/events.jsonl (and a console progress bar fed by them unless `progress=False`).

    `test_report=False` leaves out the test metrics' bootstrap intervals and the baselines (a sweep adds
    them to its best trial only, with `complete_test_report`).

    With `resume`, the run directory's saved config is used and training continues from last/ (or, when
    the run was stopped before its first epoch ended, starts again from the beginning: runs are seeded,
    so the result is the one an uninterrupted run gives)."""
    if resume:
        rd = Path(run_dir or (config.output.dir if config else ""))
        _check_run_dir(rd, False, True)
        config = load_run_config(rd)
        # the directory given is the run (a copied or moved run continues where it is, not where it was made)
        config = config.replace(output=dataclasses.replace(config.output, dir=str(rd)))
    assert config is not None
    if config.cv.folds and config.cv.fold is None:
        raise ConfigError(f"cv.folds={config.cv.folds} asks for cross-validation: run it with plmforge.cv."
                          "cross_validate(config) (the CLI does: plmforge train ... --cv K), or set cv.fold to train "
                          "one fold")
    rd = Path(config.output.dir).expanduser()
    _check_run_dir(rd, config.output.overwrite, resume, config)
    check_hardware(config)
    # one process, or one of several under `accelerate launch` / torchrun (CPU-only machines use gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    if not state.is_main_process:
        log.setLevel(logging.WARNING)
    with buffered() as early:  # validates data and model before anything is written
        if state.num_processes > 1:
            log.info("distributed run: %d processes (%s)", state.num_processes, state.distributed_type.value)
        asm = assemble(config, tokenizer_dir=rd / "tokenizer" if resume else None)
        frozen = METHODS[asm.config.method.name].frozen_backbone
        lengths = [int(n) for n in asm.encoded["train"].lengths]
        asm = _plan_memory(asm, lengths, frozen, state)
        memory = estimate_memory(asm.model, asm.backbone.model.config, lengths, asm.config, frozen, state.device)
        report_memory(memory)
    if state.is_main_process and not resume:
        owned.replace_dir(rd, "run", run_inputs(config))  # checked again; a new directory gets its marker
    state.wait_for_everyone()
    rd.mkdir(parents=True, exist_ok=True)
    main = state.is_main_process
    events = EventLog(rd / EVENTS_FILE if main else None, [ConsoleProgress()] if main and progress else [])
    emit_start(events, config, rd, resume)
    try:
        with file_logging(rd / "train.log", early.records) if main else nullcontext():
            if main:
                record_setup(asm, rd, events, memory, files=not resume)
            if main:
                ckpt.recover(rd / "last")
                ckpt.recover(rd / "best")
            state.wait_for_everyone()
            restart = resume and not (rd / "last").is_dir()
            finished = rd / "metrics_epochs.jsonl"
            if restart and finished.is_file() and finished.read_text().strip():
                raise RunDirError(f"cannot resume {rd}: epochs finished (metrics_epochs.jsonl) but their last/ "
                                  "checkpoint is missing; start a new run, or pass --overwrite to replace this one")
            if restart:
                log.info("resume: no epoch had finished, so training starts again from the beginning (the run "
                         "is seeded: the result equals an uninterrupted run)")
                if main:
                    for name in ("metrics_steps.jsonl", "metrics_epochs.jsonl"):
                        (rd / name).unlink(missing_ok=True)
            state.wait_for_everyone()
            t0 = time.time()
            trainer = Trainer(asm, rd, callbacks, events=events)
            fit = trainer.fit(resume=resume and not restart)
            test, test_preds = _finish(asm, trainer, rd, fit, test_report)
            if main:  # the measured peak next to the estimate made before training
                memory.measured_peak_mb = measured_peak_mb(state.device)
                memory.write(rd)
            trainer.close()
            trainer.accelerator.end_training()  # closes trackers (and the process group, if any)
            summary = _summary(asm, rd, fit, test, time.time() - t0)
            log.info("\n%s", summary)
    except KeyboardInterrupt:
        events.emit("end", status="aborted")
        raise
    except BaseException as exc:
        events.emit("end", status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        events.emit("end", status="finished")
    finally:
        events.close()
    return RunResult(rd, fit, test, summary, test_preds)


DEFERRED = "deferred: intervals, baselines and plots are made for the sweep's best trial only"


def _finish(asm: Assembled, trainer: Trainer, rd: Path, fit: FitResult, report: bool = True,
            deferred: str = DEFERRED) -> tuple[dict[str, Any] | None, Predictions | None]:
    """Reload the best weights, then write test metrics, predictions and plots (`report=False`: the test
    metrics without intervals, baselines and plots, `deferred` saying where they are)."""
    main = trainer.accelerator.is_main_process
    spec = METHODS[asm.config.method.name]
    if spec.report is not None and main:  # the method's own account of training (e.g. AdaLoRA's ranks)
        (rd / "method_report.json").write_text(json.dumps(spec.report(asm.model), indent=2))
    trainer.accelerator.wait_for_everyone()  # the main process wrote best/
    ckpt.load_weights(rd / "best", asm.model, trainer.engine)
    plot_dir = rd / "plots"
    draw = asm.config.output.plots and report  # a sweep draws its best trial's plots only
    if draw and main:
        training_plots(rd)
    if "test" not in asm.encoded:
        log.warning("no test split: test metrics are not computed (give data.test or a test file)")
        return None, None
    if asm.encoded["test"].labels is None:
        return None, None
    trainer.events.emit("phase", phase="testing")
    metrics, preds = trainer.evaluate(asm.model, "test")  # every process takes part
    task = asm.data.task
    tuned = None
    if threshold.applies(task) and asm.config.training.tune_threshold != "none":
        _, val = trainer.evaluate(asm.model, "validation")
        tuned = _tune_threshold(task, asm.config.training.tune_threshold, val, preds)
    if not main:
        return None, None
    classes = asm.config.data.residue_classes
    blob = metrics_blob(metrics, task, "test", len(preds), preds.labels, preds.scores,
                        {"best_epoch": fit.best_epoch + 1, "monitor": task.monitor}, classes)
    out = asm.config.output
    if report and (out.bootstrap or out.baselines):
        trainer.events.emit("phase", phase="baselines")
        zero = zero_shot_scores(asm.config, asm.data.splits) if out.baselines else None
        blob.update(compare(task, asm.data.splits, preds.labels, preds.scores, out.bootstrap,
                            asm.config.training.seed, out.baselines, zero))
    elif out.bootstrap or out.baselines:
        blob["report"] = deferred
    if tuned is not None:
        blob["threshold"] = tuned
        threshold.write(rd, tuned)
    write_metrics(blob, rd, "test")
    trainer.events.emit("test", metrics=blob["metrics"])
    if asm.config.output.save_predictions:
        recs = asm.data.splits["test"]
        write_frames(rd / "test_predictions.csv", prediction_frames(
            task.problem, recs.ids, recs.sequences, preds.scores, preds.labels, classes,
            tuned["threshold"] if tuned else None))
    if draw:
        task.problem.plots(preds.labels, preds.scores, plot_dir, classes)
        if blob.get("baselines"):
            plots.baselines(blob, judged_metric(task), plot_dir / "baselines.png")
    return blob, preds


def zero_shot_scores(config: RunConfig, splits: dict[str, Any]) -> dict[str, Any] | None:
    """For data given as mutants of a wild type (data.mutant_column): every record's zero-shot score (masked
    marginal, summed over its substitutions) by the run's model's own masked-LM head, per split; None (with
    the reason logged) when the data are not mutants or the model has no usable LM head."""
    if config.data.mutant_column is None or config.data.wild_type is None:
        return None
    import numpy as np

    from plmforge.data.notation import Substitution, read_wild_type
    from plmforge.mutate import scoring
    from plmforge.mutate.lm import load_scorer

    wild_type = read_wild_type(config.data.wild_type)
    try:
        lm = load_scorer(config.model.name, config.model.trust_remote_code)
    except ConfigError as exc:
        log.info("zero-shot baselines left out: %s", exc)
        return None
    if lm.structure_field is not None:
        log.info("zero-shot baselines left out: %s scores with a structure beside the sequence (%s); this baseline "
                 "is built for sequence-only models (plmforge mutate score --structure scores such a model)",
                 config.model.name, lm.structure_field)
        return None
    out = {}
    for name, records in splits.items():
        variants = [tuple(Substitution(i + 1, w, m) for i, (w, m) in enumerate(zip(wild_type, seq, strict=True))
                          if w != m) for seq in records.sequences]
        out[name] = np.asarray(scoring.score_variants(lm, wild_type, variants, "masked_marginal"))
    log.info("zero-shot scores of %d variants by %s's masked-LM head (the zero-shot and augmented baselines)",
             sum(len(v) for v in out.values()), config.model.name)
    return out


def training_plots(rd: Path) -> None:
    """The loss curves and validation metrics per epoch, from the run's metric files."""
    (rd / "plots").mkdir(exist_ok=True)
    plots.loss_curves(rd, rd / "plots" / "loss.png")
    plots.validation_metrics(rd, rd / "plots" / "validation_metrics.png")


def complete_test_report(rd: Path, preds: Predictions) -> dict[str, Any]:
    """Add the bootstrap intervals, baselines and verdict to the test metrics of a run trained with
    `test_report=False` (from its test predictions), rewrite its metric files and draw its plots."""
    from plmforge.train.setup import prepare_data

    config = load_run_config(rd)
    data = prepare_data(config)
    blob = json.loads((rd / "test_metrics.json").read_text())
    blob.pop("report", None)
    out = config.output
    blob.update(compare(data.task, data.splits, preds.labels, preds.scores, out.bootstrap, config.training.seed,
                        out.baselines))
    write_metrics(blob, rd, "test")
    if out.plots:
        training_plots(rd)
        data.task.problem.plots(preds.labels, preds.scores, rd / "plots", config.data.residue_classes)
        if blob.get("baselines"):
            plots.baselines(blob, judged_metric(data.task), rd / "plots" / "baselines.png")
    return blob


def _tune_threshold(task: Any, metric: str, val: Any, test: Any) -> dict[str, Any]:
    """The validation-tuned decision threshold and the test metrics at it."""
    t, score = threshold.tune_split(task.problem, val.labels, val.scores, metric)
    at = threshold.metrics_at(task.problem, task.metrics, test.labels, test.scores, t)
    log.info("decision threshold %.4g tuned on validation %s (%.4f); predictions use it", t, metric, score)
    return {"metric": metric, "threshold": t, "validation_score": score, "metrics": at}


def _summary(asm: Assembled, rd: Path, fit: FitResult, test: dict[str, Any] | None, seconds: float) -> str:
    task = asm.data.task
    rows = [("run directory", shown_path(rd)), ("model / method", f"{asm.config.model.name} / {asm.config.method.name}"),
            ("epochs run", f"{fit.epochs_run}{f' ({fit.stop_reason})' if fit.stop_reason else ' (early stop)' if fit.stopped_early else ''}"),
            ("best epoch", f"{fit.best_epoch + 1} ({task.monitor} {fit.best_value:.4f})" if fit.best_value is not None
             else "n/a"),
            ("time", f"{seconds:.1f} s")]
    if test:
        intervals = test.get("intervals") or {}
        for k, v in test["metrics"].items():
            rows.append((f"test {k}", with_interval(v, intervals.get(k))))
        if intervals:
            rows.append(("intervals", f"95% bootstrap over test proteins ({test['bootstrap']['resamples']} resamples)"))
        metric = judged_metric(task)
        for name, b in (test.get("baselines") or {}).items():
            rows.append((f"baseline {name}", f"{metric} {with_interval(b['metrics'].get(metric), (b.get('intervals') or {}).get(metric))}"))
        if test.get("verdict"):
            rows.append(("PLM vs baselines", test["verdict"]["text"]))
        if test.get("threshold"):
            th = test["threshold"]
            at = ", ".join(f"{k} {v:.4f}" for k, v in th["metrics"].items() if v is not None)
            rows.append(("decision threshold", f"{th['threshold']:.4g} (tuned on validation {th['metric']} "
                                               f"{th['validation_score']:.4f}); test at it: {at}"))
    rows += _written(rd)
    return summary_table(rows)


def _written(rd: Path) -> list[tuple[str, str]]:
    """The summary's file rows: only what is really in the run directory."""
    def present(*names: str) -> str:
        return ", ".join(n for n in names if (rd / n.rstrip("/")).exists())

    rows = [("checkpoints", present("best/", "last/")),
            ("metrics", present("test_metrics.json", "test_metrics.csv", "test_baselines.csv", "metrics_epochs.jsonl",
                                "metrics_steps.jsonl")),
            ("predictions", present("test_predictions.csv"))]
    plots = sorted(p.name for p in (rd / "plots").glob("*.png")) if (rd / "plots").is_dir() else []
    if plots:
        rows.append(("plots", f"plots/ ({', '.join(plots)})"))
    return [(k, v) for k, v in rows if v]
