"""Prediction and evaluation from a finished run directory alone (offline), for Python users, the CLI
and the UI. Every function returns objects (tables, metrics); only the CLI prints.

    import plmforge
    result = plmforge.predict("runs/quickstart", ["GLFDIVKKVVGALGSL", "MKTAYIAKQRQISFVK"])
    result.table                      # pandas DataFrame: id, sequence, prediction, probabilities
    report = plmforge.evaluate("runs/quickstart", "labelled.csv")
    report.metrics                    # {'loss': ..., 'accuracy': ..., ...}
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from plmforge import checkpoint as ckpt
from plmforge import threshold
from plmforge.compare import compare
from plmforge.config import BatchingConfig, DataConfig, RunConfig, load_run_config
from plmforge.data.batching import Collator, EncodedSplit
from plmforge.data.readers import Table, find_split_files, is_table_file, read_file, sequences_table
from plmforge.data.validate import Records, table_to_records
from plmforge.errors import ConfigError, DataError, RunDirError
from plmforge.inference import Predictions, predict_encoded, split_metrics
from plmforge.models.backbone import Backbone
from plmforge.models.build import build_model, load_run_backbone
from plmforge.models.encoding import encode_records
from plmforge.outputs import FRAME_ROWS, metrics_blob, prediction_frames, write_frames, write_metrics
from plmforge.tasks import LabelScaler, ProblemType, TaskSpec

log = logging.getLogger("plmforge")


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    task: TaskSpec
    scaler: LabelScaler
    backbone: Backbone
    model: torch.nn.Module

    def collator(self) -> Collator:
        return Collator(self.backbone.pad_values(), self.task.problem)

    def records(self, table: Table, with_labels: bool, data: DataConfig | None = None) -> Records:
        """Validated records of an input table, read with the run's columns (or `data`'s)."""
        data = data or self.config.data
        records = table_to_records(table, data, self.task.problem_type, with_labels, self.backbone.record_fields)
        if with_labels and records.labels is not None:
            self.task.problem.check_label_range(records.labels, self.task.num_labels, records.rows,
                                                data.label_column)
        return records

    def input_columns(self, path: str | Path, columns: dict[str, str] | None = None,
                      with_labels: bool = False) -> DataConfig:
        """The run's data settings with the columns of an input file: `columns` given (role -> name) win;
        then the run's own columns where the file has them; the others are found in the file (and logged).
        A FASTA file's ids always come from its headers."""
        from plmforge.data.columns import infer_columns, named_columns, peek_table
        from plmforge.data.readers import file_format

        cfg = self.config.data
        columns = {k: v for k, v in (columns or {}).items() if v}
        if file_format(path) == "fasta":
            return dataclasses.replace(cfg, id_column=columns.get("id", "id"),
                                       label_column=columns.get("label", cfg.label_column))
        table = peek_table(path)
        columns = named_columns(table, columns, option="--{role}-column")  # named by the user: must be there
        own = {"sequence": cfg.sequence_column, "label": cfg.label_column, "id": cfg.id_column,
               "mask": cfg.mask_column, "group": None}
        found = infer_columns(table, {**own, **columns}, with_labels=with_labels)
        changes = {}
        for role in ("sequence", "label", "id", "mask"):
            choice = found.choices[role].column
            if role == "label" and not with_labels:
                continue
            if choice != own[role]:
                log.info("%s: %s column %r (%s)", Path(path).name, role, choice, found.choices[role].reason)
            changes[f"{role}_column"] = choice
        if changes.get("sequence_column") is None:
            raise DataError(found.ambiguous.get("sequence", "no sequence column"), file=str(path),
                            hint="name it: --sequence-column COLUMN (the columns are: "
                                 f"{', '.join(found.columns)})")
        if with_labels and changes.get("label_column") is None:
            raise DataError(found.ambiguous.get("label", "no label column"), file=str(path),
                            hint=f"name it: --label-column COLUMN (the columns are: {', '.join(found.columns)})")
        return dataclasses.replace(cfg, **changes)

    def encode(self, records: Records) -> EncodedSplit:
        return encode_records(self.backbone, records, self.task, self.scaler, "input")


