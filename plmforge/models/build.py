"""The task model of a run, built the same way for training and for prediction: the backbone (with
the method's loading arguments), the head the config names, and the method applied."""

from __future__ import annotations

from plmforge.config import RunConfig
from plmforge.heads import build_head, resolve_pooling
from plmforge.methods import METHODS
from plmforge.models.backbone import Backbone
from plmforge.models.task_model import TaskModel
from plmforge.tasks import TaskSpec


def method_backbone_kwargs(config: RunConfig) -> dict:
    spec = METHODS[config.method.name]
    return spec.backbone_kwargs(config.method.options) if spec.backbone_kwargs else {}


def build_model(config: RunConfig, backbone: Backbone, task: TaskSpec) -> TaskModel:
    hidden = config.head.hidden_size or backbone.hidden_size
    pooling = resolve_pooling(config.head.pooling, task.problem)
    head = build_head(pooling, backbone.hidden_size, hidden, task.num_outputs, config.head.dropout)
    model = TaskModel(backbone.model, head, task.problem, task.num_outputs, backbone.family)
    METHODS[config.method.name].apply(model, config.method.options)
    return model
