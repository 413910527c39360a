"""Structured progress of a training run: one JSON object per line in `<run>/events.jsonl`.

The training process appends events (each line written whole and flushed, so a reader never sees half an
event, and a line cut short by a crash is skipped); the web UI, the runs list and the CLI's progress bar
all read them, never the log text. `RunProgress` folds a run's events into what a progress view shows.

Events (`event` field; every one also has `time`, seconds since the epoch):
- `start`: run_dir, model, method, epochs, resume, pid, user (who asked for it: $PLMFORGE_USER, which the web
  UI sets to the signed-in user; null when unset, absent in events files written before it was recorded)
- `phase`: phase (one of PHASES)
- `model`: total, trainable, trainable_percent
- `plan`: steps_per_epoch, total_steps
- `embed`: done, total, computed, seconds (a frozen backbone filling the embedding store: sequences done of
  the train + validation total, how many of them were computed rather than read from the store)
- `step`: epoch, step, total_steps, loss, lr (every optimizer step)
- `epoch`: epoch, train_loss, validation (metrics), monitor, best_epoch, best_value, seconds
- `test`: metrics
- `end`: status (finished / failed / aborted), error (message, for failed)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
PHASES = ("setup", "embedding", "training", "validation", "testing", "baselines", "finished", "failed", "aborted")

Listener = Callable[[dict[str, Any]], None]


class EventLog:
    """Appends events to a file (None: no file) and hands each to the listeners (e.g. a progress bar)."""

    def __init__(self, path: Path | None, listeners: list[Listener] | None = None) -> None:
        self.path = path
        self.listeners = list(listeners or [])
        self._fh = None
        if path is not None:
            needs_newline = False
            if path.is_file() and path.stat().st_size > 0:
                with path.open("rb") as fh:
                    fh.seek(-1, 2)
                    needs_newline = fh.read(1) != b"\n"
            self._fh = path.open("a", encoding="utf-8")
            if needs_newline:  # a line cut short by a crash must not swallow this process's first event
                self._fh.write("\n")

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        row = {"event": event, "time": round(time.time(), 3), **fields}
        if event == "phase" and fields.get("phase") not in PHASES:
            raise ValueError(f"unknown phase {fields.get('phase')!r}")
        if self._fh is not None:
            self._fh.write(json.dumps(row, default=_plain) + "\n")
            self._fh.flush()
        for listener in self.listeners:
            listener(row)
        return row

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _plain(value: Any) -> Any:
    """numpy scalars and other number-likes as plain JSON numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in the file (a last line still being written is left for the next read)."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    events = []
    for line in text.split("\n")[:-1]:  # the part after the last newline is incomplete
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    return events


