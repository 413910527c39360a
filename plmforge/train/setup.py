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
from plmforge.data.dataset import PreparedData, load_data, load_folds
from plmforge.errors import ConfigError
from plmforge.heads import resolve_pooling
from plmforge.models.backbone import Backbone, resolve_model
from plmforge.models.build import build_model, load_run_backbone, method_inputs
from plmforge.models.encoding import encode_records, reuse_tokens
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


def prepare_folds(config: RunConfig) -> list[PreparedData]:
    """Every fold's data of a cross-validation config (cv.folds set), as prepare_data gives each fold's run."""
    family = resolve_model(config.model).family
    fields = family.record_fields + tuple(i.source for i in method_inputs(config))
    return load_folds(config.data, config.training, config.cv, fields=fields)


def assemble(config: RunConfig, tokenizer_dir: Path | None = None) -> Assembled:
    return _assemble(config, prepare_data(config), tokenizer_dir)


def assemble_folds(configs: list[RunConfig], datas: list[PreparedData] | None = None) -> list[Assembled]:
    """Cross-validation fold runs (configs with cv.fold set) on one frozen backbone, each as `assemble` makes
    it, from one reading of the data files, one loaded backbone (shared: nothing trains it) and each distinct
    sequence tokenised once. `datas`: their PreparedData (setup.prepare_folds), when the caller has it."""
    if datas is None:
        every = prepare_folds(configs[0])
        datas = [every[c.cv.fold - 1] for c in configs]  # type: ignore[operator]
    backbone: Backbone | None = None
    tokens: dict[str, tuple[EncodedSplit, int]] = {}  # sequence -> a split already tokenised and its row
    out = []
    for cfg, data in zip(configs, datas, strict=True):
        asm = _assemble(cfg, data, None, backbone, tokens)
        backbone = asm.backbone
        out.append(asm)
    return out


def _assemble(config: RunConfig, data: PreparedData, tokenizer_dir: Path | None, backbone: Backbone | None = None,
              tokens: dict[str, tuple[EncodedSplit, int]] | None = None) -> Assembled:
    if data.config is not None:  # the columns found in the file are saved with the run
        config = config.replace(data=data.config)
    config = resolve_head(config, data.task)
    backbone = backbone or load_run_backbone(config, tokenizer_dir)
    scaler = data.task.problem.fit_scaler(data.task.normalisation, data.splits["train"].labels or [])
    encoded = {}
    for name, records in data.splits.items():
        enc = reuse_tokens(records, data.task, scaler, tokens) if tokens else None
        encoded[name] = enc or encode_records(backbone, records, data.task, scaler, name)
        if tokens is not None and enc is None:
            tokens.update((s, (encoded[name], j)) for j, s in enumerate(records.sequences))
    torch.manual_seed(config.training.seed)  # head initialisation is part of the seeded run
    model = build_model(config, backbone, data.task)
    model.objective = make_objective(config.training, data.task, data.splits["train"].labels)
    if config.training.tune_threshold != "none" and not threshold.applies(data.task):
        raise ConfigError(f"training.tune_threshold={config.training.tune_threshold} applies to binary "
                          f"classification (of proteins or residues); this task is {data.task.problem_type} with {data.task.num_labels} "
                          "labels: drop the option")
    return Assembled(config, data, backbone, model, encoded, scaler)
