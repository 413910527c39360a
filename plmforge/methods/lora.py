"""`lora` and `dora`: low-rank adapters on the attention projections (peft LoraConfig).

DoRA additionally learns a per-output-channel magnitude, decomposing each adapted weight into
magnitude and direction (Liu et al. 2024); in peft that is LoRA with `use_dora=True`."""

from __future__ import annotations

from plmforge.methods import MethodSpec, register_method
from plmforge.methods.peft_common import LoraOptions, lora_kwargs, targets_for, wrap


def _apply(use_dora: bool):
    def apply(model, cfg) -> None:  # type: ignore[no-untyped-def]
        from peft import LoraConfig

        targets = targets_for(model, cfg.target_modules, model.family.lora_targets, "method.target_modules")
        wrap(model, LoraConfig(**lora_kwargs(cfg, targets), use_dora=use_dora))

    return apply


register_method(MethodSpec("lora", "low-rank adapters (peft LoRA) + head", LoraOptions, _apply(False),
                           frozen_backbone=False, uses_peft=True, mergeable=True))
register_method(MethodSpec("dora", "weight-decomposed low-rank adapters (peft DoRA) + head", LoraOptions,
                           _apply(True), frozen_backbone=False, uses_peft=True, mergeable=True))
