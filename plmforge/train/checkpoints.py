"""The training loop's checkpoints (a part of Trainer, train/loop.py): best/ and last/ at an epoch's end,
last/ in the middle of an epoch when training is stopped, the trainer state they hold, and resuming from
last/ (weights, optimizer, scheduler, random state, early stopping, the logs cut back to it). Under FSDP or
DeepSpeed the engine writes and reads the sharded optimizer state; the main process writes the files.

It reads the Trainer's own attributes (accelerator, run_dir, spec, stopper, history, global_step, task,
start_epoch, partial)."""

from __future__ import annotations

import json
import logging
from typing import Any

from plmforge import checkpoint as ckpt
from plmforge.errors import RunDirError

log = logging.getLogger("plmforge")


class CheckpointSteps:
    accelerator: Any
    run_dir: Any
    spec: Any
    stopper: Any
    history: list[dict[str, Any]]
    global_step: int
    task: Any
    start_epoch: int
    partial: dict[str, Any] | None

    @property
    def engine(self) -> str | None:
        """'fsdp' or 'deepspeed' when weights and optimizer state are split across processes."""
        from accelerate.utils import DistributedType

        return {DistributedType.FSDP: "fsdp", DistributedType.DEEPSPEED: "deepspeed"}.get(
            self.accelerator.distributed_type)

    @property
    def sharded(self) -> bool:
        return self.engine is not None

    def _save(self, model: Any, optimizer: Any, scheduler: Any, epoch: int, improved: bool) -> None:
        inner = self.accelerator.unwrap_model(model)
        weights, engine_dir = None, None
        if self.sharded:  # collectives: every process takes part, the main one writes the checkpoint
            weights = self.accelerator.get_state_dict(model)
            engine_dir = self.run_dir / "last.engine.tmp"
            self.accelerator.save_state(str(engine_dir))
            self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            if improved:
                ckpt.save_checkpoint(self.run_dir / "best", inner, self._state(epoch), spec=self.spec,
                                     weights=weights)
            ckpt.save_checkpoint(self.run_dir / "last", inner, self._state(epoch),
                                 None if self.sharded else optimizer, scheduler, spec=self.spec, weights=weights,
                                 engine_dir=engine_dir)
        self.accelerator.wait_for_everyone()

    def _save_partial(self, model: Any, optimizer: Any, scheduler: Any, epoch: int, batches_done: int,
                      loss_sum: float, seconds: float) -> None:
        """last/ in the middle of `epoch`: the finished epochs' state plus where this one stands."""
        inner = self.accelerator.unwrap_model(model)
        weights, engine_dir = None, None
        if self.sharded:
            weights = self.accelerator.get_state_dict(model)
            engine_dir = self.run_dir / "last.engine.tmp"
            self.accelerator.save_state(str(engine_dir))
            self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            state = self._state(epoch - 1) | {"partial": {"epoch": epoch, "batches_done": batches_done,
                                                          "loss_sum": loss_sum, "seconds": round(seconds, 2)}}
            ckpt.save_checkpoint(self.run_dir / "last", inner, state, None if self.sharded else optimizer, scheduler,
                                 spec=self.spec, weights=weights, engine_dir=engine_dir)
        self.accelerator.wait_for_everyone()

    def _state(self, epoch: int) -> dict[str, Any]:
        s = self.stopper
        return {"epoch": epoch, "global_step": self.global_step, "monitor": self.task.monitor,
                "direction": s.direction, "best_value": s.best, "best_epoch": s.best_epoch,
                "bad_epochs": s.bad_epochs, "history": self.history}

    def _restore(self, model: Any, optimizer: Any, scheduler: Any) -> None:
        blob, state = ckpt.load_training_state(self.run_dir / "last")
        engine_dir = self.run_dir / "last" / ckpt.ENGINE_STATE
        if engine_dir.is_dir():  # written under a sharding engine: it restores weights, optimizer and RNG
            if not self.sharded:
                raise RunDirError(f"{self.run_dir} was trained under FSDP/DeepSpeed; resume it with the same "
                                  "`accelerate launch --config_file ...` it was started with")
            self.accelerator.load_state(str(engine_dir))
        else:
            if self.sharded:
                raise RunDirError(f"{self.run_dir} was not trained under FSDP/DeepSpeed; resume it without them")
            ckpt.load_weights(self.run_dir / "last", self.accelerator.unwrap_model(model))
            optimizer.load_state_dict(blob["optimizer"])
            scheduler.load_state_dict(blob["scheduler"])
            ckpt.set_rng_state(blob["rng"])
        if self.spec.load_state is not None:
            self.spec.load_state(self.accelerator.unwrap_model(model), blob["method"])
        self.start_epoch = state["epoch"] + 1
        self.partial = state.get("partial")  # stopped in the middle of an epoch (Ctrl-C / SIGTERM)
        if self.partial is not None:
            self.partial["rng"] = blob["rng"]
        self.global_step = state["global_step"]
        self.stopper.best, self.stopper.best_epoch = state["best_value"], state["best_epoch"]
        self.stopper.bad_epochs = state["bad_epochs"]
        self.history = state["history"]
        self._truncate_logs()
        where = f"after epoch {self.start_epoch}" if not self.partial else \
            f"in epoch {self.start_epoch + 1}, after {self.partial['batches_done']} batches"
        log.info("resumed from %s %s (step %d)", self.run_dir / "last", where, self.global_step)

    def _truncate_logs(self) -> None:
        """Drop log lines written after the checkpoint we resume from (an interrupted epoch's steps)."""
        for name, key, limit in (("metrics_steps.jsonl", "step", self.global_step),
                                 ("metrics_epochs.jsonl", "epoch", self.start_epoch)):
            path = self.run_dir / name
            if path.is_file():
                rows = [line for line in path.read_text().splitlines() if line.strip()]
                kept = [line for line in rows if json.loads(line)[key] <= limit]
                path.write_text("".join(line + "\n" for line in kept))