def _run_path(run_dir: str | Path) -> Path:
    """A local run directory, or a run pushed to the Hub (`owner/name`, downloaded once to the HF cache)."""
    from plmforge.data.dataset import looks_like_hub_id

    rd = Path(run_dir)
    if rd.exists() or not looks_like_hub_id(str(run_dir)):
        return rd
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(run_dir)))
    except Exception as exc:  # offline, unknown repository, no access
        raise RunDirError(f"{run_dir} is not a local run directory, and downloading it from the HuggingFace Hub "
                          f"failed: {type(exc).__name__}: {exc}") from None


def load_run(run_dir: str | Path, checkpoint: str = "best", trust_unverified: bool = False) -> LoadedRun:
    """A finished run (a local directory, or `owner/name` of a run pushed with `plmforge push`). Its weights
    are verified against the checksums recorded when they were written; `trust_unverified` loads a run
    without that record (with a warning)."""
    token = ckpt.TRUST_UNVERIFIED.set(True) if trust_unverified else None
    try:
        return _load_run(run_dir, checkpoint)
    finally:
        if token is not None:
            ckpt.TRUST_UNVERIFIED.reset(token)


def _load_run(run_dir: str | Path, checkpoint: str) -> LoadedRun:
    rd = _run_path(run_dir)
    if (rd / "cv.json").is_file() and not (rd / checkpoint).exists():
        raise RunDirError(f"{rd} is a cross-validation run: give one of its fold runs ({rd / 'fold_1'} ...), or all of "
                          f"them for their ensemble: plmforge predict {rd}/fold_* --input FILE")
    for needed in ("config.yaml", "task.json", "tokenizer", checkpoint):
        if not (rd / needed).exists():
            raise RunDirError(f"{rd} is not a finished plmforge run: {needed} is missing")
    config = load_run_config(rd)
    meta = json.loads((rd / "task.json").read_text())
    task = TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["task"].items()})
    scaler = LabelScaler(**meta["label_scaler"])
    if (rd / "backbone").is_dir():  # an export: its merged backbone is plmforge's output too
        ckpt.verify_all(rd / "backbone")
    ckpt.verify(rd / checkpoint, (ckpt.WEIGHTS,))  # before anything is built from the run
    backbone = load_run_backbone(config, rd / "tokenizer")
    model = build_model(config, backbone, task)
    ckpt.load_weights(rd / checkpoint, model)
    model.eval()
    if torch.cuda.is_available():
        if getattr(backbone.model, "is_loaded_in_4bit", False):
            model.head.to(next(backbone.model.parameters()).device)  # the 4-bit backbone was placed at load
        else:
            model.cuda()
    return LoadedRun(rd, config, task, scaler, backbone, model)


