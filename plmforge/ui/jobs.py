"""Training processes started from the UI, and the runs directory they write to.

Training runs as `python -m plmforge.cli train ...` in its own process, started with an argument list
(no shell: nothing a user types is interpreted); its console output goes to a log file in the UI's
working directory. Abort sends SIGTERM, which the CLI turns into the same clean stop as Ctrl-C (finished
epochs stay in last/, the events file records `aborted`); Resume runs `plmforge train --resume RUN`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plmforge.events import RunProgress
from plmforge.outputs import read_metrics
from plmforge.plots import read_jsonl


@dataclass
class Job:
    run_dir: Path
    argv: list[str]
    process: subprocess.Popen
    log_path: Path
    started: float
    aborted: bool = False  # stopped by Abort (the run may not have written anything yet)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(errors="replace").replace("\r", "\n")
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


class Jobs:
    """The training processes of this UI, by run directory."""

    def __init__(self, work_dir: Path) -> None:
        self.log_dir = work_dir / "jobs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def _launch(self, run_dir: Path, argv: list[str], env: dict[str, str] | None = None) -> Job:
        """Start `argv` for `run_dir` with this environment plus `env` (e.g. PLMFORGE_USER, who asked)."""
        key = str(run_dir.resolve())
        with self._lock:
            current = self.jobs.get(key)
            if current is not None and current.running:
                raise RuntimeError(f"{run_dir} is already training (process {current.process.pid})")
            log_path = self.log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_dir.name}.log"
            # no console bars: the page shows progress from the events file; the log keeps the messages
            full_env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
                            **(env or {}))
            with log_path.open("w") as log:
                log.write("$ " + " ".join(argv) + "\n")
                log.flush()
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=full_env, start_new_session=True)
            job = Job(run_dir, argv, process, log_path, time.time())
            self.jobs[key] = job
            return job

    def start(self, run_dir: Path, argv: list[str], env: dict[str, str] | None = None) -> Job:
        return self._launch(run_dir, argv, env)

    def resume(self, run_dir: Path, python: str | None = None, env: dict[str, str] | None = None,
               previous_argv: list[str] | None = None) -> Job:
        """Continue a stopped run; one aborted before it wrote its run directory starts again as it was.
        `previous_argv`: the command of its last launch when this Jobs did not make it (e.g. the server
        restarted since); by default that of this Jobs' last process for the run."""
        previous = self.get(run_dir)
        if previous_argv is None and previous is not None and not previous.running:
            previous_argv = previous.argv
        return self._launch(run_dir, resume_argv(run_dir, previous_argv, python), env)

    def alive(self) -> list[Job]:
        """The processes of this UI that are still running: a snapshot, safe to take from any thread."""
        with self._lock:
            jobs = list(self.jobs.values())
        return [job for job in jobs if job.running]

    def get(self, run_dir: Path | str | None) -> Job | None:
        if not run_dir:
            return None
        return self.jobs.get(str(Path(run_dir).resolve()))

    def abort(self, run_dir: Path, grace: float = 60.0) -> bool:
        """Stop the run's process cleanly (SIGTERM, then SIGKILL after `grace` seconds). False if it was
        not running."""
        job = self.get(run_dir)
        if job is None or not job.running:
            return False
        job.aborted = True
        job.process.send_signal(signal.SIGTERM)
        try:
            job.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
        return True

    def stop_all(self) -> None:
        for job in list(self.jobs.values()):
            if job.running:
                self.abort(job.run_dir, grace=10.0)


def resume_argv(run_dir: Path, previous_argv: list[str] | None, python: str | None = None) -> list[str]:
    """The command that continues `run_dir`: `plmforge train --resume RUN`, or, when the run was stopped
    while being set up (its run files not written yet, so nothing to resume from), its previous command
    again with output.overwrite=true (nothing had been trained, so nothing is lost)."""
    complete = is_run_dir(run_dir) and (run_dir / "model_stats.json").is_file()
    if not complete and previous_argv and "--resume" not in previous_argv:
        overwrite = "output.overwrite=true"
        return [*previous_argv, overwrite] if overwrite not in previous_argv else list(previous_argv)
    return [python or sys.executable, "-m", "plmforge.cli", "train", "--resume", str(run_dir)]


# ---- the runs directory -------------------------------------------------------------------------------
def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # exists, owned by another user
    except (OSError, TypeError, ValueError):
        return False
    return True


def run_status(run_dir: Path, progress: RunProgress | None = None, jobs: Jobs | None = None) -> str:
    """running / finished / failed / aborted / stopped (the process died without saying why) / unknown."""
    progress = progress or RunProgress.read(run_dir)
    job = jobs.get(run_dir) if jobs is not None else None
    if progress.status == "running" and job is not None:  # this UI started it: ask the process itself
        return "running" if job.running else ("aborted" if job.aborted else "stopped")
    if progress.status == "running":
        return "running" if progress.pid is None or _alive(progress.pid) else "stopped"
    if progress.status == "unknown":  # a run from before the events file
        return "finished" if (run_dir / "test_metrics.json").is_file() else "unknown"
    return progress.status


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def list_runs(runs_dir: Path, jobs: Jobs | None = None) -> list[dict[str, Any]]:
    """One row per run under `runs_dir` (newest first): name, status, who started it (the start event's
    user; "" for runs from before it was recorded), model, method, best and test metrics, date."""
    rows = []
    if not runs_dir.is_dir():
        return rows
    for path in runs_dir.iterdir():
        if not path.is_dir() or not is_run_dir(path):
            continue
        progress = RunProgress.read(path)
        try:
            config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        except yaml.YAMLError:
            config = {}
        if not isinstance(config, dict):
            config = {}
        best = ""
        if progress.best_value is not None and progress.monitor:
            best = f"{progress.monitor} {progress.best_value:.4f} (epoch {progress.best_epoch})"
        else:
            best = _best_from_history(path)
        metrics = read_metrics(path) or {}
        test = ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:4] if isinstance(v, int | float))
        rows.append({"run": path.name, "status": run_status(path, progress, jobs), "user": progress.user or "",
                     "model": _name(config, "model"), "method": _name(config, "method"), "best": best, "test": test,
                     "date": time.strftime("%Y-%m-%d %H:%M", time.localtime((path / "config.yaml").stat().st_mtime)),
                     "path": str(path)})
    rows.sort(key=lambda r: r["date"], reverse=True)
    return rows


def _name(config: dict, section: str) -> str:
    part = config.get(section)
    return str(part.get("name", "")) if isinstance(part, dict) else ""


def _best_from_history(path: Path) -> str:
    try:
        rows = read_jsonl(path / "metrics_epochs.jsonl")
    except json.JSONDecodeError:
        return ""
    best = [r for r in rows if r.get("best_so_far")]
    if not best:
        return ""
    last = best[-1]
    metrics = {k[4:]: v for k, v in last.items() if k.startswith("val_") and isinstance(v, int | float)}
    return ", ".join(f"{k} {v:.4f}" for k, v in list(metrics.items())[:2]) + f" (epoch {last['epoch']})"
