"""`adalora`: LoRA whose rank budget is re-allocated during training (Zhang et al. 2023, peft AdaLoRA).

The rank allocator really runs: its schedule (warm-up, pruning, final phase) is set from the real
number of optimizer steps, it is stepped after every optimizer step, the orthogonality penalty is
added to the loss (peft only adds it when the wrapped model computes the loss itself, which ours
does not), its state is saved for --resume, and the final rank pattern is saved with the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from plmforge.checks import fraction, positive
from plmforge.errors import ConfigError
from plmforge.methods import MethodSpec, register_method
from plmforge.methods.peft_common import LoraOptions, targets_for, wrap


@dataclass(frozen=True)
class AdaLoraOptions(LoraOptions):
    adalora_init_rank: int = 12  # starting rank per module
    adalora_warmup: float = 0.1  # fraction of optimizer steps before ranks are pruned
    adalora_final: float = 0.2  # fraction of optimizer steps at the end with ranks fixed
    adalora_interval: int = 1  # optimizer steps between two rank re-allocations
    adalora_orth_reg: float = 0.5  # weight of the orthogonality penalty

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adalora_init_rank < self.rank:
            raise ConfigError(f"method.adalora_init_rank ({self.adalora_init_rank}) must be >= method.rank "
                              f"({self.rank}): AdaLoRA prunes from the initial rank down to the target")
        fraction("method.adalora_warmup", self.adalora_warmup)
        fraction("method.adalora_final", self.adalora_final)
        if self.adalora_warmup + self.adalora_final >= 0.9:
            raise ConfigError("method.adalora_warmup + method.adalora_final must leave at least 10 % of the steps "
                              "for rank allocation")
        positive("method.adalora_interval", self.adalora_interval)
        positive("method.adalora_orth_reg", self.adalora_orth_reg, allow_zero=True)

_PLACEHOLDER_STEPS = 1_000_000  # peft wants a step count at construction; the real one comes in prepare()


def apply(model, cfg) -> None:  # type: ignore[no-untyped-def]
    from peft import AdaLoraConfig

    targets = targets_for(model, cfg.target_modules, model.family.lora_targets, "method.target_modules")
    wrap(model, AdaLoraConfig(init_r=cfg.adalora_init_rank, target_r=cfg.rank, lora_alpha=cfg.alpha,
                              lora_dropout=cfg.dropout, target_modules=targets, tinit=0, tfinal=0,
                              deltaT=cfg.adalora_interval, orth_reg_weight=cfg.adalora_orth_reg,
                              total_step=_PLACEHOLDER_STEPS))


def _adalora(model: Any) -> Any:
    return model.backbone.base_model  # peft's AdaLoraModel


def prepare(model, cfg, total_steps: int) -> None:  # type: ignore[no-untyped-def]
    ada = _adalora(model)
    config = ada.peft_config[ada.trainable_adapter_name]
    config.total_step = total_steps
    config.tinit = int(cfg.adalora_warmup * total_steps)
    config.tfinal = int(cfg.adalora_final * total_steps)
    if config.tinit >= total_steps - config.tfinal:
        raise ConfigError(f"AdaLoRA has {total_steps} optimizer steps, too few to warm up, prune and settle; "
                          "train longer or lower method.adalora_warmup / method.adalora_final")
    ada.rankallocator.peft_config = config


def after_step(model, global_step: int) -> None:  # type: ignore[no-untyped-def]
    _adalora(model).update_and_allocate(global_step)


def orthogonality_penalty(model) -> torch.Tensor | None:  # type: ignore[no-untyped-def]
    """Mean Frobenius distance of A A^T and B^T B from the identity, times the configured weight."""
    ada = _adalora(model)
    weight = ada.peft_config[ada.trainable_adapter_name].orth_reg_weight
    terms = []
    for name, p in ada.model.named_parameters():
        if p.requires_grad and ("lora_A" in name or "lora_B" in name):
            gram = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0], device=gram.device,
                                                                    dtype=gram.dtype)))
    if not terms or weight == 0:
        return None
    return weight * torch.stack(terms).mean()


def rank_pattern(model) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Current rank of every adapted module (non-zero singular values lora_E)."""
    ada = _adalora(model)
    out = {}
    for name, p in ada.model.named_parameters():
        if "lora_E" in name:
            out[name.replace(".lora_E.default", "")] = int((p.detach() != 0).sum())
    return out


def report(model) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ada = _adalora(model)
    config = ada.peft_config[ada.trainable_adapter_name]
    ranks = rank_pattern(model)
    return {"initial_rank_per_module": config.init_r, "target_average_rank": config.target_r,
            "total_steps": config.total_step, "warmup_steps": config.tinit, "final_steps": config.tfinal,
            "initial_total_rank": config.init_r * len(ranks), "final_total_rank": sum(ranks.values()),
            "final_rank_per_module": ranks}


def state(model) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ada = _adalora(model)
    alloc = ada.rankallocator
    return {"ipt": alloc.ipt, "exp_avg_ipt": alloc.exp_avg_ipt, "exp_avg_unc": alloc.exp_avg_unc,
            "rank_pattern": ada.peft_config[ada.trainable_adapter_name].rank_pattern}


def load_state(model, blob: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    ada = _adalora(model)
    alloc = ada.rankallocator
    alloc.ipt, alloc.exp_avg_ipt, alloc.exp_avg_unc = blob["ipt"], blob["exp_avg_ipt"], blob["exp_avg_unc"]
    ada.peft_config[ada.trainable_adapter_name].rank_pattern = blob["rank_pattern"]


register_method(MethodSpec("adalora", "low-rank adapters with adaptive rank allocation (peft AdaLoRA) + head",
                           AdaLoraOptions, apply, frozen_backbone=False, uses_peft=True, mergeable=True,
                           prepare=prepare, after_step=after_step, extra_loss=orthogonality_penalty,
                           state=state, load_state=load_state, report=report))