@dataclass
class PredictionResult:
    """Predictions for some records. Their tables come from the problem type (the main table, and for
    residue tasks `_sequences`: one row per sequence with the predicted labels as a string): `frames`
    builds them in memory, `write` writes them in blocks of proteins (any number of proteins)."""

    records: Records
    predictions: Predictions
    problem: ProblemType
    classes: tuple[str, ...] | None = None  # data.residue_classes
    threshold: float | None = None  # a run's tuned decision threshold

    def iter_frames(self, rows: int = FRAME_ROWS) -> Iterator[dict[str, pd.DataFrame]]:
        preds = self.predictions
        return prediction_frames(self.problem, self.records.ids, self.records.sequences, preds.scores, preds.labels,
                                 self.classes, self.threshold, rows)

    @cached_property
    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables by file suffix ('' is the main table)."""
        whole = next(self.iter_frames(rows=max(len(self.records), 1)), None)
        return whole if whole is not None else self.problem.frames([], [], self.predictions.scores)

    @property
    def table(self) -> pd.DataFrame:
        return self.frames[""]

    def write(self, path: str | Path) -> list[Path]:
        return write_frames(Path(path), self.iter_frames())


@dataclass
class EvaluationResult:
    data: str
    metrics: dict[str, float]
    blob: dict[str, Any]  # what eval_metrics.json holds: metrics, averaging, confusion matrix, ...
    prediction: PredictionResult = field(repr=False)
    task: TaskSpec | None = field(default=None, repr=False)

    def write(self, out_dir: str | Path, plots: bool = True) -> list[Path]:
        """eval_metrics.json/.csv, predictions.csv and (with `plots`) the problem type's plots in plots/
        (confusion matrix, ROC and precision-recall for binary classes, scatter for values)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = write_metrics(self.blob, out, "eval") + self.prediction.write(out / "predictions.csv")
        if plots and self.task is not None:
            preds = self.prediction.predictions
            (out / "plots").mkdir(exist_ok=True)
            written += [out / "plots" / name for name in self.task.problem.plots(
                preds.labels, preds.scores, out / "plots", self.prediction.classes)]
        return written


def _run(run: str | Path | LoadedRun) -> LoadedRun:
    return run if isinstance(run, LoadedRun) else load_run(run)


def _batching(run: LoadedRun, batch_size: int | None, max_tokens: int | None) -> BatchingConfig:
    """The run's batching, or batches of `batch_size` sequences, or a budget of `max_tokens` tokens."""
    b = run.config.batching
    if batch_size is not None and max_tokens is not None:
        raise ConfigError("give a batch size or a token budget, not both")
    if batch_size is not None:
        return dataclasses.replace(b, mode="size", eval_batch_size=batch_size)
    if max_tokens is not None:
        return dataclasses.replace(b, mode="tokens", max_tokens=max_tokens)
    return b


def _input_table(run: LoadedRun, sequences: str | Path | list[str] | dict[str, str],
                 columns: dict[str, str] | None = None) -> tuple[Table, DataConfig]:
    """The input as a table and the data settings to read it with (the file's own columns)."""
    if isinstance(sequences, Path) or (isinstance(sequences, str) and _looks_like_path(sequences)):
        cfg = run.input_columns(sequences, columns)
        return read_file(sequences, cfg.sequence_column), cfg
    cfg = run.config.data
    return sequences_table([sequences] if isinstance(sequences, str) else sequences, cfg.sequence_column,
                           cfg.id_column or "id"), cfg


def _looks_like_path(text: str) -> bool:
    """Amino-acid sequences have no dots or slashes; file names do (and sequences may be too long to be one)."""
    if len(text) < 256 and Path(text).is_file():
        return True
    return "/" in text or "\\" in text or is_table_file(text)


def predict_records(run: LoadedRun, records: Records, batching: BatchingConfig | None = None,
                    precision: str = "fp32", force_precision: bool = False) -> PredictionResult:
    """`precision='bf16'` is refused where the device only emulates bfloat16, unless `force_precision`."""
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    preds = predict_encoded(run.model, run.encode(records), run.task, run.scaler, batching or run.config.batching,
                            run.collator(), precision=precision, force_precision=force_precision)
    return PredictionResult(records, preds, run.task.problem, run.config.data.residue_classes,
                            threshold.read(run.run_dir))


def predict(run: str | Path | LoadedRun, sequences: str | Path | list[str] | dict[str, str], *,
            batch_size: int | None = None, max_tokens: int | None = None, precision: str = "fp32",
            force_precision: bool = False, columns: dict[str, str] | None = None) -> PredictionResult:
    """Predict with a run: `sequences` is a file (CSV/TSV/JSONL/Parquet/FASTA), one sequence, a list
    of sequences or an {id: sequence} dict. Batches follow the run's batching settings. A file is read with
    `columns` (role -> column: sequence, id), else the run's columns, else the ones found in it."""
    loaded = _run(run)
    table, cfg = _input_table(loaded, sequences, columns)
    records = loaded.records(table, with_labels=False, data=cfg)
    _warn_duplicates(records.ids)
    return predict_records(loaded, records, _batching(loaded, batch_size, max_tokens), precision, force_precision)


