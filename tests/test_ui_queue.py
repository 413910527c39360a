"""The run queue of the web UI, without a browser: slots, order, cancel, refusals, the state file across
a server restart, runs of other processes taking slots, and the user reaching the run's start event.

Most tests queue tiny stand-in commands that wait for a gate file, so each test decides when a "training"
process ends; one queues a real (tiny) training run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plmforge.errors import ConfigError, RunDirError
from plmforge.events import EVENTS_FILE, EventLog, RunProgress
from plmforge.ui import queue as queue_module
from plmforge.ui.jobs import Jobs, list_runs, resume_argv
from plmforge.ui.queue import QueueEntry, RunQueue, default_slots

WAIT = "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists():\n    time.sleep(0.05)"


def gated(gate: Path) -> list[str]:
    """A stand-in training command that runs until `gate` exists."""
    return [sys.executable, "-c", WAIT, str(gate)]


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def finish(jobs: Jobs, run_dir: Path, gate: Path) -> None:
    """Open the gate of the run's stand-in process and wait until it has ended."""
    gate.touch()
    job = jobs.get(run_dir)
    assert job is not None
    job.process.wait(timeout=30)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    jobs = Jobs(tmp_path / "work")
    yield jobs
    for job in jobs.alive():
        job.process.kill()
        job.process.wait()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    return runs


def make_queue(jobs: Jobs, runs: Path, slots: int | None = 1) -> RunQueue:
    return RunQueue(jobs, jobs.log_dir.parent / "queue.json", slots, runs_dir=runs)


def test_one_slot_runs_one_and_the_next_starts_when_it_ends(jobs, runs, tmp_path):
    q = make_queue(jobs, runs)
    a, b = runs / "a", runs / "b"
    assert q.submit(a, gated(tmp_path / "gate-a"), user="alice") == "running"
    assert q.submit(b, gated(tmp_path / "gate-b"), user="bob") == "queued"
    assert q.position(b) == 1 and q.position(a) is None and jobs.get(b) is None
    rows = q.rows()
    assert [(r["run"], r["state"], r["position"], r["user"]) for r in rows] == [
        ("a", "running", None, "alice"), ("b", "queued", 1, "bob")]
    time.strptime(rows[1]["submitted"], "%Y-%m-%d %H:%M:%S")
    assert q.pump() == []  # the slot is still taken
    finish(jobs, a, tmp_path / "gate-a")
    assert q.pump() == [b]
    assert jobs.get(b).running and q.position(b) is None
    assert [(r["run"], r["state"]) for r in q.rows()] == [("b", "running")]


def test_two_slots_start_two_at_once(jobs, runs, tmp_path):
    q = make_queue(jobs, runs, 2)
    states = [q.submit(runs / name, gated(tmp_path / "gate")) for name in ("a", "b", "c")]
    assert states == ["running", "running", "queued"] and q.position(runs / "c") == 1


def test_cancel_takes_a_waiting_run_out_and_nothing_is_started_for_it(jobs, runs, tmp_path):
    q = make_queue(jobs, runs)
    a, b, c = runs / "a", runs / "b", runs / "c"
    for run in (a, b, c):
        q.submit(run, gated(tmp_path / f"gate-{run.name}"))
    assert q.cancel(b) is True
    assert q.position(c) == 1 and q.position(b) is None
    assert q.cancel(b) is False and q.cancel(a) is False  # no longer waiting; a running run is aborted instead
    finish(jobs, a, tmp_path / "gate-a")
    assert q.pump() == [c]
    assert jobs.get(b) is None and not b.exists()


def test_a_run_is_refused_while_it_waits_or_runs(jobs, runs, tmp_path):
    q = make_queue(jobs, runs)
    a, b = runs / "a", runs / "b"
    q.submit(a, gated(tmp_path / "gate"))
    q.submit(b, gated(tmp_path / "gate"))
    with pytest.raises(RuntimeError, match="a is already training"):
        q.submit(a, gated(tmp_path / "gate"))
    with pytest.raises(RuntimeError, match="already training"):
        q.submit_resume(a)
    with pytest.raises(RuntimeError, match=r"b is already waiting in the queue \(position 1\)"):
        q.submit(runs / "." / "b", gated(tmp_path / "gate"))  # the same directory spelt otherwise
    assert [e.run_dir.name for e in q.entries()] == ["b"]