@dataclass
class RunProgress:
    """What the events of one run say: status, phase, progress, losses, metrics."""

    status: str = "unknown"  # running / finished / failed / aborted / unknown (no events)
    phase: str | None = None
    model: str | None = None
    method: str | None = None
    epochs: int | None = None
    started: float | None = None
    last_time: float | None = None
    epoch: int = 0
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    lr: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)  # (step, epoch, loss, lr)
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    monitor: str | None = None
    best_epoch: int | None = None
    best_value: float | None = None
    test: dict[str, Any] | None = None
    error: str | None = None
    segment_start: float | None = None
    pid: int | None = None  # the process of the latest start
    user: str | None = None  # who started the run (a resume by someone else keeps it; None: not recorded)
    embed: dict[str, Any] | None = None  # the latest `embed` event: done, total, computed, seconds

    @classmethod
    def from_events(cls, events: list[dict[str, Any]]) -> RunProgress:
        p = cls()
        for e in events:
            try:
                p.apply(e)
            except (KeyError, TypeError, ValueError):
                continue  # an event this version does not understand: skipped, never fatal
        return p

    @classmethod
    def read(cls, run_dir: Path) -> RunProgress:
        return cls.from_events(read_events(Path(run_dir) / EVENTS_FILE))

    def apply(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        self.last_time = e.get("time", self.last_time)
        if kind == "start":
            self.status, self.phase = "running", "setup"
            self.model, self.method, self.epochs = e.get("model"), e.get("method"), e.get("epochs")
            if not e.get("resume") or self.started is None:
                self.started = e.get("time")
            self.segment_start = e.get("time")  # pace and elapsed time count from the latest (re)start
            self.pid = e.get("pid")
            if not e.get("resume") or self.user is None:
                self.user = e.get("user")
            self.error = None
        elif kind == "phase":
            self.phase = e["phase"]
        elif kind == "model":
            self.params = {k: e[k] for k in ("total", "trainable", "trainable_percent") if k in e}
        elif kind == "plan":
            self.total_steps = e.get("total_steps")
        elif kind == "embed":
            self.embed = {k: e[k] for k in ("done", "total", "computed", "seconds")}
        elif kind == "step":
            self.epoch, self.step = e["epoch"], e["step"]
            self.total_steps = e.get("total_steps", self.total_steps)
            self.loss, self.lr = e.get("loss"), e.get("lr")
            if self.steps and self.steps[-1]["step"] >= e["step"]:  # a resumed run replays its last epoch
                self.steps = [s for s in self.steps if s["step"] < e["step"]]
            self.steps.append({"step": e["step"], "epoch": e["epoch"], "loss": e.get("loss"), "lr": e.get("lr"),
                               "time": e.get("time")})
        elif kind == "epoch":
            self.epoch_rows = [r for r in self.epoch_rows if r["epoch"] < e["epoch"]]
            self.epoch_rows.append({"epoch": e["epoch"], "train_loss": e.get("train_loss"),
                                    **{f"val_{k}": v for k, v in (e.get("validation") or {}).items()}})
            self.monitor = e.get("monitor", self.monitor)
            self.best_epoch, self.best_value = e.get("best_epoch"), e.get("best_value")
        elif kind == "test":
            self.test = e.get("metrics")
        elif kind == "end":
            self.status = e.get("status", "finished")
            self.phase = self.status
            self.error = e.get("error")

    # ---- derived ----------------------------------------------------------------------------------
    @property
    def fraction(self) -> float:
        if self.status == "finished":
            return 1.0
        if not self.total_steps:
            return 0.0
        return min(self.step / self.total_steps, 1.0)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the latest (re)start of the run's process."""
        start = self.segment_start or self.started
        if start is None:
            return 0.0
        end = now if self.status == "running" and now is not None else (self.last_time or start)
        return max(end - start, 0.0)

    def embed_pace(self) -> tuple[float | None, float | None]:
        """(sequences computed per second, seconds left) of the embedding phase; None where unknown."""
        e = self.embed
        if not e or not e["seconds"] or not e["computed"]:
            return None, None
        rate = e["computed"] / e["seconds"]
        return rate, max(e["total"] - e["done"], 0) / rate

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the pace of the steps since the first one seen (None before two steps)."""
        if self.status != "running" or not self.total_steps or len(self.steps) < 2:
            return None
        recent = [s for s in self.steps if self.segment_start is None or (s.get("time") or 0) >= self.segment_start]
        if len(recent) < 2:
            return None
        first, last = recent[0], recent[-1]
        spent = (now or last["time"]) - first["time"]
        done = last["step"] - first["step"]
        if done <= 0 or spent <= 0:
            return None
        return spent / done * max(self.total_steps - self.step, 0)


class ConsoleProgress:
    """The CLI's per-epoch progress bar, driven by the same events the UI reads."""

    def __init__(self) -> None:
        self.plan: list[int] = []
        self.bar: Any = None

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "plan":
            self.plan = list(e.get("steps_per_epoch") or [])
        elif kind == "phase" and e.get("phase") == "training":
            from tqdm.auto import tqdm

            self.close()
            n = int(e.get("epoch", 1))
            total = self.plan[n - 1] if 0 < n <= len(self.plan) else None
            self.bar = tqdm(total=total, desc=f"epoch {n}/{len(self.plan) or '?'}", unit="step", leave=False,
                            mininterval=1.0)
        elif kind == "step" and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{e.get('loss', float('nan')):.4f}", lr=f"{e.get('lr', 0.0):.2e}",
                                 refresh=False)
        elif kind in ("phase", "epoch", "end"):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
