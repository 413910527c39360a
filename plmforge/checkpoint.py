"""Checkpoints: `best/` and `last/` hold the trained weights (safetensors); `last/` also holds the
optimizer, scheduler, RNG and trainer state that `--resume` restores. Writes go to a temporary
directory that replaces the old one only when complete, so a crash never leaves a broken checkpoint.

Under sharding engines (FSDP, DeepSpeed ZeRO-3) no process holds whole weights or optimizer state: the
weights are gathered first (`weights=`) and the optimizer shards are written by accelerate's `save_state`
into `last/engine_state/` (`engine_dir=`, moved in before the checkpoint replaces the old one)."""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plmforge.errors import RunDirError
from plmforge.methods import trainable_state_dict

log = logging.getLogger("plmforge")

WEIGHTS = "model.safetensors"
TRAINING_STATE = "training_state.pt"
TRAINER_STATE = "trainer_state.json"
ADAPTER_DIR = "adapter"
ENGINE_STATE = "engine_state"  # accelerate.save_state output under sharding engines
CHECKSUMS = "checksums.json"  # sha256 of every file, written last; verified before loading


def rng_state() -> dict[str, Any]:
    """Every random generator's state in plain types and tensors (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, model: torch.nn.Module, trainer_state: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    spec: Any = None, weights: dict[str, torch.Tensor] | None = None,
                    engine_dir: Path | None = None, rng: dict[str, Any] | None = None) -> None:
    """`spec` (a MethodSpec) adds the standard peft adapter layout and the method's resumable state.
    `weights`: the full state dict gathered from a sharded model (else the model's own is read);
    `engine_dir`: optimizer/scheduler state written by the engine (then `optimizer` is not given);
    `rng`: the random generators' state to keep (default: rng_state() now)."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write(tmp, model, trainer_state, optimizer, scheduler, spec, weights, engine_dir, rng)
    except OSError as exc:  # e.g. a full disk: the previous checkpoint stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunDirError(f"could not write the checkpoint {directory}: {exc.strerror or exc} ({exc.filename or tmp}); "
                          f"the previous {directory.name}/ is kept. Free some space (or choose another output.dir) "
                          f"and continue with plmforge train --resume {directory.parent}") from None
    # swap by renames: at every instant either <dir> or <dir>.old is a complete checkpoint
    old = directory.with_name(directory.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    _fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _write(tmp: Path, model: torch.nn.Module, trainer_state: dict[str, Any], optimizer: Any, scheduler: Any,
           spec: Any, weights: dict[str, torch.Tensor] | None, engine_dir: Path | None,
           rng: dict[str, Any] | None = None) -> None:
    save_file(trainable_state_dict(model, weights), str(tmp / WEIGHTS))  # type: ignore[arg-type]
    (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2))
    if spec is not None and spec.uses_peft:
        # adapter_config.json + adapter_model.safetensors: loadable by plain peft.PeftModel.from_pretrained
        backbone_weights = None if weights is None else {
            k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
        model.backbone.save_pretrained(str(tmp / ADAPTER_DIR), state_dict=backbone_weights)  # type: ignore[operator]
    if optimizer is not None or engine_dir is not None:
        method_state = spec.state(model) if spec is not None and spec.state is not None else None
        blob = {"rng": rng if rng is not None else rng_state(), "method": method_state}
        if optimizer is not None:
            blob |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save(blob, tmp / TRAINING_STATE)
    if engine_dir is not None:
        shutil.move(str(engine_dir), str(tmp / ENGINE_STATE))
    seal(tmp)


def seal(directory: Path) -> None:
    """Record the sha256 of every file of a written checkpoint directory (each fsynced first), as its last
    file: a directory without the record was never finished."""
    sums = {}
    for f in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS):
        sums[str(f.relative_to(directory))] = sha256(f)
        with f.open("rb") as fh:  # on disk before the record (or a rename) makes the checkpoint current
            os.fsync(fh.fileno())
    (directory / CHECKSUMS).write_text(json.dumps(sums, indent=1))
    _fsync_dir(directory)


def is_sealed(directory: Path) -> bool:
    return (directory / CHECKSUMS).is_file()


TRUST_UNVERIFIED: contextvars.ContextVar[bool] = contextvars.ContextVar("plmforge_trust_unverified", default=False)


def trusting() -> bool:
    """Whether files without a checksum record may be used (--trust-unverified, trust_unverified=True, or
    PLMFORGE_TRUST_UNVERIFIED=1)."""
    return TRUST_UNVERIFIED.get() or os.environ.get("PLMFORGE_TRUST_UNVERIFIED") == "1"


def unverified(what: Path, detail: str) -> None:
    """A file or directory without a checksum record: refused, or used with a loud warning when trusted."""
    if trusting():
        log.warning("UNVERIFIED: %s %s; used only because --trust-unverified was given", what, detail)
        return
    raise RunDirError(f"{what} {detail}: its contents cannot be checked against what plmforge wrote, so they are "
                      "not used (a damaged or altered file would give wrong answers silently); restore the "
                      "record from a copy of the run, or, if you know where the files come from, pass "
                      "--trust-unverified (trust_unverified=True in Python)")


