"""Crash safety: kill -9 at chosen instants (mid-epoch, inside a checkpoint write, between the renames of a
checkpoint swap), Ctrl-C / SIGTERM at a step boundary, a full disk, and a crafted pickle in a run directory.
Every resumed run must end with the uninterrupted run's weights and metrics."""

from __future__ import annotations

import errno
import json
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = '''
import os, pathlib, signal, sys
mode, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
from plmforge import checkpoint as ck
from plmforge.train import loop
count = [0]

def hit():
    count[0] += 1
    return count[0] == n

if mode == "rename":  # killed right after the n-th directory rename (inside a checkpoint swap)
    rename = pathlib.Path.rename
    def patched(self, target):
        out = rename(self, target)
        if hit():
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    pathlib.Path.rename = patched
elif mode == "weights":  # killed right after the n-th weights file is written into a checkpoint's .tmp
    save_file = ck.save_file
    def patched(*a, **k):
        save_file(*a, **k)
        if hit():
            os.kill(os.getpid(), signal.SIGKILL)
    ck.save_file = patched
elif mode in ("io", "count"):  # killed right after the n-th write-like call of any kind (a random instant)
    import json as _json, torch as _torch
    calls = {"save_file": (ck, "save_file"), "torch_save": (_torch, "save"), "rename": (pathlib.Path, "rename"),
             "write_text": (pathlib.Path, "write_text"), "fsync": (os, "fsync"), "dumps": (_json, "dumps")}
    def wrap(owner, name):
        real = getattr(owner, name)
        def patched(*a, **k):
            out = real(*a, **k)
            if hit() and mode == "io":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        setattr(owner, name, patched)
    for owner, name in calls.values():
        wrap(owner, name)
    if mode == "count":
        import atexit
        atexit.register(lambda: pathlib.Path(os.environ["PLMFORGE_TEST_COUNT"]).write_text(str(count[0])))
elif mode in ("step", "sigint", "sigterm"):  # a signal at optimizer step n
    log_step = loop.Trainer._log_step
    sig = {"step": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[mode]
    def patched(self, *a, **k):
        log_step(self, *a, **k)
        if self.global_step == n:
            os.kill(os.getpid(), sig)
    loop.Trainer._log_step = patched
from plmforge.cli import main
sys.exit(main(args))
'''


def _args(data: Path, model: Path, out: Path) -> list[str]:
    return ["train", f"data.dataset={data}", f"model.name={model}", "data.problem_type=single_label_classification",
            "method.name=lora", "training.epochs=3", "training.logging_steps=1", "batching.batch_size=16",
            "output.plots=false", "output.save_predictions=false", f"output.dir={out}"]


def _run(tmp: Path, mode: str, n: int, args: list[str]) -> subprocess.CompletedProcess:
    import os

    script = tmp / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PLMFORGE_TEST_COUNT": str(tmp / "count.txt")}
    return subprocess.run([sys.executable, str(script), mode, str(n), *args], capture_output=True, text=True,
                          timeout=600, env=env)


def _epochs(rd: Path) -> list[dict]:
    rows = [json.loads(line) for line in (rd / "metrics_epochs.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _same_run(a: Path, b: Path) -> None:
    for name in ("last", "best"):
        wa, wb = load_file(str(a / name / "model.safetensors")), load_file(str(b / name / "model.safetensors"))
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-6, msg=f"{name}/{k}")
    ea, eb = _epochs(a), _epochs(b)
    assert [r["epoch"] for r in eb] == [1, 2, 3]
    for ra, rb in zip(ea, eb, strict=True):
        assert ra == pytest.approx(rb, rel=1e-5, abs=1e-7)
    assert json.loads((a / "test_metrics.json").read_text())["metrics"] == \
        pytest.approx(json.loads((b / "test_metrics.json").read_text())["metrics"], rel=1e-5)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, amp_small, tiny_models) -> Path:
    tmp = tmp_path_factory.mktemp("whole")
    run = _run(tmp, "count", 0, _args(amp_small, tiny_models["esm"], tmp / "run"))  # counts its write-like calls
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp / "run"


def test_kill_9_at_random_instants_then_resume_equals_the_uninterrupted_run(tmp_path, amp_small, tiny_models,
                                                                           uninterrupted):
    """Two instants drawn at random (seeded, printed) from every write-like call of the uninterrupted run:
    file writes, renames, fsyncs, tensor saves, JSON serialisation — setup, epochs and checkpoints alike."""
    import random

    total = int((uninterrupted.parent / "count.txt").read_text())
    assert total > 100
    seed = 20261127
    picks = sorted(random.Random(seed).sample(range(1, total + 1), 2))
    print(f"seed {seed}: kill -9 after write-like call {picks} of {total}")
    for n in picks:
        rd = tmp_path / f"run_{n}"
        killed = _run(tmp_path, "io", n, _args(amp_small, tiny_models["esm"], rd))
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        args = ["train", "--resume", str(rd)]
        if not (rd / "model_stats.json").is_file():  # killed while the run directory was being set up
            args = _args(amp_small, tiny_models["esm"], rd) + ["--overwrite"]
        resumed = _run(tmp_path, "none", 0, args)
        assert resumed.returncode == 0, (n, resumed.stderr[-3000:])
        _same_run(uninterrupted, rd)


