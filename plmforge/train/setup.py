"""Build everything a run needs from its config: data, backbone, tokenised splits, the task model."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from plmforge import threshold
from plmforge.config import RunConfig
from plmforge.data.batching import Collator, EncodedSplit
from plmforge.data.dataset import PreparedData, load_data
from plmforge.errors import ConfigError
from plmforge.heads import resolve_pooling
from plmforge.models.backbone import Backbone, resolve_model
from plmforge.models.build import build_model, load_run_backbone, method_inputs
from plmforge.models.encoding import encode_records
from plmforge.models.task_model import TaskModel
from plmforge.tasks import LabelScaler, TaskSpec
from plmforge.tasks.objective import make_objective

log = logging.getLogger("plmforge")


@dataclass
class Assembled:
    config: RunConfig  # with everything resolved that the data decides (e.g. the head)
    data: PreparedData
    backbone: Backbone
    model: TaskModel
    encoded: dict[str, EncodedSplit]
    scaler: LabelScaler

    def collator(self) -> Collator:
        return Collator(self.backbone.pad_values(), self.data.task.problem)


def resolve_head(config: RunConfig, task: TaskSpec) -> RunConfig:
    """The config with the head that the problem type really uses (saved as such with the run)."""
    pooling = resolve_pooling(config.head.pooling, task.problem)
    return config.replace(head=dataclasses.replace(config.head, pooling=pooling))


def prepare_data(config: RunConfig) -> PreparedData:
    """The run's validated splits, with the per-residue input columns its model family and method read
    (a cross-validation fold's run: that fold as validation)."""
    family = resolve_model(config.model).family
    fields = family.record_fields + tuple(i.source for i in method_inputs(config))
    return load_data(config.data, config.training, fields=fields, cv=config.cv)


def assemble(config: RunConfig, tokenizer_dir: Path | None = None) -> Assembled:
    data = prepare_data(config)
    if data.config is not None:  # the columns found in the file are saved with the run
        config = config.replace(data=data.config)
    config = resolve_head(config, data.task)
    backbone = load_run_backbone(config, tokenizer_dir)
    scaler = data.task.problem.fit_scaler(data.task.normalisation, data.splits["train"].labels or [])
    encoded = {name: encode_records(backbone, records, data.task, scaler, name)
               for name, records in data.splits.items()}
    torch.manual_seed(config.training.seed)  # head initialisation is part of the seeded run
    model = build_model(config, backbone, data.task)
    model.objective = make_objective(config.training, data.task, data.splits["train"].labels)
    if config.training.tune_threshold != "none" and not threshold.applies(data.task):
        raise ConfigError(f"training.tune_threshold={config.training.tune_threshold} applies to binary "
                          f"classification (of proteins or residues); this task is {data.task.problem_type} with {data.task.num_labels} "
                          "labels: drop the option")
    return Assembled(config, data, backbone, model, encoded, scaler)
