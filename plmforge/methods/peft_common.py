"""Shared pieces of the parameter-efficient methods, all built on the `peft` library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from plmforge.checks import fraction, positive
from plmforge.errors import ConfigError


@dataclass(frozen=True)
class LoraOptions:
    """Low-rank adapters: W + (alpha / rank) * B A on every targeted linear module."""

    rank: int = 8  # LoRA rank (AdaLoRA: the average final rank)
    alpha: int = 32  # scaling numerator (scale = alpha / rank)
    dropout: float = 0.1  # dropout on the adapter input
    target_modules: tuple[str, ...] | None = None  # None = the model family's default

    def __post_init__(self) -> None:
        positive("method.rank", self.rank)
        positive("method.alpha", self.alpha)
        fraction("method.dropout", self.dropout)


def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ConfigError("parameter-efficient methods need the peft package: pip install peft") from None


def linear_module_names(backbone: nn.Module) -> list[str]:
    return [n for n, m in backbone.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Linear4bit"]


def check_targets(backbone: nn.Module, targets: tuple[str, ...], field: str) -> None:
    """peft matches a target by the end of a module's dotted name; a target that matches nothing is an
    error listing the module names that exist (instead of peft's bare failure or a silent no-op)."""
    names = linear_module_names(backbone)
    for target in targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            short = sorted({n.rsplit(".", 1)[-1] for n in names})
            two = sorted({".".join(n.rsplit(".", 2)[-2:]) for n in names if n.count(".") >= 1})
            raise ConfigError(f"{field}: {target!r} matches no linear module of this model; its linear modules "
                              f"are named {', '.join(short)} (dotted suffixes also work: {', '.join(two)})")


def targets_for(model: Any, configured: tuple[str, ...] | None, default: tuple[str, ...], field: str) -> list[str]:
    targets = tuple(configured) if configured else default
    if not targets:
        raise ConfigError(f"{field} is not set and the model family has no default; name the modules to adapt")
    check_targets(model.backbone, targets, field)
    return list(targets)


def wrap(model: Any, peft_config: Any) -> None:
    """Put adapters on the backbone; only adapters (and the head, outside peft) train."""
    _require_peft()
    from peft import get_peft_model

    model.backbone = get_peft_model(model.backbone, peft_config)
    model.backbone_frozen = False
    for p in model.head.parameters():
        p.requires_grad_(True)


def lora_kwargs(cfg: LoraOptions, targets: list[str]) -> dict[str, Any]:
    return {"r": cfg.rank, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout, "target_modules": targets,
            "bias": "none"}
