"""Prediction and evaluation from a finished run directory alone (offline)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from plmforge.config import RunConfig, load_config
from plmforge.data.batching import EncodedSplit, SizeBatchSampler, collator_for
from plmforge.data.dataset import TaskSpec
from plmforge.data.readers import Table, find_split_files, read_file
from plmforge.data.scaling import LabelScaler
from plmforge.data.validate import Records, check_label_range, table_to_records
from plmforge.errors import RunDirError
from plmforge.metrics import compute_metrics, residue_metrics
from plmforge.tasks import is_residue
from plmforge.models.backbone import Backbone, load_backbone
from plmforge.outputs import prediction_frame, residue_frames, write_metrics, write_predictions
from plmforge.train import checkpoint as ckpt
from plmforge.train.setup import build_model, encode_records, method_backbone_kwargs

log = logging.getLogger("plmforge")


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    task: TaskSpec
    scaler: LabelScaler
    backbone: Backbone
    model: torch.nn.Module


def load_run(run_dir: str | Path, checkpoint: str = "best") -> LoadedRun:
    rd = Path(run_dir)
    for needed in ("config.yaml", "task.json", "tokenizer", checkpoint):
        if not (rd / needed).exists():
            raise RunDirError(f"{rd} is not a finished plmforge run: {needed} is missing")
    config = load_config(rd / "config.yaml")
    meta = json.loads((rd / "task.json").read_text())
    task = TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["task"].items()})
    scaler = LabelScaler(**meta["label_scaler"])
    backbone = load_backbone(config.model, rd / "tokenizer", method_backbone_kwargs(config))
    model = build_model(config, backbone, task)
    ckpt.load_weights(rd / checkpoint, model)
    model.eval()
    return LoadedRun(rd, config, task, scaler, backbone, model)


@torch.no_grad()
def predict_records(run: LoadedRun, records: Records, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores in original order (probabilities, or values in the user's units) and labels if present."""
    enc = encode_records(run.backbone, records, run.task, run.scaler, "input")
    sampler = SizeBatchSampler(enc.lengths, batch_size, 0, shuffle=False)  # longest first: little padding
    loader = DataLoader(enc, batch_sampler=sampler,
                        collate_fn=collator_for(run.task.problem_type, run.backbone.tokenizer.pad_token_id or 0))
    device = next(run.model.parameters()).device
    out = np.zeros((len(enc), run.task.num_outputs), dtype=np.float64)
    per_residue: list = [None] * len(enc)
    for batch in tqdm(loader, desc="predicting", unit="batch", leave=False):
        res = run.model(residue_mask=batch["residue_mask"].to(device), input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device))
        scores = run.model.scores(res.logits).cpu().numpy()
        if is_residue(run.task.problem_type):
            mask = batch["residue_mask"].numpy()
            for b, i in enumerate(batch["idx"].tolist()):
                per_residue[i] = scores[b][mask[b]]
        else:
            out[batch["idx"].numpy()] = scores.reshape(len(scores), -1)
    if is_residue(run.task.problem_type):
        labels = enc.residue_labels()
        if run.task.problem_type == "residue_regression":
            per_residue = [run.scaler.inverse(x) for x in per_residue]
            labels = None if labels is None else [run.scaler.inverse(y) for y in labels]
        return per_residue, labels  # type: ignore[return-value]
    if run.task.problem_type == "regression":
        out = run.scaler.inverse(out[:, 0])
        labels = None if enc.labels is None else run.scaler.inverse(enc.labels)
        return out, labels
    return out, enc.labels


def _records_for(run: LoadedRun, table: Table, with_labels: bool) -> Records:
    return table_to_records(table, run.config.data, run.task.problem_type, with_labels)


def predict_command(run_dir: str, input_path: str | None, sequence: str | None, output: str | None,
                    batch_size: int) -> int:
    run = load_run(run_dir)
    if sequence is not None:
        table = Table(pd.DataFrame({run.config.data.sequence_column: [sequence], "id": ["sequence"]}),
                      "--sequence")
    else:
        table = read_file(input_path, run.config.data.sequence_column)  # type: ignore[arg-type]
    records = _records_for(run, table, with_labels=False)
    scores, _ = predict_records(run, records, batch_size)
    classes = run.config.data.residue_classes
    if sequence is not None and output is None:
        if is_residue(run.task.problem_type):
            print(residue_frames(records.ids, records.sequences, scores, run.task, None, classes)[1]
                  .to_string(index=False))
        else:
            print(prediction_frame(records.ids, records.sequences, scores, run.task).to_string(index=False))
        return 0
    out = Path(output) if output else run.run_dir / "predictions.csv"
    write_predictions(out, records.ids, records.sequences, scores, run.task, None, classes)
    print(f"wrote predictions for {len(records)} sequences to {out}")
    return 0


def evaluate_command(run_dir: str, data: str, output: str | None) -> int:
    run = load_run(run_dir)
    path = Path(data)
    if path.is_dir():
        files = find_split_files(path)
        path = files.get("test", files["train"])
    records = _records_for(run, read_file(path, run.config.data.sequence_column), with_labels=True)
    check_label_range(records, run.task.problem_type, run.task.num_labels, run.config.data.label_column)
    scores, labels = predict_records(run, records)
    if is_residue(run.task.problem_type):
        metrics = residue_metrics(run.task, labels, scores)  # type: ignore[arg-type]
    else:
        metrics = compute_metrics(run.task.metrics, labels, scores)  # type: ignore[arg-type]
    out = Path(output) if output else run.run_dir / f"eval_{path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, run.task, out, "eval", len(records), {"data": str(path)}, labels, scores)
    write_predictions(out / "predictions.csv", records.ids, records.sequences, scores, run.task, labels,
                      run.config.data.residue_classes)
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=2))
    print(f"metrics and predictions written to {out}")
    return 0
