"""Fine-tuning methods, registered by their CLI name. Adding one touches one module plus its test.

Each method declares its options (a frozen dataclass next to its code, validated at construction; the
config's `method.<key>` values fill it) and decides what trains (`apply`). It may hook into loading
(`backbone_kwargs`, e.g. 4-bit weights), the start of training (`prepare`, once the number of
optimizer steps is known), every optimizer step (`after_step`), the loss (`extra_loss`), and
resumable state (`state`/`load_state`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from plmforge.checks import one_of
from plmforge.errors import ConfigError
from plmforge.registry import Registry

TaskModel = torch.nn.Module  # models.task_model.TaskModel: methods act on its backbone and head


@dataclass(frozen=True)
class NoOptions:
    """The method has no options of its own."""


@dataclass(frozen=True)
class CacheOptions:
    """Options of methods whose backbone is fixed, so its outputs can be computed once and reused: the
    persistent embedding store (plmforge/store.py) keeps them across epochs and runs."""

    cache_embeddings: bool = True  # read/write backbone outputs in the persistent store
    cache_dir: str | None = None  # None = $PLMFORGE_CACHE_DIR, else ~/.cache/plmforge/embeddings
    cache_dtype: str = "float32"  # float16 halves the disk space (values are rounded)
    # stored outputs held in memory while training (MB): None = a quarter of the memory available when
    # the run starts; 0 = every batch reads the store. Pooled vectors are small (4 bytes x hidden size a
    # protein) and practically always fit; per-token states only for small or short datasets
    cache_memory_mb: float | None = None
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"cache_dtype": ("float32", "float16")}

    def __post_init__(self) -> None:
        one_of("method.cache_dtype", self.cache_dtype, self.CHOICES["cache_dtype"])
        if self.cache_memory_mb is not None and not self.cache_memory_mb >= 0:
            raise ConfigError(f"method.cache_memory_mb must be >= 0 (0 reads every batch from the embedding "
                              f"store) or null (a quarter of the available memory), got {self.cache_memory_mb!r}")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    options: type  # the method's option dataclass
    apply: Callable[[TaskModel, Any], None]  # sets what trains (and wraps the backbone if needed)
    frozen_backbone: bool  # backbone outputs are fixed, so they can be computed once and reused
    uses_peft: bool = False  # the backbone is a peft model: checkpoints also get the standard adapter layout
    mergeable: bool = False  # `plmforge export --merge` can fold the adapters into the backbone
    backbone_kwargs: Callable[[Any], dict[str, Any]] | None = None  # extra from_pretrained arguments
    prepare: Callable[[TaskModel, Any, int], None] | None = None  # total optimizer steps known
    after_step: Callable[[TaskModel, int], None] | None = None  # after optimizer.step, before zero_grad
    extra_loss: Callable[[TaskModel], torch.Tensor | None] | None = None
    state: Callable[[TaskModel], dict[str, Any]] | None = None  # saved in last/ for --resume
    load_state: Callable[[TaskModel, dict[str, Any]], None] | None = None
    report: Callable[[TaskModel], dict[str, Any]] | None = None  # written to method_report.json after training
    inputs: Callable[[Any], tuple[Any, ...]] | None = None  # the method's own per-residue inputs (ModelInput)

    @property
    def option_names(self) -> list[str]:
        return [f.name for f in fields(self.options)]


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec) -> MethodSpec:
    return METHODS.register(spec.name, spec)


def method_rows() -> list[dict[str, str]]:
    """The registry as table rows (CLI `methods`): name, description, options with their defaults."""
    rows = []
    for spec in METHODS.values():
        opts = ", ".join(f"{f.name}={'null' if f.default is None else f.default}" for f in fields(spec.options))
        rows.append({"method": spec.name, "description": spec.description,
                     "options (method.<key>=default)": opts or "-"})
    return rows


def trainable_state_dict(model: TaskModel, state: dict | None = None) -> dict:
    """The weights a checkpoint must hold: every trained parameter, plus the head's buffers (from `state`
    when given: the full weights gathered from a sharded model)."""
    state = model.state_dict() if state is None else state
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    keep |= {n for n in state if n.startswith("head.")}
    return {k: v.detach().contiguous() for k, v in state.items() if k in keep}


from plmforge.methods import freeze as _freeze  # noqa: E402,F401,I001  (each import registers its methods)
from plmforge.methods import full as _full  # noqa: E402,F401
from plmforge.methods import lora as _lora  # noqa: E402,F401
from plmforge.methods import adalora as _adalora  # noqa: E402,F401
from plmforge.methods import ia3 as _ia3  # noqa: E402,F401
from plmforge.methods import qlora as _qlora  # noqa: E402,F401
from plmforge.methods import ses_adapter as _ses_adapter  # noqa: E402,F401
