"""Cross-validation folds trained together: on a frozen backbone whose pooled vectors are held in memory, a
mean-pooling head is a small MLP, and one optimizer step of one fold costs little more than the calls that
launch it. The K folds' heads are therefore stacked — every weight becomes a (K, ...) tensor — and one
batched forward, backward and AdamW update per step trains all of them, each fold on its own batch (its
own sampler, seed and epoch, as when it runs alone), with its own loss, gradient clipping, learning-rate
schedule, validation, early stopping and checkpoints. A fold that stops early stops being updated.

Without dropout, what each fold computes is what its own run (cv.together=false) computes, up to
floating-point rounding (batched matrix products sum in another order). With dropout, each fold draws its
hashed masks from a generator of its own (seeded by training.seed and the fold), so a fold's result does not
depend on which folds train beside it — a fold trained again alone in this pass (a resumed cross-validation)
repeats itself — but its masks are not those of a run of that fold alone. A fold's run directory is an
ordinary one: its last/ holds the optimizer state of its last finished epoch (torch.optim.AdamW's layout),
so an interrupted fold can be continued alone (plmforge train --resume <fold dir>)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from plmforge import checkpoint as ckpt
from plmforge import owned
from plmforge.config import RunConfig
from plmforge.data.dataset import PreparedData
from plmforge.events import EVENTS_FILE, EventLog
from plmforge.heads import MeanPoolHead
from plmforge.inference import predictions_of, split_metrics
from plmforge.logs import LOG, buffered
from plmforge.methods import METHODS, CacheOptions
from plmforge.train.loop import FitResult, Trainer
from plmforge.train.memory import estimate as estimate_memory
from plmforge.train.memory import measured_peak_mb
from plmforge.train.run import (RunResult, _finish, _plan_memory, _summary, check_hardware, emit_start,
                                record_setup, run_inputs)
from plmforge.train.schedule import build_scheduler
from plmforge.train.stacked import StackedAdamW, StackedMLP, fold_seed
from plmforge.train.setup import assemble_folds
from plmforge.train.stopping import graceful_stop

log = logging.getLogger("plmforge")
DEFERRED = ("deferred: bootstrap intervals are computed for the fold models' ensemble (../test_ensemble_metrics.json); "
            "the folds' curves are drawn together (../plots/cv_curves.png)")
_FOLD: ContextVar[int | None] = ContextVar("plmforge_fold", default=None)


def config_reason(config: RunConfig) -> str | None:
    """Why a cross-validation's folds cannot train together, from the config alone (None: they may; the
    assembled runs are checked again by together_reason)."""
    spec = METHODS[config.method.name]
    options = config.method.options
    if not (spec.frozen_backbone and isinstance(options, CacheOptions) and options.cache_embeddings):
        return "only heads on a frozen backbone's stored embeddings train together"
    if config.head.pooling not in (None, "mean"):
        return "only the mean-pooling head trains together"
    return None


def train_together(configs: list[RunConfig], progress: bool = True,
                   datas: list[PreparedData] | None = None) -> list[RunResult] | None:
    """The fold runs `configs` (cv.fold set, fresh directories) trained in one stacked pass and written as
    train() writes a run, without per-fold intervals, baselines and plots (DEFERRED); None, with nothing
    written, when they cannot train together (the reason is logged and the caller trains them one by one).
    `datas`: every fold's prepared data (setup.prepare_folds), when the caller has it."""
    from accelerate import PartialState

    reason = config_reason(configs[0])
    if reason is None:
        check_hardware(configs[0])
        with buffered() as early:
            state = PartialState(cpu=not torch.cuda.is_available())
            asms = [_plan_memory(a, [int(n) for n in a.encoded["train"].lengths], True, state)
                    for a in assemble_folds(configs, datas)]
            memories = [estimate_memory(a.model, a.backbone.model.config, [int(n) for n in a.encoded["train"].lengths],
                                        a.config, True, state.device) for a in asms]
            trainers = [Trainer(a, Path(c.output.dir).expanduser()) for a, c in zip(asms, configs, strict=True)]
        reason = together_reason(trainers[0]) or _memory_reason(trainers)
    if reason is not None:
        log.info("cross-validation: the folds train one after another (%s)", reason)
        return None
    for t, c in zip(trainers, configs, strict=True):
        owned.check_output_dir(t.run_dir, "run", overwrite=c.output.overwrite, inputs=run_inputs(c),
                               other="choose another output.dir")
    for t, c in zip(trainers, configs, strict=True):
        owned.replace_dir(t.run_dir, "run", run_inputs(c))
        t.run_dir.mkdir(parents=True, exist_ok=True)
        t.events = EventLog(t.run_dir / EVENTS_FILE)
        emit_start(t.events, c, t.run_dir, False, together=len(trainers))
    results: list[RunResult] = []
    with _fold_logs([t.run_dir for t in trainers], early.records):
        try:
            for k, (t, memory) in enumerate(zip(trainers, memories, strict=True)):
                with fold_scope(k):
                    record_setup(t.asm, t.run_dir, t.events, memory)
            t0 = time.time()
            fits = fit_together(trainers, progress)
            for k, (t, fit, memory) in enumerate(zip(trainers, fits, memories, strict=True)):
                with fold_scope(k):
                    t.cache.store.refresh()  # the test embeddings the fold before computed
                    test, preds = _finish(t.asm, t, t.run_dir, fit, report=False, deferred=DEFERRED)
                    memory.measured_peak_mb = measured_peak_mb(state.device)
                    memory.write(t.run_dir)
                    t.close()
                    summary = _summary(t.asm, t.run_dir, fit, test, time.time() - t0)
                    log.info("\n%s", summary)
                    t.events.emit("end", status="finished")
                    results.append(RunResult(t.run_dir, fit, test, summary, preds))
        except KeyboardInterrupt:
            for t in trainers[len(results):]:
                t.events.emit("end", status="aborted")
            raise
        except BaseException as exc:
            for t in trainers[len(results):]:
                t.events.emit("end", status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            for t in trainers:
                t.events.close()
    return results


@contextmanager
def fold_scope(k: int) -> Iterator[None]:
    """Log records made inside go to fold k's train.log only (and to the shared logs)."""
    token = _FOLD.set(k)
    try:
        yield
    finally:
        _FOLD.reset(token)


class _OneFold(logging.Filter):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def filter(self, record: logging.LogRecord) -> bool:
        fold = _FOLD.get()
        return fold is None or fold == self.k


@contextmanager
def _fold_logs(run_dirs: list[Path], earlier: list[logging.LogRecord]) -> Iterator[None]:
    """Each fold's train.log: the shared set-up and training lines, and its own (fold_scope) lines."""
    handlers = []
    for k, rd in enumerate(run_dirs):
        h = logging.FileHandler(rd / "train.log", mode="a")
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        for record in earlier:
            h.handle(record)
        h.addFilter(_OneFold(k))
        LOG.addHandler(h)
        handlers.append(h)
    try:
        yield
    finally:
        for h in handlers:
            LOG.removeHandler(h)
            h.close()


def _memory_reason(trainers: list[Trainer]) -> str | None:
    """Every fold holds its train and validation vectors in memory: refused (before anything is written) when
    they do not fit the in-memory budget."""
    cache = trainers[0].cache
    hidden = trainers[0].asm.backbone.hidden_size
    need = sum(len(t.asm.encoded[s]) for t in trainers for s in ("train", "validation")) * hidden * 4 / 2**20
    if need > cache.budget_mb:
        return (f"the folds' pooled vectors ({need:.0f} MB) exceed the in-memory budget (method.cache_memory_mb, "
                f"{cache.budget_mb:.0f} MB)")
    return None


class FoldsInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM stopped folds that trained together; each keeps its last finished epoch."""


def together_reason(trainer: Trainer) -> str | None:
    """Why this fold's run cannot train in a stacked pass with the other folds (None when it can)."""
    cfg = trainer.cfg
    tcfg = cfg.training
    model = trainer.asm.model
    if trainer.cache is None or not trainer.cache.pooled:
        return "the head does not train from stored pooled vectors (needs a frozen backbone and head.pooling=mean)"
    if type(model.head) is not MeanPoolHead or model.adapter is not None:
        return "only the mean-pooling head is stacked"
    if any(not isinstance(m, (nn.Linear, nn.GELU, nn.Dropout)) for m in model.head.mlp):
        return "the head has layers the stacked pass does not know"
    if tcfg.gradient_accumulation_steps != 1:
        return "gradient accumulation is set"
    if tcfg.mixed_precision != "no":
        return "mixed precision is set"
    if tcfg.report_to:
        return "experiment trackers are set (each fold reports alone)"
    if trainer.accelerator.num_processes > 1:
        return "several processes run"
    if any(f is not None for f in (trainer.spec.prepare, trainer.spec.after_step, trainer.spec.extra_loss)):
        return f"method {trainer.spec.name} has its own training steps"
    if any(p.dtype != torch.float32 for p in model.head.parameters()):
        return "the head is not float32"
    return None


def fit_together(trainers: list[Trainer], progress: bool = False) -> list[FitResult]:
    """Train the folds' heads in one stacked pass; each trainer validates, checkpoints and stops its fold as
    its own fit would."""
    tcfg = trainers[0].cfg.training
    k_folds = len(trainers)
    optimizers, schedulers, samplers, held, targets = [], [], [], [], []
    for k, t in enumerate(trainers):
        t.asm.model.to(t.accelerator.device)  # (the shared frozen backbone moves once)
        t.cache.store.refresh()  # the entries the folds before it computed
        with fold_scope(k):
            t._warm_cache(t.asm.model)
        if not all(t.cache.load(split, t.asm.encoded[split].lengths, t.asm.backbone.hidden_size)
                   for split in ("train", "validation")):
            raise RuntimeError("the stacked folds need every fold's pooled vectors in memory")
        params = [p for p in t.asm.model.head.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=tcfg.learning_rate, weight_decay=tcfg.weight_decay,
                                fused=t._fused_update(params) or None)  # (a fold resumed alone steps the same way)
        opt._opt_called = True  # type: ignore[attr-defined]  # its steps are taken by StackedAdamW
        sampler = t.loader("train", train=True).batch_sampler
        steps = t._steps(sampler)
        t.total_steps = sum(steps)
        optimizers.append(opt)
        schedulers.append(build_scheduler(opt, tcfg, sum(steps), steps[0]))
        samplers.append(sampler)
        held.append(t.cache.memory["train"])
        labels = t.asm.encoded["train"].labels
        targets.append(t.task.problem.collate_labels(list(labels), 0))
        t.events.emit("plan", steps_per_epoch=steps, total_steps=sum(steps))
        t.asm.model.train()
    group = optimizers[0].param_groups[0]
    stacked = StackedMLP([t.asm.model.head.mlp for t in trainers],
                         [torch.Generator().manual_seed(fold_seed(tcfg.seed, t.cfg.cv.fold or 0)) for t in trainers])
    adam = StackedAdamW(stacked.leaves, k_folds, group["betas"], group["eps"], tcfg.weight_decay,
                        fused=trainers[0]._fused_update(stacked.leaves))
    running = [True] * k_folds
    log.info("cross-validation: the %d folds' heads train together (one stacked step per batch)", k_folds)
    bar = tqdm(total=max(t.total_steps for t in trainers), desc=f"{k_folds} folds together", unit="step",
               leave=False, mininterval=1.0, disable=not progress)
    with graceful_stop() as flag, bar, _Saver() as saver:
        for epoch in range(tcfg.epochs):
            t0 = time.time()
            for k, t in enumerate(trainers):
                if running[k]:
                    t.events.emit("phase", phase="training", epoch=epoch + 1)
            for s in samplers:
                s.set_epoch(epoch)
            batches = [list(s) if running[k] else [] for k, s in enumerate(samplers)]
            losses: list[list[float]] = [[] for _ in trainers]
            epoch_rows = _EpochRows(held, targets, batches, stacked.leaves[0].device)
            for j in range(max(len(b) for b in batches)):
                idx = [torch.as_tensor(b[j]) if j < len(b) else None for b in batches]
                step_losses = _stacked_step(trainers, stacked, adam, schedulers, held, targets, idx,
                                            tcfg.max_grad_norm, epoch_rows.step(j))
                bar.update(1)
                for k, loss in enumerate(step_losses):
                    if loss is None:
                        continue
                    losses[k].append(loss)
                    t = trainers[k]
                    t.global_step += 1
                    t.events.emit("step", epoch=epoch + 1, step=t.global_step, total_steps=t.total_steps,
                                  loss=loss, lr=schedulers[k].get_last_lr()[0])
                    if t.global_step % tcfg.logging_steps == 0:
                        t._log_step(epoch, losses[k][-tcfg.logging_steps:], schedulers[k])
                if flag.requested:
                    raise FoldsInterrupted(f"stopped in epoch {epoch + 1}: each fold's last/ holds its last finished "
                                           "epoch; continue with plmforge train --resume "
                                           f"{trainers[0].run_dir.parent}")
            seconds = round(time.time() - t0, 2)
            validation = _validate(trainers, stacked, [t.cache.memory["validation"] for t in trainers], running)
            saver.wait()  # the last epoch's checkpoints hold the heads' weights: written before they change

            def end_epoch(k: int) -> bool:
                """Fold k's epoch end as its own fit has it: early stopping, best/ and last/, logs, events."""
                t = trainers[k]
                stacked.write_back(k)
                adam.export(k, stacked, optimizers[k])
                record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses[k])) if losses[k] else float("nan"),
                          "seconds": seconds}
                with fold_scope(k):
                    stopped = t._end_epoch(t.asm.model, optimizers[k], schedulers[k], epoch, record, validation[k],
                                           saver.save_for(t, optimizers[k], schedulers[k]))
                    t.asm.model.train()
                    return t._after_epoch(epoch, stopped)

            for k in range(k_folds):
                if running[k] and end_epoch(k):
                    running[k] = False
            if not any(running):
                break
    return [FitResult(t.stopper.best_epoch, t.stopper.best, len(t.history),
                      len(t.history) < tcfg.epochs, t.history, t.stop_reason) for t in trainers]


