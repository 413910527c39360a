"""How training stops: early stopping on the monitored metric, and Ctrl-C / SIGTERM turned into a stop at
the next optimizer step with a resumable state saved there."""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("plmforge")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM stopped training at a step boundary after saving a resumable last/."""

    def __init__(self, run_dir: Path, step: int, epoch: int, batches: int | None) -> None:
        where = f"after epoch {epoch}" if batches is None else f"in epoch {epoch} after {batches} batches"
        super().__init__(f"stopped at step {step} ({where}); the state is saved in {run_dir / 'last'}: continue "
                         f"with plmforge train --resume {run_dir}")


class _StopFlag:
    requested = False


@contextmanager
def graceful_stop() -> Iterator[_StopFlag]:
    """While training: the first Ctrl-C or SIGTERM asks for a stop at the next step boundary (the state is
    saved there); a second Ctrl-C stops at once. Handlers are only installed in the main thread."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def ask(signum: int, frame: object) -> None:
        flag.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now
        log.warning("stopping at the next step boundary and saving a resumable state (Ctrl-C again to stop now)")

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class EarlyStopping:
    direction: str
    patience: int | None
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's monitored value; True when it is the best so far. An undefined (NaN) value
        never beats a number, but the first epoch is kept as best until one appears, so a best/
        checkpoint always exists."""
        if math.isnan(value) and self.best is None and self.best_epoch == -1:
            self.best_epoch = epoch
            return True
        better = not math.isnan(value) and (
            self.best is None or (value > self.best if self.direction == "max" else value < self.best))
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience
