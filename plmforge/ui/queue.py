"""The run queue of a shared server: at most `max_concurrent` training processes at once, the rest wait.

A lab server has a GPU or two and several people pressing Start; launching every run at once would have
them fight over memory. Runs are submitted here instead: one starts at once while a slot is free, the
others wait in submission order and start as slots free up (`pump`, called by a background thread).

A slot is taken by every live process of this server's `Jobs`, and also by a run under the runs directory
whose events say it is running in a live process this server did not start (a previous server's run that
survived a restart, or a `plmforge train` typed in a terminal): the machine is just as busy.

The queue is saved to a JSON state file on every change (written whole, then renamed in, so a crash never
leaves half a file) and restored by the next server on the same file. The runs this server is training when
it stops (`stop`, before `Jobs.stop_all` aborts them cleanly) are recorded there too, and the next server
puts them back at the head of the queue as resumes.

Who asked for a run travels with it: the training process gets it as $PLMFORGE_USER and records it in its
`start` event, so the runs list shows it whichever server (or none) is running. No gradio in here: the
queue is plain Python, tested without a browser."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plmforge.errors import ConfigError, RunDirError
from plmforge.events import EVENTS_FILE, RunProgress
from plmforge.ui.jobs import Job, Jobs, _alive, is_run_dir, run_status

log = logging.getLogger("plmforge")

USER_ENV = "PLMFORGE_USER"  # who asked for the run, read by the training process into its start event
KINDS = ("start", "resume")
STATE_VERSION = 1
RESUMABLE = ("aborted", "stopped", "unknown")  # how a run this server stopped can look to the next one


def default_slots() -> int:
    """One run per CUDA GPU (runs are single-device), one on a machine without CUDA."""
    try:
        import torch
    except ImportError:
        return 1
    return max(int(torch.cuda.device_count()), 1)


def _key(run_dir: Path | str) -> str:
    return str(Path(run_dir).resolve())


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


@dataclass
class QueueEntry:
    """A run waiting for a slot. `argv` is its training command; for a resume, the command of the run's
    previous launch (or [] when unknown), which restarts a run stopped before it wrote anything."""

    run_dir: Path
    argv: list[str]
    user: str | None
    submitted: float  # seconds since the epoch
    kind: str = "start"  # "start" | "resume"

    @property
    def key(self) -> str:
        return _key(self.run_dir)

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "argv": list(self.argv), "user": self.user,
                "submitted": self.submitted, "kind": self.kind}

    @classmethod
    def from_json(cls, row: Any) -> QueueEntry:
        """One entry of the state file; ValueError / TypeError / KeyError when it is not one."""
        if not isinstance(row, dict):
            raise TypeError(f"a queue entry must be an object, got {row!r}")
        argv, user, kind = row["argv"], row.get("user"), row.get("kind", "start")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise TypeError(f"argv must be a list of strings, got {argv!r}")
        if user is not None and not isinstance(user, str):
            raise TypeError(f"user must be a string, got {user!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return cls(Path(str(row["run_dir"])), argv, user, float(row["submitted"]), kind)


@dataclass
class _Running:
    run_dir: Path
    user: str | None
    since: float


class _StartWatch:
    """The latest start / end of runs' events files, read incrementally (only the bytes added since the
    last look), so that checking every run of a big runs directory each second stays cheap."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int, RunProgress]] = {}  # events file -> (inode, bytes read, progress)

    def progress(self, run_dir: Path) -> RunProgress:
        path = run_dir / EVENTS_FILE
        try:
            st = path.stat()
        except OSError:
            self._seen.pop(str(path), None)
            return RunProgress()
        inode, offset, progress = self._seen.get(str(path), (st.st_ino, 0, RunProgress()))
        if inode != st.st_ino or st.st_size < offset:  # replaced (e.g. the run was overwritten)
            offset, progress = 0, RunProgress()
        if st.st_size > offset:
            try:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(st.st_size - offset)
            except OSError:
                return progress
            whole = chunk.rfind(b"\n") + 1  # a line still being written is read next time
            for line in chunk[:whole].splitlines():
                _apply_start_or_end(progress, line)
            offset += whole
        self._seen[str(path)] = (st.st_ino, offset, progress)
        return progress


def _apply_start_or_end(progress: RunProgress, line: bytes) -> None:
    try:
        event = json.loads(line)
        if isinstance(event, dict) and event.get("event") in ("start", "end"):
            progress.apply(event)
    except (ValueError, KeyError, TypeError):
        pass  # a line cut short by a crash, or an event this version does not know


class RunQueue:
    """Starts submitted runs through `jobs` while fewer than `max_concurrent` run; the others wait in order.
    Every method may be called from any thread (Gradio runs its callbacks in threads)."""

    def __init__(self, jobs: Jobs, state_file: Path, max_concurrent: int | None = None, *,
                 runs_dir: Path | None = None) -> None:
        """`max_concurrent`: None gives `default_slots()`. `runs_dir`: where runs of other processes are
        looked for (they take slots too); None: the directories of the runs this queue has seen."""
        if max_concurrent is not None and max_concurrent < 1:
            raise ConfigError(f"the number of runs at once must be at least 1, got {max_concurrent}")
        self.jobs = jobs
        self.state_file = Path(state_file)
        self.max_concurrent = max_concurrent or default_slots()
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self._lock = threading.RLock()
        self._queued: list[QueueEntry] = []
        self._interrupted: list[QueueEntry] = []  # recorded by stop() for the next server
        self._launched: dict[str, tuple[QueueEntry, Job]] = {}  # what this queue started, by run
        self._seen_dirs: set[Path] = set()
        self._watch = _StartWatch()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._load()

    # ---- submitting -----------------------------------------------------------------------------------
    def submit(self, run_dir: Path, argv: list[str], user: str | None = None) -> str:
        """Queue a new run (`argv`: its training command); "running" if it started now, else "queued"."""
        return self._submit(QueueEntry(Path(run_dir).absolute(), list(argv), user, time.time(), "start"))

    def submit_resume(self, run_dir: Path, user: str | None = None) -> str:
        """Queue `plmforge train --resume RUN` (or, for a run stopped before it wrote anything, its first
        command again); "running" if it started now, else "queued"."""
        run_dir = Path(run_dir).absolute()  # the state file must not depend on the server's directory
        previous = self.jobs.get(run_dir)
        argv = list(previous.argv) if previous is not None else []
        if not argv and not is_run_dir(run_dir):
            raise RunDirError(f"nothing to resume in {run_dir}: it has no config.yaml (the run never got going); "
                              "start it again instead")
        return self._submit(QueueEntry(run_dir, argv, user, time.time(), "resume"))

    def _submit(self, entry: QueueEntry) -> str:
        with self._lock:
            self._refuse_twice(entry.run_dir)
            self._queued.append(entry)
            try:
                self._save()
            except OSError:
                self._queued.remove(entry)  # not queued unless it would survive a restart
                raise
            self._seen_dirs.add(entry.run_dir.resolve().parent)
            started, failed = self._pump()
        if entry.key in failed:
            raise failed[entry.key]
        return "running" if any(_key(p) == entry.key for p in started) else "queued"

    def _refuse_twice(self, run_dir: Path) -> None:
        key = _key(run_dir)
        place = self._position(key)
        if place is not None:
            raise RuntimeError(f"{run_dir.name} is already waiting in the queue (position {place})")
        if key in self._running():
            raise RuntimeError(f"{run_dir.name} is already training: abort it first, or pick another run name")

    def cancel(self, run_dir: Path) -> bool:
        """Take a waiting run out of the queue (nothing was started or written for it). False if it was not
        waiting (a running run is stopped with Jobs.abort instead)."""
        key = _key(run_dir)
        with self._lock:
            for entry in self._queued:
                if entry.key == key:
                    self._queued.remove(entry)
                    self._save()
                    return True
        return False

    # ---- looking --------------------------------------------------------------------------------------
    def position(self, run_dir: Path) -> int | None:
        """1-based place of the run among the waiting ones; None when it is not waiting."""
        with self._lock:
            return self._position(_key(run_dir))

    def _position(self, key: str) -> int | None:
        return next((i for i, e in enumerate(self._queued, 1) if e.key == key), None)

    def entries(self) -> list[QueueEntry]:
        """The waiting runs, first to start first (copies)."""
        with self._lock:
            return [replace(e, argv=list(e.argv)) for e in self._queued]

    def rows(self) -> list[dict[str, Any]]:
        """The runs taking a slot (oldest first), then the waiting ones in order: run, state, position,
        user ("" when unknown), submitted (local time)."""
        with self._lock:
            running = sorted(self._running().values(), key=lambda r: r.since)
            queued = list(self._queued)
        rows = [{"run": r.run_dir.name, "state": "running", "position": None, "user": r.user or "",
                 "submitted": _when(r.since)} for r in running]
        rows += [{"run": e.run_dir.name, "state": "queued", "position": i, "user": e.user or "",
                  "submitted": _when(e.submitted)} for i, e in enumerate(queued, 1)]
        return rows

    def _running(self) -> dict[str, _Running]:
        """The runs taking a slot, by run: this server's live processes, then other processes' runs."""
        found = {}
        for job in self.jobs.alive():
            key = _key(job.run_dir)
            entry, launched = self._launched.get(key, (None, None))
            if entry is not None and launched is job:
                found[key] = _Running(job.run_dir, entry.user, entry.submitted)
            else:
                found[key] = _Running(job.run_dir, None, job.started)
        for run in self._other_runs():
            progress = self._watch.progress(run)
            if progress.status == "running" and progress.pid is not None and _alive(progress.pid):
                found.setdefault(_key(run), _Running(run, progress.user, progress.segment_start or time.time()))
        return found

    def _other_runs(self) -> list[Path]:
        """Run directories with an events file that no process of this server's Jobs has trained."""
        dirs = {self.runs_dir} if self.runs_dir is not None else set(self._seen_dirs)
        runs = []
        for parent in dirs:
            try:
                children = list(parent.iterdir())
            except OSError:
                continue
            runs += [run for run in children if self.jobs.get(run) is None and (run / EVENTS_FILE).is_file()]
        return runs

    # ---- starting -------------------------------------------------------------------------------------
    def pump(self) -> list[Path]:
        """Start waiting runs, first in first, while fewer than `max_concurrent` take a slot; returns the
        run directories started. A run that cannot be launched leaves the queue (the error is logged)."""
        with self._lock:
            started, _ = self._pump()
        return started

    def _pump(self) -> tuple[list[Path], dict[str, Exception]]:
        started: list[Path] = []
        failed: dict[str, Exception] = {}
        if not self._queued:
            return started, failed
        running = self._running()
        for entry in list(self._queued):
            if len(running) >= self.max_concurrent:
                break
            if entry.key in running:  # another process trains this very run: it waits until that ends
                continue
            self._queued.remove(entry)
            try:
                job = self._launch(entry)
            except Exception as exc:  # noqa: BLE001  (one bad entry must not stall the queue)
                log.error("could not start %s from the queue: %s", entry.run_dir, exc)
                failed[entry.key] = exc
                continue
            self._launched[entry.key] = (entry, job)
            running[entry.key] = _Running(entry.run_dir, entry.user, entry.submitted)
            started.append(entry.run_dir)
        if started or failed:
            self._save()
        return started, failed

    def _launch(self, entry: QueueEntry) -> Job:
        env = {USER_ENV: entry.user} if entry.user else None
        if entry.kind == "resume":
            return self.jobs.resume(entry.run_dir, env=env, previous_argv=entry.argv or None)
        return self.jobs.start(entry.run_dir, entry.argv, env)

    def start_background(self, interval: float = 1.0) -> None:
        """Pump every `interval` seconds in a daemon thread (a second call while it runs does nothing)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, args=(interval,), name="plmforge-run-queue",
                                            daemon=True)
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stopping.is_set():
            try:
                self.pump()
            except Exception:  # noqa: BLE001  (keep pumping: a full disk now may be gone in a minute)
                log.exception("run queue: pump failed")
            self._stopping.wait(interval)

    def stop(self) -> None:
        """Stop the background thread and record the runs this server is training in the state file: the
        next server on it puts them back at the head of the queue as resumes. Call before Jobs.stop_all."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30.0)
        with self._lock:
            self._thread = None
            interrupted = []
            for job in sorted(self.jobs.alive(), key=lambda j: j.started):
                entry, launched = self._launched.get(_key(job.run_dir), (None, None))
                user, submitted = (entry.user, entry.submitted) if entry and launched is job else (None, job.started)
                interrupted.append(QueueEntry(job.run_dir, list(job.argv), user, submitted, "resume"))
            self._interrupted = interrupted
            self._save()

    # ---- the state file -------------------------------------------------------------------------------
    def _save(self) -> None:
        """Write the state file whole under a temporary name in its directory, then rename it in."""
        state = {"version": STATE_VERSION, "queued": [e.to_json() for e in self._queued],
                 "interrupted": [e.to_json() for e in self._interrupted],
                 # runs that had written files when stopped: if their directory is gone at the next start, the
                 # user deleted it, and the run is not made again
                 "interrupted_with_files": [str(e.run_dir) for e in self._interrupted if e.run_dir.is_dir()]}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.state_file.name}.", suffix=".tmp", dir=self.state_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self) -> None:
        """Restore the waiting runs, behind the runs the previous server was training when it stopped
        (those that did not finish meanwhile and are not still running)."""
        if not self.state_file.is_file():
            return
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise TypeError("the file does not hold a JSON object")
            queued = [QueueEntry.from_json(row) for row in state.get("queued", [])]
            interrupted = [QueueEntry.from_json(row) for row in state.get("interrupted", [])]
            had_files = {str(p) for p in state.get("interrupted_with_files", [])}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"cannot read the run queue {self.state_file}: {exc}; fix or remove the file "
                              "(removing it empties the queue)") from exc
        # a run whose directory was deleted meanwhile is not made again
        gone = [e.run_dir.name for e in interrupted if str(e.run_dir) in had_files and not e.run_dir.is_dir()]
        back = [e for e in interrupted if e.run_dir.name not in gone and run_status(e.run_dir) in RESUMABLE]
        if gone:
            log.info("run queue: %s were deleted since the server stopped: not started again", ", ".join(gone))
        keys: set[str] = set()
        for entry in back + queued:
            if entry.key not in keys:
                keys.add(entry.key)
                self._queued.append(entry)
                self._seen_dirs.add(entry.run_dir.resolve().parent)
        self._save()