def test_resuming_a_run_that_never_started_is_refused_with_a_message(jobs, runs):
    with pytest.raises(RunDirError, match="nothing to resume"):
        make_queue(jobs, runs).submit_resume(runs / "ghost")


def test_a_run_of_another_process_takes_a_slot_until_it_ends(jobs, runs, tmp_path):
    other = runs / "other"
    other.mkdir()
    process = subprocess.Popen(gated(tmp_path / "gate-other"))
    log = EventLog(other / EVENTS_FILE)
    log.emit("start", run_dir=str(other), model="m", method="lora", epochs=1, resume=False, pid=process.pid,
             user="bob")
    log.close()
    q = make_queue(jobs, runs)
    assert [(r["run"], r["state"], r["user"]) for r in q.rows()] == [("other", "running", "bob")]
    assert q.submit(runs / "a", gated(tmp_path / "gate-a")) == "queued"
    with pytest.raises(RuntimeError, match="other is already training"):
        q.submit(other, gated(tmp_path / "gate-a"))
    (tmp_path / "gate-other").touch()
    process.wait(timeout=30)  # it died without an end event, as a killed process would
    assert q.pump() == [runs / "a"]


def test_the_queue_and_the_runs_stopped_with_the_server_come_back_after_a_restart(jobs, runs, tmp_path):
    q = make_queue(jobs, runs, 2)
    a, b, c, d = (runs / n for n in "abcd")
    argv_a = gated(tmp_path / "gate-a")
    q.submit(a, argv_a, user="alice")
    q.submit(b, gated(tmp_path / "gate-b"), user="bob")
    q.submit(c, gated(tmp_path / "gate-c"), user="carol")
    q.submit(d, gated(tmp_path / "gate-d"))
    q.stop()  # the server stops: a and b were running
    jobs.stop_all()
    b.mkdir()
    log = EventLog(b / EVENTS_FILE)  # b had finished just before it was stopped: nothing to resume
    log.emit("start", resume=False, pid=1, user="bob")
    log.emit("end", status="finished")
    log.close()

    again = Jobs(tmp_path / "work")
    q2 = make_queue(again, runs, 1)
    entries = q2.entries()
    assert [(e.run_dir.name, e.kind, e.user) for e in entries] == [
        ("a", "resume", "alice"), ("c", "start", "carol"), ("d", "start", None)]
    assert entries[0].argv == argv_a
    state = json.loads(q2.state_file.read_text())
    assert [e["run_dir"] for e in state["queued"]] == [str(r) for r in (a, c, d)] and state["interrupted"] == []
    assert q2.pump() == [a]
    # a was stopped before it wrote anything: its first command runs again, allowed to replace the directory
    assert again.get(a).argv == [*argv_a, "output.overwrite=true"]
    again.abort(a, grace=10)
    assert not list(q2.state_file.parent.glob("*.tmp"))  # every save was renamed into place


def test_a_new_queue_on_the_same_file_keeps_the_order(jobs, runs, tmp_path):
    q = make_queue(jobs, runs)
    for name in "abcd":
        q.submit(runs / name, gated(tmp_path / "gate"), user=name.upper())
    q.cancel(runs / "c")
    restored = RunQueue(Jobs(tmp_path / "work2"), q.state_file, 1, runs_dir=runs)
    # a was running and the server was not stopped (no stop()): it is not put back
    assert [(e.run_dir.name, e.user) for e in restored.entries()] == [("b", "B"), ("d", "D")]
    assert restored.position(runs / "d") == 2


def test_resume_argv_continues_a_run_with_files_and_restarts_one_without(tmp_path):
    run = tmp_path / "run"
    first = [sys.executable, "-m", "plmforge.cli", "train", f"output.dir={run}"]
    assert resume_argv(run, first) == [*first, "output.overwrite=true"]
    assert resume_argv(run, None)[-2:] == ["--resume", str(run)]
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    (run / "model_stats.json").write_text("{}")
    assert resume_argv(run, first, "py") == ["py", "-m", "plmforge.cli", "train", "--resume", str(run)]