@pytest.mark.parametrize("mode,n", [("step", 8), ("weights", 3), ("rename", 3), ("rename", 5)],
                         ids=["mid-epoch-2", "inside-a-checkpoint-write", "between-best-renames",
                              "between-last-renames"])
def test_kill_9_then_resume_equals_the_uninterrupted_run(mode, n, tmp_path, amp_small, tiny_models, uninterrupted):
    rd = tmp_path / "run"
    killed = _run(tmp_path, mode, n, _args(amp_small, tiny_models["esm"], rd))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    left = {p.name for p in rd.iterdir()}
    if mode == "rename":  # killed between the two renames: the swap is half done
        assert {"best.old", "best.tmp"} <= left if n == 3 else {"last.old", "last.tmp"} <= left, left
    if mode == "weights":  # killed while a checkpoint's .tmp was being filled
        assert any(name.endswith(".tmp") for name in left), left
    resumed = _run(tmp_path, "none", 0, ["train", "--resume", str(rd)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not any(p.name.endswith((".tmp", ".old")) for p in rd.iterdir())
    _same_run(uninterrupted, rd)


@pytest.mark.parametrize("mode", ["sigint", "sigterm"])
def test_ctrl_c_saves_at_the_step_boundary_and_resumes_mid_epoch(mode, tmp_path, amp_small, tiny_models,
                                                                 uninterrupted):
    rd = tmp_path / "run"
    stopped = _run(tmp_path, mode, 8, _args(amp_small, tiny_models["esm"], rd))  # step 8: inside epoch 2
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "stopped at step 8 (in epoch 2 after" in stopped.stderr and f"--resume {rd}" in stopped.stderr
    state = json.loads((rd / "last" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["partial"]["epoch"] == 1
    resumed = _run(tmp_path, "none", 0, ["train", "--resume", str(rd)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "in epoch 2, after" in resumed.stderr
    _same_run(uninterrupted, rd)


def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path, amp_small, tiny_models, monkeypatch, uninterrupted):
    from plmforge import checkpoint as ck
    from plmforge.config import load_config
    from plmforge.errors import RunDirError
    from plmforge.train.run import train

    rd = tmp_path / "run"
    real, calls = ck.save_file, []

    def full(*a, **k):  # the disk fills up while the epoch-2 checkpoints are written
        calls.append(1)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(a[1]))
        return real(*a, **k)

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(RunDirError, match=r"(?s)No space left on device.*is kept.*--resume"):
        train(load_config(None, _args(amp_small, tiny_models["esm"], rd)[1:]), progress=False)
    assert json.loads((rd / "last" / "trainer_state.json").read_text())["epoch"] == 0  # epoch 1's, intact
    assert not any(p.name.endswith(".tmp") for p in rd.iterdir())
    monkeypatch.setattr(ck, "save_file", real)
    train(run_dir=rd, resume=True, progress=False)
    _same_run(uninterrupted, rd)


class _Boom:
    def __reduce__(self):  # what a malicious training_state.pt would carry
        import os

        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/plmforge-pickle-was-executed")


def test_a_crafted_pickle_in_a_run_directory_is_never_executed(tmp_path, amp_small, tiny_models, capsys):
    from plmforge import checkpoint as ck
    from plmforge.cli import main

    MARKER.unlink(missing_ok=True)
    rd = tmp_path / "run"
    args = _args(amp_small, tiny_models["esm"], rd)
    args[args.index("training.epochs=3")] = "training.epochs=1"
    assert main(args) == 0
    state = rd / "last" / ck.TRAINING_STATE
    with state.open("wb") as fh:
        pickle.dump({"rng": _Boom()}, fh)
    # tampered: the checksum recorded at save time no longer matches
    assert main(["train", "--resume", str(rd)]) != 0
    assert "does not match the checksum" in capsys.readouterr().err and not MARKER.exists()
    # a forger who also rewrote checksums.json: the file is still refused, not run
    sums = json.loads((rd / "last" / ck.CHECKSUMS).read_text())
    sums[ck.TRAINING_STATE] = ck.sha256(state)
    (rd / "last" / ck.CHECKSUMS).write_text(json.dumps(sums))
    assert main(["train", "--resume", str(rd)]) != 0
    err = capsys.readouterr().err
    assert "not loaded" in err and "could run code" in err and not MARKER.exists()