@dataclass
class StreamedPrediction:
    """What `predict_file` wrote: the files and how many sequences (and chunks) were predicted."""

    files: list[Path]
    sequences: int
    chunks: int


def _warn_duplicates(ids: Any) -> None:
    seen: set[str] = set()
    for ident in ids[:1_000_000]:
        if ident in seen:
            log.warning("the id %r appears more than once in the input: its rows are predicted separately; give "
                        "every sequence its own id to tell them apart", ident)
            return
        seen.add(ident)


def predict_file(run: str | Path | LoadedRun, path: str | Path, out: str | Path, *, batch_size: int | None = None,
                 max_tokens: int | None = None, precision: str = "fp32", force_precision: bool = False,
                 progress: bool = True, columns: dict[str, str] | None = None) -> StreamedPrediction:
    """Predict a file of any size in chunks of rows (plmforge.data.stream), appending each chunk's
    predictions to the output: memory does not grow with the file. The output appears only when every row
    was predicted (written beside it, then renamed): an error names its row, and an earlier output file of
    that name is left as it was. The predictions equal `predict(run, path)`."""
    import os

    from tqdm.auto import tqdm

    from plmforge.data.stream import iter_chunks

    loaded = _run(run)
    batching = _batching(loaded, batch_size, max_tokens)
    counted = {"sequences": 0, "chunks": 0}
    cfg = loaded.input_columns(path, columns)

    def blocks() -> Iterator[dict[str, pd.DataFrame]]:
        with tqdm(total=os.path.getsize(path) if Path(path).is_file() else 0, desc=f"predicting {Path(path).name}",
                  unit="B", unit_scale=True, disable=not progress, mininterval=1.0, delay=1.0) as bar:
            for table in iter_chunks(path, cfg.sequence_column, progress=lambda done, _: bar.update(done - bar.n)):
                result = predict_records(loaded, loaded.records(table, with_labels=False, data=cfg), batching,
                                         precision, force_precision)
                yield from result.iter_frames()
                counted["sequences"] += len(result.records)
                counted["chunks"] += 1
        if not counted["chunks"]:
            raise DataError("no records (the file has a header but no rows)", file=str(path),
                            hint="add sequences to the file")

    files = write_frames(Path(out), blocks())
    return StreamedPrediction(files, counted["sequences"], counted["chunks"])


def predict_ensemble(runs: list[str | Path | LoadedRun], sequences: str | Path | list[str] | dict[str, str], *,
                     batch_size: int | None = None, max_tokens: int | None = None,
                     precision: str = "fp32", force_precision: bool = False,
                     columns: dict[str, str] | None = None) -> PredictionResult:
    """Predict with several runs of the same task and average their probabilities (classes) or values
    (regression); residue tasks average per residue over the residues every run predicted. Each run reads
    the input with its own tokenizer and batching. The members' decision thresholds are not used: the
    ensemble decides at 0.5 (argmax)."""
    loaded = [_run(r) for r in runs]
    if len(loaded) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    first = loaded[0]
    for other in loaded[1:]:
        mine = (other.task.problem_type, other.task.num_labels, other.config.data.residue_classes)
        theirs = (first.task.problem_type, first.task.num_labels, first.config.data.residue_classes)
        if mine != theirs:
            raise ConfigError(f"runs {first.run_dir} and {other.run_dir} predict different things "
                              f"({theirs[0]}, {theirs[1]} labels vs {mine[0]}, {mine[1]} labels): an ensemble "
                              "averages runs of one task")
    results = [predict(r, sequences, batch_size=batch_size, max_tokens=max_tokens, precision=precision,
                       force_precision=force_precision, columns=columns)
               for r in loaded]
    records = results[0].records
    scores = mean_scores([res.predictions.scores for res in results])
    preds = Predictions(scores, None, None)
    log.info("ensemble of %d runs (mean of their %s): %s", len(loaded),
             "values" if first.task.problem.kind.name == "values" else "probabilities",
             ", ".join(str(r.run_dir) for r in loaded))
    return PredictionResult(records, preds, first.task.problem, first.config.data.residue_classes)