def test_the_background_thread_starts_the_next_run(jobs, runs, tmp_path):
    q = make_queue(jobs, runs)
    q.submit(runs / "a", gated(tmp_path / "gate-a"))
    q.submit(runs / "b", gated(tmp_path / "gate-b"))
    q.start_background(interval=0.05)
    try:
        (tmp_path / "gate-a").touch()
        wait_for(lambda: jobs.get(runs / "b") is not None)
        assert q.entries() == []
    finally:
        q.stop()
    assert q._thread is None


def test_bad_settings_and_a_broken_state_file_are_plain_errors(jobs, runs, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="at least 1, got 0"):
        make_queue(jobs, runs, 0)
    state = jobs.log_dir.parent / "queue.json"
    state.write_text('{"queued": [{"run_dir": "x"')
    with pytest.raises(ConfigError, match="cannot read the run queue .*queue.json"):
        make_queue(jobs, runs)
    state.write_text(json.dumps({"queued": [{"run_dir": "x", "argv": [], "submitted": 1, "kind": "later"}]}))
    with pytest.raises(ConfigError, match="kind must be one of"):
        make_queue(jobs, runs)


def test_default_slots_is_one_per_gpu_and_one_without(monkeypatch, jobs, runs):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert default_slots() == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert default_slots() == 3
    assert make_queue(jobs, runs, None).max_concurrent == 3


def test_entries_round_trip_through_json():
    entry = QueueEntry(Path("/r/a"), ["x", "y"], "alice", 12.5, "resume")
    assert QueueEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    assert queue_module.USER_ENV == "PLMFORGE_USER"


def test_the_user_reaches_the_start_event_of_a_real_training_run(jobs, runs, tmp_path, tiny_models, amp_small):
    run = runs / "tiny"
    argv = [sys.executable, "-m", "plmforge.cli", "train", f"data.dataset={amp_small}",
            f"model.name={tiny_models['esm']}", f"output.dir={run}", "data.problem_type=single_label_classification",
            "data.num_labels=2", "training.epochs=1", "batching.batch_size=32", "method.name=freeze"]
    q = make_queue(jobs, runs)
    assert q.submit(run, argv, user="alice") == "running"
    job = jobs.get(run)
    assert job.process.wait(timeout=600) == 0, job.log_tail()
    assert RunProgress.read(run).user == "alice"
    start = json.loads((run / EVENTS_FILE).read_text().splitlines()[0])
    assert start["event"] == "start" and start["user"] == "alice"
    [row] = list_runs(runs, jobs)
    assert row["user"] == "alice" and row["status"] == "finished"


def test_submissions_from_many_threads_at_once_take_the_slots_once(jobs, runs, tmp_path):
    import threading

    q = make_queue(jobs, runs, 2)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def submit(name: str) -> None:
        barrier.wait()
        try:
            results.append(q.submit(runs / name, gated(tmp_path / "gate")))
        except RuntimeError:
            results.append("refused")

    threads = [threading.Thread(target=submit, args=(name,)) for name in ["same"] * 4 + ["a", "b", "c", "d"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(["running", "running"] + ["queued"] * 3 + ["refused"] * 3)
    assert len(jobs.alive()) == 2 and len(q.entries()) == 3


def test_a_run_deleted_while_the_server_was_down_is_not_made_again(tmp_path):
    """An interrupted run that had written files and whose directory the user then deleted stays deleted."""
    import json as _json

    runs = tmp_path / "runs"
    (runs / "kept").mkdir(parents=True)
    state = tmp_path / "work" / "queue.json"
    state.parent.mkdir(parents=True)
    rows = [{"run_dir": str(runs / n), "argv": ["x"], "user": None, "submitted": 0.0, "kind": "resume"}
            for n in ("kept", "deleted", "never-started")]
    state.write_text(_json.dumps({"version": 1, "queued": [], "interrupted": rows,
                                  "interrupted_with_files": [str(runs / "kept"), str(runs / "deleted")]}))
    q = RunQueue(Jobs(tmp_path / "work"), state, 1, runs_dir=runs)
    assert sorted(e.run_dir.name for e in q.entries()) == ["kept", "never-started"]
