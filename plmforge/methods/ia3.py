"""`ia3`: learned per-channel rescaling of keys, values and the feed-forward input (peft IA3)."""

from __future__ import annotations

from plmforge.errors import ConfigError
from plmforge.methods import MethodSpec, register_method
from plmforge.methods.peft_common import targets_for, wrap


def apply(model, cfg) -> None:  # type: ignore[no-untyped-def]
    from peft import IA3Config

    targets = targets_for(model, cfg.target_modules, model.family.ia3_targets, "method.target_modules")
    feedforward = list(cfg.feedforward_modules or (model.family.ia3_feedforward if not cfg.target_modules else ()))
    missing = [m for m in feedforward if m not in targets]
    if missing:
        raise ConfigError(f"method.feedforward_modules {missing} must also be in method.target_modules {targets}")
    wrap(model, IA3Config(target_modules=targets, feedforward_modules=feedforward))


register_method(MethodSpec("ia3", "learned rescaling vectors (peft IA3) + head", apply, frozen_backbone=False,
                           saves_backbone=False, uses_peft=True, mergeable=True))