class _Saver:
    """The folds' checkpoints written in a background thread while the next epoch trains (waiting on the disk
    to confirm them is most of their cost). What a checkpoint holds is taken when it is asked for (trainer
    state, optimizer and scheduler state); the heads' weights are read by the thread, so `wait` comes before
    they change. Leaving the block waits for every write and raises its error, if any."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plmforge-checkpoints")
        self.pending: list[Any] = []

    def save_for(self, t: Trainer, optimizer: torch.optim.Optimizer, scheduler: Any) -> Callable[[int, bool], None]:
        def save(epoch: int, improved: bool) -> None:
            state = json.loads(json.dumps(t._state(epoch)))  # a copy: history grows while the thread writes
            frozen_opt, frozen_sched = _Frozen(optimizer.state_dict()), _Frozen(scheduler.state_dict())
            model, rng = t.asm.model, ckpt.rng_state()  # the generators as this epoch ends, not as the thread runs

            def write() -> None:
                if improved:
                    ckpt.save_checkpoint(t.run_dir / "best", model, state, spec=t.spec)
                ckpt.save_checkpoint(t.run_dir / "last", model, state, frozen_opt, frozen_sched, spec=t.spec, rng=rng)

            self.pending.append(self.pool.submit(write))

        return save

    def wait(self) -> None:
        """Every write finished; the first error raised (the others logged)."""
        pending, self.pending = self.pending, []
        errors = [job.exception() for job in pending]
        errors = [e for e in errors if e is not None]
        for extra in errors[1:]:
            log.error("writing a checkpoint failed too: %s", extra)
        if errors:
            raise errors[0]

    def __enter__(self) -> _Saver:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        try:
            self.wait()
        except Exception as error:  # noqa: BLE001
            if kind is None:
                raise
            log.error("writing a checkpoint failed while stopping: %s", error)  # the stop's own error goes on
        finally:
            self.pool.shutdown(wait=True)


class _Frozen:
    """An optimizer's or scheduler's state as it was when a checkpoint was asked for."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


