"""The training loop, on HuggingFace accelerate (devices, mixed precision, gradient accumulation,
distributed data parallel and experiment trackers come from it; the loop itself is ours so that
early stopping, token batching, embedding reuse and exact resume are visible and tested)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from plmforge import checkpoint as ckpt
from plmforge.data.batching import EncodedSplit, make_batch_sampler, micro_batches
from plmforge.events import EventLog
from plmforge.inference import Predictions, predict_encoded, split_metrics
from plmforge.methods import METHODS, CacheOptions
from plmforge.models.task_model import batch_kwargs
from plmforge.train.checkpoints import CheckpointSteps
from plmforge.train.embedding_cache import PooledCollator, PooledSplit, StoreCache
from plmforge.train.schedule import build_scheduler
from plmforge.train.setup import Assembled
from plmforge.train.stopping import EarlyStopping, TrainingInterrupted, graceful_stop

log = logging.getLogger("plmforge")


class EmbedPace:
    """`embed` events while the frozen backbone fills the store: sequences done of the total, how many were
    computed (the rest were read from the store), at most one event a second plus the last one; readers
    derive the pace and ETA from the computed sequences."""

    def __init__(self, events: EventLog, total: int, every: float = 1.0) -> None:
        self.events, self.total, self.every = events, total, every
        self.done = self.computed = 0
        self.started = self.last = time.time()

    def add(self, n: int, computed: bool) -> None:
        self.done += n
        self.computed += n if computed else 0
        if time.time() - self.last >= self.every:
            self._emit()

    def _emit(self) -> None:
        self.last = time.time()
        self.events.emit("embed", done=self.done, total=self.total, computed=self.computed,
                         seconds=round(self.last - self.started, 3))

    def finish(self) -> None:
        self._emit()


@dataclass
class FitResult:
    best_epoch: int
    best_value: float | None
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None  # why a callback ended training early (e.g. a sweep pruned the trial)


class Trainer(CheckpointSteps):
    def __init__(self, asm: Assembled, run_dir: Path, callbacks: list[Callable[[int, Trainer], None]] | None = None,
                 accelerator: Any = None, events: EventLog | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.asm, self.run_dir, self.cfg = asm, run_dir, asm.config
        self.task = asm.data.task
        self.callbacks = callbacks or []
        self.events = events or EventLog(None)  # structured progress (the main process's run has a file)
        tcfg = self.cfg.training
        set_seed(tcfg.seed)
        if accelerator is None:
            from accelerate.state import AcceleratorState

            # accelerate keeps one process-wide state; a new run may ask for another precision
            # (the process group, if any, is kept)
            AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=tcfg.mixed_precision, gradient_accumulation_steps=tcfg.gradient_accumulation_steps,
            log_with=list(tcfg.report_to) or None, project_dir=str(run_dir), cpu=not torch.cuda.is_available())
        self.spec = METHODS[self.cfg.method.name]
        if self.sharded and self.spec.state is not None:
            from plmforge.errors import ConfigError

            raise ConfigError(f"method {self.spec.name} keeps per-process state (e.g. AdaLoRA's rank allocator) that "
                              "FSDP/DeepSpeed sharding does not gather; use lora, or the ddp recipe")
        self.cache = self._store_cache()
        self._speed_hints()
        self.collate = asm.collator()
        self.stopper = EarlyStopping(self.task.direction, tcfg.patience)
        self.partial: dict[str, Any] | None = None  # where a mid-epoch resume starts
        self.start_epoch, self.global_step = 0, 0
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None

    def _store_cache(self) -> StoreCache | None:
        """Frozen backbones read and write the persistent embedding store: pooled vectors when the head
        starts from them (mean pooling), per-token states otherwise."""
        options = self.cfg.method.options
        if not (self.spec.frozen_backbone and isinstance(options, CacheOptions) and options.cache_embeddings):
            return None
        from plmforge.heads import HEADS
        from plmforge.inputs import SEQUENCE
        from plmforge.models.backbone import backbone_fingerprint
        from plmforge.store import EmbeddingStore, cache_root, record_key

        # an adapter on residue states (SES-Adapter) needs every residue's state, whatever the head
        pooled = HEADS[self.cfg.head.pooling].pooled_input and self.asm.model.adapter is None
        fingerprint = backbone_fingerprint(self.asm.backbone, "mean" if pooled else "tokens", options.cache_dtype)
        store = EmbeddingStore(cache_root(options.cache_dir), fingerprint)
        feeds = {SEQUENCE, *self.asm.backbone.family.record_fields}  # what the backbone's output depends on
        keys = {}
        for name, recs in self.asm.data.splits.items():
            cols = [(k, v) for k, v in recs.inputs().items() if k in feeds]
            keys[name] = np.fromiter((record_key({k: v[i] for k, v in cols}).encode() for i in range(len(recs))),
                                     dtype="S40", count=len(recs))  # 40 bytes a sample
        log.info("embedding store: %s (%d entries for this model and settings)", store.dir, len(store))
        return StoreCache(store, keys, pooled, options.cache_dtype, options.cache_memory_mb)

    def _speed_hints(self) -> None:
        """Say when a setting keeps backbone training off PyTorch's fused attention kernel. bf16 is suggested
        with the fix only where this device runs it natively: emulated bf16 is many times slower than fp32."""
        if self.spec.frozen_backbone or self.cfg.model.attention != "sdpa":
            return
        key = self.asm.backbone.family.attention_dropout_key
        rate = getattr(self.asm.backbone.model.config, key, 0.0) if key else 0.0
        if rate:
            from plmforge.precision import native_low_precision

            where = "model.attention_dropout" if self.cfg.model.attention_dropout else "the checkpoint's value"
            if native_low_precision(torch.bfloat16, self.accelerator.device).native:
                fix = ("model.attention_dropout=0 (with training.mixed_precision=bf16, native on this device) trains "
                       "several times faster in a fraction of the memory")
            else:
                fix = ("model.attention_dropout=0 trains about twice as fast in under half the memory (bf16 is not "
                       "suggested: this device does not run it natively)")
            log.info("attention dropout %.2g (%s) keeps SDPA on its unfused kernel, which holds every heads x L x L "
                     "matrix for the backward pass; %s (benchmarks/results.md, Speed 3)", rate, where, fix)

    # ---- data ---------------------------------------------------------------------------------
    def _split(self, split: str, warm: bool = False) -> tuple[Any, Callable[[list[dict]], dict]]:
        """The split's samples and their collate function: indices and labels when its pooled vectors are
        held in memory (not while the store is being filled: `warm`), else the tokenised split."""
        data: EncodedSplit = self.asm.encoded[split]
        held = not warm and self.cache is not None and self.cache.load(split, data.lengths,
                                                                       self.asm.backbone.hidden_size)
        if held and self.cache.pooled:  # type: ignore[union-attr]
            return PooledSplit(data), PooledCollator(self.task.problem)
        return data, self.collate

    def loader(self, split: str, train: bool, warm: bool = False) -> DataLoader:
        """Training batches (shuffled per epoch), or length-sorted ones of the evaluation size."""
        b = self.cfg.batching
        data, collate = self._split(split, warm)
        size = b.batch_size if train else (b.eval_batch_size or 2 * b.batch_size)
        sampler = make_batch_sampler(data.lengths, b.mode, size, b.max_tokens, self.cfg.training.seed, train)
        if train and b.mode == "tokens" and sampler.over_budget:  # type: ignore[attr-defined]
            log.warning("%d training sequences are longer than batching.max_tokens=%d; each gets a batch of its "
                        "own", sampler.over_budget, b.max_tokens)  # type: ignore[attr-defined]
        return DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=self.cfg.training.num_workers)

    def _steps(self, sampler: Any) -> list[int]:
        """Optimizer steps per epoch for every epoch (token batches vary in number per epoch)."""
        accum = self.cfg.training.gradient_accumulation_steps
        out = []
        for epoch in range(self.cfg.training.epochs):
            sampler.set_epoch(epoch)
            out.append(math.ceil(len(sampler) / accum))
        sampler.set_epoch(0)
        return out

    # ---- model calls --------------------------------------------------------------------------
    def _forward(self, model: torch.nn.Module, batch: dict[str, Any], split: str) -> Any:
        labels = batch.get("labels")
        if self.cache is not None:  # the backbone is reached (unwrapped) only for entries the store lacks
            states = self.cache.hidden(split, batch, lambda *a: self.accelerator.unwrap_model(model).encode(*a))
            if "inputs" not in batch:  # pooled vectors held in memory: the batch is indices and labels
                return model(residue_mask=None, labels=labels, pooled=states)
            kind = "pooled" if self.cache.pooled else "hidden"
            return model(residue_mask=batch["residue_mask"], labels=labels, inputs=batch["inputs"],
                         attention_mask=batch["attention_mask"], **{kind: states})
        return model(**batch_kwargs(batch), labels=labels)

    def evaluate(self, model: torch.nn.Module, split: str) -> tuple[dict[str, float], Predictions]:
        """Metrics (loss first) and predictions for a whole split, through the one inference loop."""
        data, collate = self._split(split)
        preds = predict_encoded(model, data, self.task, self.asm.scaler, self.cfg.batching,
                                collate, accelerator=self.accelerator, desc=f"eval {split}",
                                forward=lambda batch: self._forward(model, batch, split).logits,
                                num_workers=self.cfg.training.num_workers)
        return split_metrics(self.task, preds), preds

    def _warm_cache(self, model: torch.nn.Module) -> None:
        """Run the frozen backbone once over whatever train and validation sequences the embedding store
        lacks, in length-sorted batches (little padding); every epoch after that reads the store."""
        if self.cache is None:
            return
        inner = self.accelerator.unwrap_model(model)
        inner.eval()
        self.events.emit("phase", phase="embedding")
        before = self.cache.store.computed
        total = sum(len(self.cache.keys[s]) for s in ("train", "validation"))
        pace = EmbedPace(self.events, total)
        stored = all(self.cache.store.holds_all(self.cache.keys[s]) for s in ("train", "validation"))
        for split in ("train", "validation"):
            if stored:  # nothing to compute: only a loader's start, which draws once from the global generator
                next(iter(self.loader(split, train=False, warm=True)), None)  # (a seeded run's stream is the same)
                continue
            loader = self.accelerator.prepare(self.loader(split, train=False, warm=True))
            with torch.no_grad():
                for batch in tqdm(loader, desc=f"embedding {split}", unit="batch", leave=False, mininterval=1.0,
                                  disable=not self.accelerator.is_main_process):
                    computed = self.cache.missing(split, batch)
                    if computed:
                        self.cache.fill(split, batch, inner.encode)
                    pace.add(len(batch["idx"]), computed)
        if stored:
            pace.add(total, False)
        pace.finish()
        self.cache.store.flush()
        self.accelerator.wait_for_everyone()
        self.cache.store.refresh()  # entries other processes computed
        for split in ("train", "validation"):  # every epoch reads them from memory when they fit
            self.cache.load(split, self.asm.encoded[split].lengths, self.asm.backbone.hidden_size)
        n = sum(len(v) for k, v in self.cache.keys.items() if k != "test")
        computed = self.cache.store.computed - before
        log.info("embedding store: computed %d of %d train/validation embeddings (%d read from the store)",
                 computed, n, n - computed)

    def close(self) -> None:
        """Write what the store still holds in memory (e.g. the test split's embeddings)."""
        if self.cache is not None:
            self.cache.store.flush()
            self.cache.store.close()

    # ---- training -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        tcfg = self.cfg.training
        model = self.asm.model
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=tcfg.learning_rate, weight_decay=tcfg.weight_decay,
                                      fused=self._fused_update(params) or None)
        sampler = self.loader("train", train=True, warm=True).batch_sampler
        steps = self._steps(sampler)
        self.total_steps = sum(steps)
        scheduler = build_scheduler(optimizer, tcfg, sum(steps), steps[0])
        if self.spec.prepare is not None:
            self.spec.prepare(self.accelerator.unwrap_model(model), self.cfg.method.options, sum(steps))
        model, optimizer, scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self._warm_cache(model)  # before a restore: the restored RNG state must be the last word
        # made after the store is filled, so that pooled vectors held in memory feed the batches
        prepared_loader = self.accelerator.prepare(self.loader("train", train=True))
        # clipping walks the trainable parameters only (a frozen backbone's hundreds of tensors have no
        # gradient); sharding engines clip their own flattened parameters
        self.clipped = model.parameters if self.sharded else (lambda: params)
        if resume:
            self._restore(model, optimizer, scheduler)
        done = resume and self.stopper.should_stop and not self.partial  # it had stopped early: nothing to train
        if done:
            log.info("resume: training had stopped early after epoch %d; its test metrics are made now",
                     self.start_epoch)
        self._init_trackers()
        self.events.emit("plan", steps_per_epoch=steps, total_steps=sum(steps))
        stopped = False
        with graceful_stop() as self.stop_flag:
            for epoch in range(self.start_epoch, tcfg.epochs if not done else self.start_epoch):
                # accelerate's loader keeps its own epoch counter and pushes it into the sampler on every
                # iteration, so the epoch is set through it (a resumed run starts that counter at 0)
                prepared_loader.set_epoch(epoch)
                record = self._train_epoch(model, optimizer, scheduler, prepared_loader, epoch)
                stopped = self._end_epoch(model, optimizer, scheduler, epoch, record)
                if self._stop_requested():
                    raise TrainingInterrupted(self.run_dir, self.global_step, epoch + 1, None)
                stopped = self._after_epoch(epoch, stopped)
                if stopped:
                    break
        stopped = (stopped or done) and len(self.history) < tcfg.epochs
        return FitResult(self.stopper.best_epoch, self.stopper.best, len(self.history), stopped, self.history,
                         self.stop_reason)

    def _fused_update(self, params: list[torch.Tensor]) -> bool:
        """AdamW's fused kernel (one pass over every tensor; about a quarter off a small head's step on a CPU)
        where torch has it: floating tensors on one CPU or CUDA device, not split by a sharding engine (which
        hands the optimizer its own flattened or distributed tensors)."""
        kinds = {(p.device.type, p.dtype.is_floating_point) for p in params}
        return not self.sharded and len(kinds) == 1 and next(iter(kinds)) in {("cpu", True), ("cuda", True)}

    def request_stop(self, reason: str) -> None:
        """For callbacks: end training after this epoch, as an early stop (best weights, test metrics)."""
        self.stop_reason = reason

    def _after_epoch(self, epoch: int, stopped: bool) -> bool:
        for callback in self.callbacks:
            callback(epoch, self)
        if self.stop_reason is not None:
            log.info("training stops after epoch %d: %s", epoch + 1, self.stop_reason)
            return True
        if stopped:
            log.info("early stopping: %s did not improve for %d epochs (best %.4f at epoch %d)",
                     self.task.monitor, self.stopper.bad_epochs, self.stopper.best or float("nan"),
                     self.stopper.best_epoch + 1)
        return stopped

    def _stop_requested(self) -> bool:
        """Whether Ctrl-C / SIGTERM asked to stop; every process agrees (one collective when distributed)."""
        flag = bool(getattr(self, "stop_flag", None) and self.stop_flag.requested)
        if self.accelerator.num_processes > 1:
            t = torch.tensor([float(flag)], device=self.accelerator.device)
            flag = bool(self.accelerator.reduce(t, reduction="sum").item() > 0)
        return flag

    def _train_epoch(self, model: Any, optimizer: Any, scheduler: Any, loader: DataLoader,
                     epoch: int) -> dict[str, Any]:
        tcfg = self.cfg.training
        model.train()
        inner = self.accelerator.unwrap_model(model)
        t0, loss_sum, n_batches, window, step_losses = time.time(), 0.0, 0, [], []
        partial = self.partial if self.partial and self.partial["epoch"] == epoch else None
        if partial is not None:  # resumed in the middle of this epoch: its first batches are done
            loader = self.accelerator.skip_first_batches(loader, partial["batches_done"])
            loss_sum, n_batches = partial["loss_sum"], partial["batches_done"]
            t0 -= partial["seconds"]
            self.partial = None
        self.events.emit("phase", phase="training", epoch=epoch + 1)
        for k, batch in enumerate(loader):
            if k == 0 and partial is not None:
                # the loader drew from the RNG when it started: put back the state of the interrupted step
                ckpt.set_rng_state(partial["rng"])
            with self.accelerator.accumulate(model):
                step_loss = self._backward(model, inner, batch)
                if self.accelerator.sync_gradients and tcfg.max_grad_norm is not None:
                    self._clip(tcfg.max_grad_norm)
                self._step(optimizer)
                if self.accelerator.sync_gradients and self.spec.after_step is not None:
                    self.spec.after_step(inner, self.global_step + 1)  # gradients are still there
                scheduler.step()
                optimizer.zero_grad()
            loss = step_loss
            loss_sum, n_batches = loss_sum + loss, n_batches + 1
            window.append(loss)
            step_losses.append(loss)
            if self.accelerator.sync_gradients:
                self.global_step += 1
                self.events.emit("step", epoch=epoch + 1, step=self.global_step, total_steps=self.total_steps,
                                 loss=float(np.mean(step_losses)), lr=scheduler.get_last_lr()[0])
                step_losses = []
                if self.global_step % tcfg.logging_steps == 0:
                    self._log_step(epoch, window, scheduler)
                    window = []
                if self._stop_requested():  # Ctrl-C / SIGTERM: a resumable state at this step boundary
                    self._save_partial(model, optimizer, scheduler, epoch, n_batches, loss_sum, time.time() - t0)
                    raise TrainingInterrupted(self.run_dir, self.global_step, epoch + 1, n_batches)
        return {"epoch": epoch + 1, "train_loss": loss_sum / max(n_batches, 1), "seconds": round(time.time() - t0, 2)}

    @property
    def plain_update(self) -> bool:
        """Whether clipping and the optimizer step are torch's own calls under accelerate's wrappers (one
        process or DDP, no fp16 loss scaler). Then they are called directly: the wrappers look for optional
        packages on every call, which costs a small head's step about a fifth of its time."""
        from accelerate.utils import DistributedType

        plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
        return self.accelerator.distributed_type in plain and self.accelerator.scaler is None

    def _clip(self, max_norm: float) -> None:
        if self.plain_update:
            torch.nn.utils.clip_grad_norm_(self.clipped(), max_norm)
        else:
            self.accelerator.clip_grad_norm_(self.clipped(), max_norm)

    def _step(self, optimizer: Any) -> None:
        if not self.plain_update:
            optimizer.step()
        elif self.accelerator.sync_gradients:  # as the wrapper: no update inside an accumulation window
            optimizer.optimizer.step()

    def _backward(self, model: Any, inner: Any, batch: dict[str, Any]) -> float:
        """Forward and backward of one training batch; the batch's loss. Above batching.micro_batch_tokens
        padded tokens the batch runs as length-sorted micro-batches, each loss weighted by its share of what
        the loss averages over (the counted targets, with their class weights), so the accumulated gradients
        and the returned loss are the whole batch's."""
        extra = self.spec.extra_loss(inner) if self.spec.extra_loss is not None else None
        parts = micro_batches(batch, self.cfg.batching.micro_batch_tokens or 0, self.task.problem.per_residue)
        units = [inner.loss_units(part["labels"]) for part in parts or ()]
        total = sum(units)  # the parts partition the batch: their units are the batch's
        if not total:  # whole (or nothing counted in the batch: its loss says so)
            out = self._forward(model, batch, "train")
            self.accelerator.backward(out.loss if extra is None else out.loss + extra)
            return float(out.loss.detach())
        value = 0.0
        for part, n in zip(parts, units, strict=True):
            if not n:  # nothing counted in this part: it adds nothing
                continue
            out = self._forward(model, part, "train")
            share = n / total
            self.accelerator.backward(out.loss * share if extra is None else out.loss * share + extra)
            extra = None  # once per step
            value += float(out.loss.detach()) * share
        return value

    def _log_step(self, epoch: int, window: list[float], scheduler: Any) -> None:
        row = {"step": self.global_step, "epoch": epoch + 1, "loss": float(np.mean(window)),
               "lr": scheduler.get_last_lr()[0]}
        if self.accelerator.is_main_process:
            with (self.run_dir / "metrics_steps.jsonl").open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        self.accelerator.log({"train/loss": row["loss"], "train/lr": row["lr"]}, step=self.global_step)

    def _end_epoch(self, model: Any, optimizer: Any, scheduler: Any, epoch: int, record: dict[str, Any],
                   metrics: dict[str, float] | None = None, save: Callable[[int, bool], None] | None = None) -> bool:
        """Validation (unless the caller evaluated it: `metrics`), early stopping, checkpoints (through the
        caller's `save(epoch, improved)` when given), logs."""
        self.events.emit("phase", phase="validation", epoch=epoch + 1)
        if metrics is None:
            metrics, _ = self.evaluate(model, "validation")
        record.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics[self.task.monitor]
        if math.isnan(value):
            log.warning("validation %s is undefined (NaN) at epoch %d: too few validation samples (%d) or constant "
                        "predictions; a NaN never counts as an improvement (training.monitor=loss avoids this)",
                        self.task.monitor, epoch + 1, len(self.asm.data.splits["validation"]))
        improved = self.stopper.update(value, epoch)
        record["best_so_far"] = improved
        self.history.append(record)
        if self.accelerator.is_main_process:
            with (self.run_dir / "metrics_epochs.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        if save is not None:
            save(epoch, improved)
        else:
            self._save(model, optimizer, scheduler, epoch, improved)
        self.events.emit("epoch", epoch=epoch + 1, train_loss=record["train_loss"], validation=metrics,
                         monitor=self.task.monitor, best_epoch=self.stopper.best_epoch + 1,
                         best_value=self.stopper.best, seconds=record["seconds"])
        self.accelerator.log({f"val/{k}": v for k, v in metrics.items()} | {"train/epoch_loss": record["train_loss"]},
                             step=self.global_step)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        log.info("epoch %d/%d: train loss %.4f | validation %s%s", epoch + 1, self.cfg.training.epochs,
                 record["train_loss"], shown, "  (best)" if improved else "")
        return self.stopper.should_stop

    def _init_trackers(self) -> None:
        tcfg = self.cfg.training
        if not tcfg.report_to:
            return
        import os

        if "wandb" in tcfg.report_to:
            os.environ.setdefault("WANDB_MODE", tcfg.wandb_mode)
            os.environ.setdefault("WANDB_DIR", str(self.run_dir))
        flat = {f"{section}.{key}": value if isinstance(value, (int, float, str, bool)) else str(value)
                for section, values in self.cfg.to_dict().items() for key, value in values.items()}
        self.accelerator.init_trackers(tcfg.wandb_project, config=flat)  # trackers want flat scalars