def mean_scores(members: list) -> Any:
    if isinstance(members[0], list):  # residue tasks: per protein, over the residues all members predicted
        return [np.mean([m[i][:min(len(x[i]) for x in members)] for m in members], axis=0)
                for i in range(len(members[0]))]
    return np.mean(np.stack([np.asarray(m) for m in members]), axis=0)


def evaluation_file(data: str | Path) -> Path:
    """The labelled file `evaluate` reads: the file itself, or a directory's test file (else its train file)."""
    path = Path(data)
    if path.is_dir():
        files = find_split_files(path)
        path = files.get("test", files["train"])
    return path


def evaluate(run: str | Path | LoadedRun, data: str | Path, *, batch_size: int | None = None,
             max_tokens: int | None = None, precision: str = "fp32", force_precision: bool = False,
             stream: bool | None = None, columns: dict[str, str] | None = None) -> EvaluationResult:
    """Metrics of a run on a labelled file (or a directory's test file, else its train file). Files of
    64 MB or more (or any, with `stream=True`) are read in chunks onto disk, as training's data.storage=disk
    reads them: the metrics equal a whole read, and memory holds the predictions and labels, not the file."""
    loaded = _run(run)
    path = evaluation_file(data)
    records = _labelled(loaded, path, stream, loaded.input_columns(path, columns, with_labels=True))
    result = predict_records(loaded, records, _batching(loaded, batch_size, max_tokens), precision, force_precision)
    preds = result.predictions
    metrics = split_metrics(loaded.task, preds)
    undefined = sorted(k for k, v in metrics.items() if isinstance(v, float) and v != v)
    if undefined:
        present = np.unique(np.asarray(preds.labels)) if preds.labels is not None else []
        why = (f"the file holds one class only ({present[0]})" if len(present) == 1 else
               "the labels do not vary enough")
        log.warning("%s: %s cannot be computed (shown as n/a); evaluate on a file with more than one class",
                    why, ", ".join(undefined))
    blob = metrics_blob(metrics, loaded.task, "eval", len(records), preds.labels, preds.scores, {"data": str(path)},
                        loaded.config.data.residue_classes)
    blob.update(compare(loaded.task, None, preds.labels, preds.scores, loaded.config.output.bootstrap,
                        loaded.config.training.seed, baselines=False))  # intervals (baselines need the run's splits)
    tuned = threshold.read(loaded.run_dir)
    if tuned is not None and preds.labels is not None:
        blob["threshold"] = {"threshold": tuned, "metrics": threshold.metrics_at(
            loaded.task.problem, loaded.task.metrics, preds.labels, preds.scores, tuned)}
    return EvaluationResult(str(path), metrics, blob, result, loaded.task)


def _labelled(run: LoadedRun, path: Path, stream: bool | None, cfg: DataConfig) -> Records:
    """The labelled file's validated records: read whole, or in chunks onto disk (`stream`, default from 64 MB)."""
    from plmforge.data.stream import read_in_chunks

    if not read_in_chunks(path, stream):
        return run.records(read_file(path, cfg.sequence_column), with_labels=True, data=cfg)
    from plmforge.data.bigsplit import read_splits

    splits, notes = read_splits({"evaluation": [(str(path), None)]}, cfg, run.task.problem_type, True,
                                run.backbone.record_fields)
    for note in notes:
        log.warning(note)
    records = splits["evaluation"]
    run.task.problem.check_label_range(records.labels, run.task.num_labels, records.rows, cfg.label_column)
    return records
