"""Fine-tuning methods, registered by their CLI name. Adding one touches one module plus its test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plmforge.config import MethodConfig
    from plmforge.models.task_model import TaskModel


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    apply: Callable[[TaskModel, MethodConfig], None]  # sets what trains (and wraps the backbone if needed)
    frozen_backbone: bool  # backbone outputs are fixed, so they can be computed once and reused
    saves_backbone: bool  # checkpoints hold backbone weights (else only the head/adapters)


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} registered twice")
    METHODS[spec.name] = spec


def trainable_state_dict(model: TaskModel) -> dict:
    """The weights a checkpoint must hold: every trained parameter, plus the head's buffers."""
    state = model.state_dict()
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    keep |= {n for n in state if n.startswith("head.")}
    return {k: v.detach().contiguous() for k, v in state.items() if k in keep}


from plmforge.methods import freeze as _freeze  # noqa: E402,F401  (registers)
from plmforge.methods import full as _full  # noqa: E402,F401