class _EpochRows:
    """An epoch's batches gathered ahead: for the leading steps at which every running fold has a full batch
    (all but each fold's last, usually), the folds' rows of a window of steps as one (K, steps, B, H) tensor
    (one index per fold and window) and each fold's targets as (steps, B, ...), so that a step reads views
    instead of gathering K batches and stacking them. A window holds at most `budget` bytes of rows (the
    next is gathered when the steps reach it); a fold that stopped has zero rows, as _stack gives it; the
    steps after the full ones take the gathering path."""

    BUDGET = 256 * 2**20

    def __init__(self, held: list[torch.Tensor], targets: list[torch.Tensor], batches: list[list[list[int]]],
                 device: torch.device, budget: int = BUDGET) -> None:
        self.held, self.targets, self.batches, self.device = held, targets, batches, device
        self.on = [k for k, b in enumerate(batches) if b]
        self.size = len(batches[self.on[0]][0]) if self.on else 0
        self.steps = min((next((j for j, i in enumerate(batches[k]) if len(i) != self.size), len(batches[k]))
                          for k in self.on), default=0)
        if self.steps:
            row = len(batches) * self.size * held[self.on[0]].shape[1] * held[self.on[0]].element_size()
            self.window = max(1, budget // row)
        self.start = self.end = 0
        self.x: torch.Tensor | None = None
        self.y: list[torch.Tensor | None] = [None] * len(batches)

    def step(self, j: int) -> tuple[torch.Tensor, list[torch.Tensor | None]] | None:
        if j >= self.steps:
            return None
        if not self.start <= j < self.end:
            self._gather(j)
        i = j - self.start
        return self.x[:, i], [None if y is None else y[i] for y in self.y]  # type: ignore[index]

    def _gather(self, first: int) -> None:
        self.start, self.end = first, min(self.steps, first + self.window)
        n, size, k_folds = self.end - first, self.size, len(self.batches)
        width = self.held[self.on[0]].shape[1]
        if self.x is None or self.x.shape[1] != n:
            self.x = None  # (the previous window's rows go first)
            self.x = torch.empty((k_folds, n, size, width), dtype=self.held[self.on[0]].dtype, device=self.device)
            for k in set(range(k_folds)) - set(self.on):
                self.x[k].zero_()
        for k in self.on:
            src = self.held[k]
            rows = torch.from_numpy(np.asarray(self.batches[k][first:self.end], dtype=np.int64).reshape(-1))
            if src.device == self.device:
                torch.index_select(src, 0, rows.to(src.device), out=self.x[k].view(n * size, width))
            else:
                self.x[k] = src[rows.to(src.device)].view(n, size, width).to(self.device)
            self.y[k] = self.targets[k][rows].view(n, size, *self.targets[k].shape[1:]).to(self.device)


def _stack(parts: list[torch.Tensor | None], device: torch.device) -> torch.Tensor:
    """Each fold's rows (n_k, H) as one (K, max n_k, H) tensor on `device`: a fold's rows beyond its own (and a
    fold without rows, None) are zeros, which no loss or metric reads."""
    given = [p for p in parts if p is not None]
    if len(given) == len(parts) and len({len(p) for p in given}) == 1:  # (the usual step: every batch full)
        return torch.stack(given).to(device)
    x = torch.zeros((len(parts), max(len(p) for p in given), given[0].shape[1]), device=device)
    for k, part in enumerate(parts):
        if part is not None:
            x[k, :len(part)] = part.to(device)
    return x


@torch.no_grad()
def _validate(trainers: list[Trainer], stacked: StackedMLP, held: list[torch.Tensor],
              running: list[bool]) -> list[dict[str, float] | None]:
    """Every running fold's validation metrics from one stacked forward over the folds' validation vectors
    (in chunks of rows); through the inference loop's own conversion to predictions and metrics."""
    device = stacked.leaves[0].device
    rows = max(len(h) for h in held)
    outputs = []
    for start in range(0, rows, 4096):
        x = _stack([h[start:start + 4096] for h in held], device)
        outputs.append(stacked.forward(x, False, running).float().cpu())
    logits = torch.cat(outputs, dim=1)  # (K, rows, C)
    out: list[dict[str, float] | None] = []
    for k, t in enumerate(trainers):
        if not running[k]:
            out.append(None)
            continue
        preds = predictions_of(logits[k, :len(held[k])], t.asm.encoded["validation"], t.task, t.asm.scaler)
        out.append(split_metrics(t.task, preds))
    return out


def _stacked_step(trainers: list[Trainer], stacked: StackedMLP, adam: StackedAdamW, schedulers: list[Any],
                  held: list[torch.Tensor], targets: list[torch.Tensor], idx: list[torch.Tensor | None],
                  max_grad_norm: float | None,
                  gathered: tuple[torch.Tensor, list[torch.Tensor | None]] | None = None) -> list[float | None]:
    """One optimizer step of every fold that has a batch (idx[k] None: fold k has none); their losses.
    `gathered`: the step's rows and targets already gathered (_EpochRows), the same values idx selects."""
    device = stacked.leaves[0].device
    if gathered is None:
        x = _stack([None if i is None else held[k][i] for k, i in enumerate(idx)], device)
        ys = [None if i is None else targets[k][i].to(device) for k, i in enumerate(idx)]
    else:
        x, ys = gathered
    active = [i is not None for i in idx]
    logits = stacked.forward(x, True, active)  # (K, B, C)
    total, out = None, []
    for k, i in enumerate(idx):
        if i is None:
            out.append(None)
            continue
        loss = trainers[k].asm.model._loss(logits[k, :len(i)], ys[k])
        total = loss if total is None else total + loss
        out.append(loss)
    for p in stacked.leaves:
        p.grad = None
    total.backward()
    if max_grad_norm is not None:  # each fold's own norm, as torch.nn.utils.clip_grad_norm_ computes it
        with torch.no_grad():
            norms = torch.linalg.vector_norm(torch.stack(  # (K,): over each fold's slices of every leaf
                [torch.linalg.vector_norm(p.grad.flatten(1), dim=1) for p in stacked.leaves]), dim=0)
            coef = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
            if bool((coef < 1.0).any()):  # (torch multiplies by 1.0 too: the same gradients)
                for p in stacked.leaves:
                    p.grad.mul_(coef.view(-1, *([1] * (p.dim() - 1))))
    adam.step([s.optimizer.param_groups[0]["lr"] for s in schedulers], active)
    for k, s in enumerate(schedulers):
        if active[k]:
            s.step()
    return [None if loss is None else float(loss.detach()) for loss in out]
