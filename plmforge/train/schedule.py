"""Learning-rate schedules with warmup (transformers' implementations, plus an epoch-step decay)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from plmforge.config import TrainingConfig


def warmup_steps(cfg: TrainingConfig, total_steps: int) -> int:
    return cfg.warmup_steps or int(math.ceil(cfg.warmup_ratio * total_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, total_steps: int,
                    steps_per_epoch: int) -> LambdaLR:
    from transformers import get_scheduler

    warm = warmup_steps(cfg, total_steps)
    if cfg.scheduler == "step":
        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            epoch = step // max(steps_per_epoch, 1)
            return cfg.step_gamma ** (epoch // cfg.step_size_epochs)

        return LambdaLR(optimizer, factor)
    name = {"constant": "constant_with_warmup"}.get(cfg.scheduler, cfg.scheduler)
    return get_scheduler(name, optimizer, num_warmup_steps=warm, num_training_steps=total_steps)
