"""Learning-rate schedules with linear warmup: linear decay, cosine (half a cycle), constant, and an
epoch-step decay. The formulas are those of HuggingFace transformers' schedulers (a test checks that
they agree step by step); they are written here so that training does not import transformers'
Trainer stack, which pulls in peft and bitsandbytes for every run."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from plmforge.config import TrainingConfig


def warmup_steps(cfg: TrainingConfig, total_steps: int) -> int:
    return cfg.warmup_steps or int(math.ceil(cfg.warmup_ratio * total_steps))


def _factor(name: str, warm: int, total: int, cfg: TrainingConfig, steps_per_epoch: int) -> Callable[[int], float]:
    def warming(step: int) -> float:
        return step / max(1, warm)

    def linear(step: int) -> float:
        return warming(step) if step < warm else max(0.0, (total - step) / max(1, total - warm))

    def cosine(step: int) -> float:
        if step < warm:
            return warming(step)
        progress = (step - warm) / max(1, total - warm)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def constant(step: int) -> float:
        return warming(step) if step < warm else 1.0

    def epoch_step(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        epoch = step // max(steps_per_epoch, 1)
        return cfg.step_gamma ** (epoch // cfg.step_size_epochs)

    return {"linear": linear, "cosine": cosine, "constant": constant, "step": epoch_step}[name]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, total_steps: int,
                    steps_per_epoch: int) -> LambdaLR:
    warm = warmup_steps(cfg, total_steps)
    return LambdaLR(optimizer, _factor(cfg.scheduler, warm, total_steps, cfg, steps_per_epoch))
