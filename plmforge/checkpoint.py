"""Checkpoints: `best/` and `last/` hold the trained weights (safetensors); `last/` also holds the
optimizer, scheduler, RNG and trainer state that `--resume` restores. Writes go to a temporary
directory that replaces the old one only when complete, so a crash never leaves a broken checkpoint.

Under sharding engines (FSDP, DeepSpeed ZeRO-3) no process holds whole weights or optimizer state: the
weights are gathered first (`weights=`) and the optimizer shards are written by accelerate's `save_state`
into `last/engine_state/` (`engine_dir=`, moved in before the checkpoint replaces the old one)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plmforge.errors import RunDirError
from plmforge.methods import trainable_state_dict

WEIGHTS = "model.safetensors"
TRAINING_STATE = "training_state.pt"
TRAINER_STATE = "trainer_state.json"
ADAPTER_DIR = "adapter"
ENGINE_STATE = "engine_state"  # accelerate.save_state output under sharding engines


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, model: torch.nn.Module, trainer_state: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    spec: Any = None, weights: dict[str, torch.Tensor] | None = None,
                    engine_dir: Path | None = None) -> None:
    """`spec` (a MethodSpec) adds the standard peft adapter layout and the method's resumable state.
    `weights`: the full state dict gathered from a sharded model (else the model's own is read);
    `engine_dir`: optimizer/scheduler state written by the engine (then `optimizer` is not given)."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(trainable_state_dict(model, weights), str(tmp / WEIGHTS))  # type: ignore[arg-type]
    (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2))
    if spec is not None and spec.uses_peft:
        # adapter_config.json + adapter_model.safetensors: loadable by plain peft.PeftModel.from_pretrained
        backbone_weights = None if weights is None else {
            k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
        model.backbone.save_pretrained(str(tmp / ADAPTER_DIR), state_dict=backbone_weights)  # type: ignore[operator]
    if optimizer is not None or engine_dir is not None:
        method_state = spec.state(model) if spec is not None and spec.state is not None else None
        blob = {"rng": rng_state(), "method": method_state}
        if optimizer is not None:
            blob |= {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save(blob, tmp / TRAINING_STATE)
    if engine_dir is not None:
        shutil.move(str(engine_dir), str(tmp / ENGINE_STATE))
    # swap by renames: at every instant either <dir> or <dir>.old is a complete checkpoint
    old = directory.with_name(directory.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


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
    state = load_file(str(path))
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise RunDirError(f"checkpoint {directory} does not match the model it is loaded into "
                          f"(unexpected weights such as {unknown[0]!r})")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in state]
    if missing:
        raise RunDirError(f"checkpoint {directory} lacks trained weights such as {missing[0]!r}")
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
    blob = torch.load(path, map_location="cpu", weights_only=False)
    trainer_state = json.loads((directory / TRAINER_STATE).read_text())
    return blob, trainer_state
