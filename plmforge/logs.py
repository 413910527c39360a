"""Logging: concise console messages, and a full log file inside each run directory."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG = logging.getLogger("plmforge")


class _Console(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each message (it may be redirected later)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


def setup_console(verbose: bool = False) -> None:
    if any(getattr(h, "_plmforge_console", False) for h in LOG.handlers):
        return
    handler = _Console()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbose else "%(message)s"))
    handler._plmforge_console = True  # type: ignore[attr-defined]
    LOG.addHandler(handler)
    LOG.setLevel(logging.DEBUG if verbose else logging.INFO)


class Buffer(logging.Handler):
    """Keeps records emitted before the run directory exists, to replay them into its log file."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def buffered() -> Iterator[Buffer]:
    buf = Buffer()
    LOG.addHandler(buf)
    if LOG.level == logging.NOTSET:
        LOG.setLevel(logging.INFO)
    try:
        yield buf
    finally:
        LOG.removeHandler(buf)


@contextmanager
def file_logging(path: Path, earlier: list[logging.LogRecord] | None = None) -> Iterator[None]:
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for record in earlier or []:
        handler.handle(record)
    LOG.addHandler(handler)
    if LOG.level == logging.NOTSET:
        LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOG.removeHandler(handler)
        handler.close()
