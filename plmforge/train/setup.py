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


def resolve_attention_dropout(config: RunConfig) -> RunConfig:
    """Adapter runs (LoRA, DoRA, AdaLoRA, IA3, QLoRA) train without dropout on attention weights unless
    model.attention_dropout says otherwise: with a rate above 0, PyTorch's SDPA has no fused CPU kernel and
    keeps every heads x L x L matrix for the backward pass (benchmarks/results.md, Speed 3: about twice as
    slow and twice the memory on AntiBERTy). The adapters themselves keep their own dropout."""
    from plmforge.methods import METHODS

    if (config.model.attention_dropout is not None or not METHODS[config.method.name].uses_peft
            or config.model.attention != "sdpa"):
        return config
    if resolve_model(config.model).family.attention_dropout_key is None:
        return config  # the family has no separate rate (its dropout covers every layer)
    log.info("model.attention_dropout=0 for this %s run: attention then runs on PyTorch's fused kernel (the "
             "checkpoint's own rate would keep every attention matrix for the backward pass); set "
             "model.attention_dropout to train with a rate", config.method.name)
    return config.replace(model=dataclasses.replace(config.model, attention_dropout=0.0))


def assemble(config: RunConfig, tokenizer_dir: Path | None = None, new_run: bool = True) -> Assembled:
    """`new_run=False` (a resumed run) takes the saved config as it is: defaults resolved since are not
    applied to a run that started without them."""
    data = prepare_data(config)
    if data.config is not None:  # the columns found in the file are saved with the run
        config = config.replace(data=data.config)
    config = resolve_head(config, data.task)
    if new_run:
        config = resolve_attention_dropout(config)
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
