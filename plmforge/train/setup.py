"""Build everything a run needs from its config: data, backbone, tokenised splits, the task model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plmforge.config import RunConfig
from plmforge.data.batching import EncodedSplit
from plmforge.data.dataset import PreparedData, TaskSpec, load_data
from plmforge.data.scaling import LabelScaler
from plmforge.data.residue import counted, token_labels
from plmforge.data.validate import Records, label_array
from plmforge.tasks import is_residue
from plmforge.methods import METHODS
from plmforge.models.backbone import Backbone, encode_sequences, load_backbone
from plmforge.models.heads import build_head
from plmforge.models.task_model import TaskModel

log = logging.getLogger("plmforge")


@dataclass
class Assembled:
    config: RunConfig
    data: PreparedData
    backbone: Backbone
    model: TaskModel
    encoded: dict[str, EncodedSplit]
    scaler: LabelScaler


def method_backbone_kwargs(config: RunConfig) -> dict:
    spec = METHODS[config.method.name]
    return spec.backbone_kwargs(config.method) if spec.backbone_kwargs else {}


def build_model(config: RunConfig, backbone: Backbone, task: TaskSpec) -> TaskModel:
    hidden = config.head.hidden_size or backbone.hidden_size
    head = build_head(config.head.pooling, backbone.hidden_size, hidden, task.num_outputs, config.head.dropout,
                      residue=is_residue(task.problem_type))
    model = TaskModel(backbone.model, head, task.problem_type, task.num_outputs, backbone.family)
    METHODS[config.method.name].apply(model, config.method)
    return model


def encode_records(backbone: Backbone, records: Records, task: TaskSpec, scaler: LabelScaler | None,
                   name: str) -> EncodedSplit:
    enc = encode_sequences(backbone, records.sequences, desc=f"tokenising {name}")
    if enc.n_truncated:
        log.warning("%s: %d of %d sequences are longer than %d residues and were truncated to it", name,
                    enc.n_truncated, len(records), backbone.max_residues)
    if enc.rare_mapped:
        mapped = ", ".join(f"{k}->{backbone.family.rare_map[k]} x{v}" for k, v in sorted(enc.rare_mapped.items()))
        log.info("%s: rare residues mapped for the %s family: %s", name, backbone.family.name, mapped)
    if enc.n_unknown:
        log.warning("%s: %d residues have no token in this model's vocabulary and are fed as the unknown token",
                    name, enc.n_unknown)
    labels = None
    if records.labels is not None and is_residue(task.problem_type):
        labels = [token_labels(scaler.transform(y) if task.problem_type == "residue_regression" else y, special,
                               task.problem_type, task.num_labels)
                  for y, special in zip(records.labels, enc.special, strict=True)]
        dropped = sum(counted(y[int((~sp).sum()):]) for y, sp in zip(records.labels, enc.special, strict=True))
        if dropped:
            log.warning("%s: truncation dropped the labels of %d residues beyond model.max_length", name, dropped)
    elif records.labels is not None:
        labels = label_array(records, task.problem_type, task.num_labels)
        if scaler is not None and task.problem_type == "regression":
            labels = scaler.transform(labels).astype(np.float32)
    return EncodedSplit(enc.input_ids, enc.special, labels)


def assemble(config: RunConfig, tokenizer_dir: Path | None = None) -> Assembled:
    data = load_data(config.data, config.training)
    backbone = load_backbone(config.model, tokenizer_dir, method_backbone_kwargs(config))
    scaler = LabelScaler("none")
    if data.task.problem_type == "regression":
        train_labels = label_array(data.splits["train"], "regression", 1)
        scaler = LabelScaler.fit(data.task.normalisation, train_labels)
    elif data.task.problem_type == "residue_regression":
        values = np.concatenate(data.splits["train"].labels)  # type: ignore[arg-type]
        scaler = LabelScaler.fit(data.task.normalisation, values[~np.isnan(values)])
    encoded = {}
    for name, records in data.splits.items():
        encoded[name] = encode_records(backbone, records, data.task, scaler, name)
    torch.manual_seed(config.training.seed)  # head initialisation is part of the seeded run
    model = build_model(config, backbone, data.task)
    return Assembled(config, data, backbone, model, encoded, scaler)
