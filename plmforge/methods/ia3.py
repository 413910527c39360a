"""`ia3`: learned per-channel rescaling of keys, values and the feed-forward input (peft IA3)."""

from __future__ import annotations

from dataclasses import dataclass

from plmforge.errors import ConfigError
from plmforge.methods import MethodSpec, register_method
from plmforge.methods.peft_common import targets_for, wrap


@dataclass(frozen=True)
class IA3Options:
    target_modules: tuple[str, ...] | None = None  # None = the family's keys, values and feed-forward output
    feedforward_modules: tuple[str, ...] | None = None  # targets scaled at their input

    def __post_init__(self) -> None:
        if self.feedforward_modules and self.target_modules and \
                not set(self.feedforward_modules) <= set(self.target_modules):
            raise ConfigError("method.feedforward_modules must be a subset of method.target_modules")


def apply(model, cfg) -> None:  # type: ignore[no-untyped-def]
    from peft import IA3Config

    targets = targets_for(model, cfg.target_modules, model.family.ia3_targets, "method.target_modules")
    feedforward = list(cfg.feedforward_modules or (model.family.ia3_feedforward if not cfg.target_modules else ()))
    missing = [m for m in feedforward if m not in targets]
    if missing:
        raise ConfigError(f"method.feedforward_modules {missing} must also be in method.target_modules {targets}")
    wrap(model, IA3Config(target_modules=targets, feedforward_modules=feedforward))


register_method(MethodSpec("ia3", "learned rescaling vectors (peft IA3) + head", IA3Options, apply,
                           frozen_backbone=False, uses_peft=True, mergeable=True))