def verify_all(directory: Path) -> None:
    """Every file the record lists is there and unchanged (no record: refused unless trusted)."""
    record = directory / CHECKSUMS
    if not record.is_file():
        unverified(directory, f"has no checksum record ({CHECKSUMS})")
        return
    names = tuple(json.loads(record.read_text()))
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise RunDirError(f"{directory} lacks {', '.join(missing[:3])}, recorded when the checkpoint was written: "
                          "it was damaged or partly deleted; resume from another checkpoint")
    verify(directory, names)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def verify(directory: Path, names: tuple[str, ...]) -> None:
    """Check files against the checksums recorded when the checkpoint was written; a checkpoint without
    the record, or a file it does not list, is refused unless trusted (--trust-unverified)."""
    record = directory / CHECKSUMS
    if not record.is_file():
        unverified(directory, f"has no checksum record ({CHECKSUMS})")
        return
    try:
        sums = json.loads(record.read_text())
    except ValueError:
        raise RunDirError(f"{record} is damaged (not JSON): the checkpoint cannot be verified; restore the run "
                          "directory from a copy") from None
    for name in names:
        if (directory / name).is_file() and name not in sums:
            unverified(directory / name, f"is not listed in {record.name}")
        elif name in sums and (directory / name).is_file() and sha256(directory / name) != sums[name]:
            raise RunDirError(f"{directory / name} does not match the checksum recorded when it was written: the "
                              "file was changed or damaged after training wrote it; do not use it (train again, or "
                              "restore the run directory from a copy)")


def recover(directory: Path) -> None:
    """Put back the previous complete checkpoint if a stop fell between the two renames of a save."""
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and old.is_dir():
        old.rename(directory)


def load_weights(directory: Path, model: torch.nn.Module, engine: str | None = None) -> None:
    """`engine`: 'fsdp' or 'deepspeed' when the model is sharded across processes (every process calls)."""
    path = directory / WEIGHTS
    if not path.is_file():
        raise RunDirError(f"checkpoint {directory} has no {WEIGHTS}; was the run finished or interrupted "
                          "before its first epoch ended?")
    verify(directory, (WEIGHTS,))
    state = load_file(str(path))
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise RunDirError(f"checkpoint {directory} does not match the model it is loaded into "
                          f"(unexpected weights such as {unknown[0]!r})")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in state]
    if missing:
        raise RunDirError(f"checkpoint {directory} lacks trained weights such as {missing[0]!r}")
    # (sharded engines hold partitions, not whole tensors: their own loaders check)
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)] if engine is None else []
    if wrong:  # e.g. an edited task.json (another number of labels) builds a head of another size
        raise RunDirError(f"checkpoint {directory} does not fit the model its run describes: {wrong[0]!r} has shape "
                          f"{tuple(state[wrong[0]].shape)} in the checkpoint but {tuple(own[wrong[0]].shape)} in the "
                          "model (were config.yaml or task.json edited?); restore them from a copy of the run")
    if engine == "fsdp":  # FSDP2: each process keeps its own shard of the full tensors
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
    elif engine == "deepspeed":  # ZeRO-3: gather each partitioned parameter, let rank 0 write it
        import deepspeed

        params = [p for n, p in model.named_parameters() if n in state]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            if torch.distributed.get_rank() == 0:
                model.load_state_dict(state, strict=False)
    else:
        model.load_state_dict(state, strict=False)


def load_training_state(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = directory / TRAINING_STATE
    if not path.is_file():
        raise RunDirError(f"cannot resume: {path} is missing (no epoch finished before the run stopped?)")
    verify(directory, (TRAINING_STATE, TRAINER_STATE))
    # tensors and plain values only: a crafted file cannot run code (numpy arrays of older runs allowed)
    import pickle

    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RunDirError(f"{path} holds objects other than tensors and plain values, so it is not loaded (loading "
                          f"it could run code): {str(exc).splitlines()[0]}. Resume only runs you trained yourself, or "
                          "start a new run") from None
    trainer_state = json.loads((directory / TRAINER_STATE).read_text())
    return blob, trainer_state


def _numpy_safe() -> list[Any]:
    """What older training states hold besides tensors: numpy's random state (an array of uint32)."""
    import numpy.core.multiarray as multiarray  # noqa: I001

    items: list[Any] = [np.ndarray, np.dtype, multiarray._reconstruct]
    if hasattr(np, "dtypes"):
        items.append(np.dtypes.UInt32DType)
    return items


_NUMPY_SAFE = _numpy_safe()


# ---- single-file checkpoints (PTM-Mamba's best.ckpt / last.ckpt) ----------------------------------------

def save_file_checked(obj: dict[str, Any], path: Path) -> None:
    """torch.save `obj` to `path` atomically, with its sha256 in `path.sha256`. During the swap the record
    accepts the old and the new file, so a kill at any instant leaves a file that matches it."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    record = path.with_name(path.name + ".sha256")
    old = json.loads(record.read_text())[-1:] if record.is_file() and path.is_file() else []
    new = sha256(tmp)
    _write_record(record, old + [new])
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    _write_record(record, [new])


def _write_record(record: Path, sums: list[str]) -> None:
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(sums))
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, record)


def load_file_checked(path: Path) -> dict[str, Any]:
    """A file written by save_file_checked: checksum verified (files without a record are read as they
    are), then read with weights_only=True, so no pickled code runs."""
    record = path.with_name(path.name + ".sha256")
    if not record.is_file():
        unverified(path, f"has no checksum record ({record.name})")
    elif sha256(path) not in json.loads(record.read_text()):
        raise RunDirError(f"{path} does not match the checksum recorded when it was written: the file was changed "
                          "or damaged after training wrote it; do not use it (train again, or restore the run "
                          "directory from a copy)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or others for unsafe/damaged files
        raise RunDirError(f"{path} cannot be read safely ({type(exc).__name__}: {str(exc).splitlines()[0]}); it "
                          "holds something other than a checkpoint plmforge wrote") from None
