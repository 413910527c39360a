"""The task model of a run, built the same way for training and for prediction: the backbone (with
the method's loading arguments), the head the config names, and the method applied."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from plmforge.config import RunConfig
from plmforge.heads import build_head, resolve_pooling
from plmforge.inputs import ModelInput
from plmforge.methods import METHODS
from plmforge.models.backbone import Backbone, load_backbone
from plmforge.models.dropout import install_fast_dropout
from plmforge.models.task_model import TaskModel
from plmforge.tasks import TaskSpec


def method_backbone_kwargs(config: RunConfig) -> dict:
    spec = METHODS[config.method.name]
    return spec.backbone_kwargs(config.method.options) if spec.backbone_kwargs else {}


def method_inputs(config: RunConfig) -> tuple[ModelInput, ...]:
    """Per-residue inputs the method itself reads (e.g. the SES-Adapter's structure columns)."""
    spec = METHODS[config.method.name]
    return spec.inputs(config.method.options) if spec.inputs else ()


def load_run_backbone(config: RunConfig, tokenizer_dir: Path | None = None) -> Backbone:
    """The backbone as a run uses it: the method's loading arguments, and the method's own inputs."""
    backbone = load_backbone(config.model, tokenizer_dir, method_backbone_kwargs(config))
    return dataclasses.replace(backbone, extra_inputs=method_inputs(config))


def build_model(config: RunConfig, backbone: Backbone, task: TaskSpec) -> TaskModel:
    hidden = config.head.hidden_size or backbone.hidden_size
    pooling = resolve_pooling(config.head.pooling, task.problem)
    head = build_head(pooling, backbone.hidden_size, hidden, task.num_outputs, config.head.dropout)
    model = TaskModel(backbone.model, head, task.problem, task.num_outputs, backbone.family, backbone.hidden_size)
    METHODS[config.method.name].apply(model, config.method.options)
    if config.model.fast_dropout:  # after the method: its adapters have dropout modules of their own
        install_fast_dropout(model)
    return model
