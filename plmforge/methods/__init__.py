"""Fine-tuning methods, registered by their CLI name. Adding one touches one module plus its test.

A method decides what trains (`apply`), and may hook into loading (`backbone_kwargs`, e.g. 4-bit
weights), the start of training (`prepare`, once the number of optimizer steps is known), every
optimizer step (`after_step`), the loss (`extra_loss`), and resumable state (`state`/`load_state`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from plmforge.config import MethodConfig
    from plmforge.models.task_model import TaskModel


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    apply: Callable[[TaskModel, MethodConfig], None]  # sets what trains (and wraps the backbone if needed)
    frozen_backbone: bool  # backbone outputs are fixed, so they can be computed once and reused
    saves_backbone: bool  # checkpoints hold backbone weights (else only the head/adapters)
    uses_peft: bool = False  # the backbone is a peft model: checkpoints also get the standard adapter layout
    mergeable: bool = False  # `plmforge export --merge` can fold the adapters into the backbone
    backbone_kwargs: Callable[[MethodConfig], dict[str, Any]] | None = None  # extra from_pretrained arguments
    prepare: Callable[[TaskModel, MethodConfig, int], None] | None = None  # total optimizer steps known
    after_step: Callable[[TaskModel, int], None] | None = None  # after optimizer.step, before zero_grad
    extra_loss: Callable[[TaskModel], torch.Tensor | None] | None = None
    state: Callable[[TaskModel], dict[str, Any]] | None = None  # saved in last/ for --resume
    load_state: Callable[[TaskModel, dict[str, Any]], None] | None = None
    report: Callable[[TaskModel], dict[str, Any]] | None = None  # written to method_report.json after training


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


from plmforge.methods import adalora as _adalora  # noqa: E402,F401  (each import registers its methods)
from plmforge.methods import freeze as _freeze  # noqa: E402,F401
from plmforge.methods import full as _full  # noqa: E402,F401
from plmforge.methods import ia3 as _ia3  # noqa: E402,F401
from plmforge.methods import lora as _lora  # noqa: E402,F401
from plmforge.methods import qlora as _qlora  # noqa: E402,F401
