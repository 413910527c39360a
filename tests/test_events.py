"""The structured events file: every phase written, readable while being written, folded into progress,
and a run stopped before its first epoch ended resumes to the uninterrupted result."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from plmforge.config import load_config
from plmforge.events import EVENTS_FILE, EventLog, RunProgress, read_events
from plmforge.train.run import train

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=2",
        "batching.batch_size=16", "training.learning_rate=0.003", "training.patience=10"]


def _config(tmp_path: Path, tiny_models, data: Path, *extra: str, out: str = "run"):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}",
                              f"output.dir={tmp_path / out}", *BASE, *extra])


def test_reader_skips_the_line_being_written_and_broken_lines(tmp_path):
    path = tmp_path / EVENTS_FILE
    log = EventLog(path)
    log.emit("start", model="m", method="lora", epochs=2)
    log.emit("phase", phase="training", epoch=1)
    log.close()
    with path.open("a") as fh:
        fh.write('{"event": "step", "step"')  # half written
    assert [e["event"] for e in read_events(path)] == ["start", "phase"]
    with path.open("a") as fh:
        fh.write(': 1}\n{"broken\n')
    assert [e["event"] for e in read_events(path)] == ["start", "phase", "step"]
    with pytest.raises(ValueError, match="unknown phase"):
        EventLog(None).emit("phase", phase="napping")


def test_events_are_readable_while_being_written(tmp_path):
    path = tmp_path / EVENTS_FILE
    n = 3000
    log = EventLog(path)

    def write():
        for i in range(n):
            log.emit("step", epoch=1, step=i + 1, total_steps=n, loss=1.0 / (i + 1), lr=1e-3, pad="x" * (i % 50))
        log.close()

    thread = threading.Thread(target=write)
    thread.start()
    seen = []
    while thread.is_alive() or len(seen) < n:
        events = read_events(path)
        assert [e["step"] for e in events] == list(range(1, len(events) + 1))  # always a whole prefix
        seen = events
        if not thread.is_alive() and len(seen) < n:
            seen = read_events(path)
            break
    thread.join()
    assert len(seen) == n


def test_a_training_run_writes_every_phase(tmp_path, tiny_models, amp_small):
    result = train(_config(tmp_path, tiny_models, amp_small, "method.name=freeze"), progress=False)
    events = read_events(result.run_dir / EVENTS_FILE)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and events[-1]["status"] == "finished"
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["setup", "embedding", "training", "validation", "training", "validation", "testing",
                      "baselines"]
    plan = next(e for e in events if e["event"] == "plan")
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, plan["total_steps"] + 1)) and plan["total_steps"] == sum(plan["steps_per_epoch"])
    stats = json.loads((result.run_dir / "model_stats.json").read_text())
    model = next(e for e in events if e["event"] == "model")
    assert model["trainable"] == stats["trainable"] and model["total"] == stats["total"]
    epochs = [e for e in events if e["event"] == "epoch"]
    history = [json.loads(x) for x in (result.run_dir / "metrics_epochs.jsonl").read_text().splitlines()]
    assert [e["validation"]["accuracy"] for e in epochs] == [h["val_accuracy"] for h in history]
    test = next(e for e in events if e["event"] == "test")
    assert test["metrics"] == json.loads((result.run_dir / "test_metrics.json").read_text())["metrics"]

    progress = RunProgress.from_events(events)
    assert progress.status == "finished" and progress.fraction == 1.0
    assert progress.best_epoch == result.fit.best_epoch + 1 and progress.params["total"] == stats["total"]
    assert len(progress.steps) == plan["total_steps"] and len(progress.epoch_rows) == 2


def test_failure_is_an_event_with_the_message(tmp_path, tiny_models, amp_small, monkeypatch):
    from plmforge.train import loop

    def broken(self, model, split):
        raise RuntimeError("disk full while evaluating")

    monkeypatch.setattr(loop.Trainer, "evaluate", broken)
    with pytest.raises(RuntimeError):
        train(_config(tmp_path, tiny_models, amp_small, "method.name=full"), progress=False)
    progress = RunProgress.read(tmp_path / "run")
    assert progress.status == "failed" and "disk full while evaluating" in progress.error


def test_stop_in_the_first_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_models, amp_small,
                                                                           monkeypatch):
    """Abort (Ctrl-C, SIGTERM, the UI's Abort) before any epoch finished: the run is marked aborted and
    --resume starts it again from the beginning, giving the uninterrupted result."""
    from plmforge import events as ev

    extra = ["method.name=full", "head.dropout=0.3"]
    whole = train(_config(tmp_path, tiny_models, amp_small, *extra, out="whole"), progress=False)

    def interrupt_at_step_3(self, e):
        if e.get("event") == "step" and e["step"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(ev.ConsoleProgress, "__call__", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, tiny_models, amp_small, *extra, out="cut"))
    cut = tmp_path / "cut"
    assert RunProgress.read(cut).status == "aborted" and not (cut / "last").exists()
    monkeypatch.undo()
    resumed = train(run_dir=cut, resume=True, progress=False)
    assert resumed.test_metrics["metrics"] == pytest.approx(whole.test_metrics["metrics"], abs=1e-6)
    progress = RunProgress.read(cut)
    assert progress.status == "finished"
    assert [s["step"] for s in progress.steps] == list(range(1, progress.total_steps + 1))  # replayed steps once
    steps = [json.loads(x)["step"] for x in (cut / "metrics_steps.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_eta_follows_the_pace_of_the_steps():
    p = RunProgress.from_events([
        {"event": "start", "time": 100.0, "epochs": 1},
        {"event": "plan", "time": 110.0, "total_steps": 10},
        {"event": "step", "time": 120.0, "epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1},
        {"event": "step", "time": 122.0, "epoch": 1, "step": 2, "loss": 0.9, "lr": 0.1},
        {"event": "step", "time": 124.0, "epoch": 1, "step": 3, "loss": 0.8, "lr": 0.1}])
    assert p.status == "running" and p.fraction == pytest.approx(0.3)
    assert p.eta(now=124.0) == pytest.approx(14.0)  # 2 s a step, 7 steps left
    assert p.elapsed(now=130.0) == pytest.approx(30.0)


def test_a_new_writer_never_glues_its_first_event_to_a_cut_line(tmp_path):
    path = tmp_path / EVENTS_FILE
    path.write_text('{"event": "start", "time": 1.0}\n{"event": "step", "ste')  # crashed mid-line
    log = EventLog(path)
    log.emit("start", model="m", method="full", epochs=1, resume=True)
    log.close()
    events = read_events(path)
    assert [e["event"] for e in events] == ["start", "start"] and events[1]["resume"] is True


def test_pace_after_a_resume_ignores_the_downtime():
    p = RunProgress.from_events([
        {"event": "start", "time": 0.0, "epochs": 1},
        {"event": "step", "time": 10.0, "epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1},
        {"event": "step", "time": 12.0, "epoch": 1, "step": 2, "loss": 1.0, "lr": 0.1},
        {"event": "end", "time": 13.0, "status": "aborted"},
        {"event": "start", "time": 86400.0, "epochs": 1, "resume": True},  # the next day
        {"event": "plan", "time": 86401.0, "total_steps": 10},
        {"event": "step", "time": 86402.0, "epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1},
        {"event": "step", "time": 86403.0, "epoch": 1, "step": 2, "loss": 1.0, "lr": 0.1},
        {"event": "step", "time": 86404.0, "epoch": 1, "step": 3, "loss": 1.0, "lr": 0.1}])
    assert p.eta(now=86404.0) == pytest.approx(7.0)  # 1 s a step since the restart, 7 steps left
    assert p.elapsed(now=86404.0) == pytest.approx(4.0)


def test_a_stop_between_the_checkpoint_renames_loses_nothing(tmp_path, tiny_models, amp_small):
    """last/ moved aside, the new one not yet in place: resume puts the complete old one back; and a
    run whose finished epochs lost their checkpoint is never silently restarted from zero."""
    cfg = _config(tmp_path, tiny_models, amp_small, "method.name=full", "training.epochs=3")

    def stop_after_first(epoch, trainer):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[stop_after_first], progress=False)
    rd = tmp_path / "run"
    (rd / "last").rename(rd / "last.old")
    resumed = train(run_dir=rd, resume=True, progress=False)
    assert resumed.fit.epochs_run == 3 and not (rd / "last.old").exists()
    import shutil

    shutil.rmtree(rd / "last")
    from plmforge.errors import RunDirError

    with pytest.raises(RunDirError, match="last/ checkpoint is missing"):
        train(run_dir=rd, resume=True, progress=False)


def test_the_user_who_started_a_run_survives_a_resume_and_old_files_have_none():
    old = RunProgress.from_events([{"event": "start", "time": 1.0, "model": "m", "resume": False, "pid": 7}])
    assert old.user is None and old.status == "running"  # an events file from before the user was recorded
    events = [{"event": "start", "time": 1.0, "resume": False, "pid": 7, "user": "alice"},
              {"event": "end", "time": 2.0, "status": "aborted"},
              {"event": "start", "time": 3.0, "resume": True, "pid": 8, "user": "bob"}]
    assert RunProgress.from_events(events).user == "alice"  # Bob resumed Alice's run: still hers
    assert RunProgress.from_events([{**events[0], "user": None}, events[2]]).user == "bob"  # nobody was recorded
    events.append({"event": "start", "time": 4.0, "resume": False, "pid": 9, "user": "carol"})  # started anew
    assert RunProgress.from_events(events).user == "carol"
