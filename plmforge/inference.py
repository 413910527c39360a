"""The one inference loop. Training's validation and test evaluation, `plmforge predict`,
`plmforge evaluate`, the Python API and the benchmarks all call `predict_encoded`, which returns
predictions in the user's units (and the exact loss over the whole split when labels are known).

Batches follow the run's batching settings (a fixed size, or a token budget over length-sorted
sequences); no sample is dropped and results come back in the input order. Under several processes
(accelerate / torchrun) every process predicts its share and the results are gathered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from plmforge.config import BatchingConfig
from plmforge.data.batching import Collator, EncodedSplit, make_batch_sampler
from plmforge.models.task_model import batch_kwargs
from plmforge.precision import check_precision
from plmforge.tasks import LabelScaler, TaskSpec

Forward = Callable[[dict], torch.Tensor]  # a collated batch -> logits


@dataclass
class Predictions:
    """Scores (probabilities, or values in the user's units) and labels in the user's units: arrays
    over the split for sequence tasks, one array per sequence for residue tasks."""

    scores: Any
    labels: Any | None
    loss: float | None

    def __len__(self) -> int:
        return len(self.scores)


def eval_loader(encoded: EncodedSplit, batching: BatchingConfig, collate: Collator, num_workers: int = 0) -> DataLoader:
    """Length-sorted batches of the configured size or token budget, for evaluation and prediction."""
    size = batching.eval_batch_size or 2 * batching.batch_size
    sampler = make_batch_sampler(encoded.lengths, batching.mode, size, batching.max_tokens, seed=0, shuffle=False)
    return DataLoader(encoded, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: _to(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}


@torch.inference_mode()
def predict_encoded(model: torch.nn.Module, encoded: EncodedSplit, task: TaskSpec, scaler: LabelScaler,
                    batching: BatchingConfig, collate: Collator, *, accelerator: Any = None,
                    forward: Forward | None = None, desc: str = "predicting", num_workers: int = 0,
                    precision: str = "fp32", force_precision: bool = False) -> Predictions:
    """`precision='bf16'` runs the model under bfloat16 autocast (CPU or GPU); scores stay float32. It is
    refused where the device only emulates bfloat16 (many times slower), unless `force_precision`."""
    problem = task.problem
    device = next(model.parameters()).device
    check_precision(precision, device, force_precision, f"precision={precision!r}", fix="precision='fp32'",
                    keep="pass force_precision=True")
    model.eval()
    loader = eval_loader(encoded, batching, collate, num_workers)
    main = True
    if accelerator is not None:
        loader, main = accelerator.prepare(loader), accelerator.is_main_process
    run = forward or (lambda batch: model(**batch_kwargs(batch)).logits)
    collected = _Outputs(encoded.lengths, problem)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, mininterval=1.0, disable=not main):
        batch.pop("labels", None)
        if accelerator is None:
            batch = _to(batch, device)
        with autocast:
            logits = run(batch).float().cpu()
        items = [(batch["idx"].cpu(), logits, batch["residue_mask"].cpu() if problem.per_residue else None)]
        if accelerator is not None and accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            items = gather_object(items)  # samples repeated to even out processes overwrite themselves
        for item in items:
            collected.put(*item)
    return predictions_of(collected.done(), encoded, task, scaler)


def predictions_of(outputs: Any, encoded: EncodedSplit, task: TaskSpec, scaler: LabelScaler) -> Predictions:
    """A split's predictions from its model outputs in split order ((N, C) logits for sequences, a list of
    (n_residues, C) for residues): scores and labels in the user's units, the loss when labels are known."""
    problem = task.problem
    targets = problem.eval_targets(encoded.labels, encoded.special) if encoded.labels is not None else None
    loss = None if targets is None else problem.split_loss(outputs, targets)
    labels = None if targets is None else problem.user_targets(targets, scaler)
    return Predictions(problem.split_scores(outputs, scaler), labels, loss)


class _Outputs:
    """The samples' outputs, written into one buffer allocated once: (N, C) for sequences; for residue
    tasks (tokens, C) rows, each sample's residues at its own offset (a view per sample). Keeping a small
    tensor per batch or per sample instead pins the heap between the batches' large temporaries (glibc
    then cannot give it back): 440 batches of 455 sequences grew the process by 180 MB."""

    def __init__(self, lengths: np.ndarray, problem: Any) -> None:
        self.n, self.per_residue, self.problem = len(lengths), problem.per_residue, problem
        self.starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.counts = np.zeros(self.n, dtype=np.int64)
        self.seen = torch.zeros(self.n, dtype=torch.bool)
        self.buffer: torch.Tensor | None = None

    def put(self, idx: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor | None) -> None:
        if self.buffer is None:
            rows = int(self.starts[-1]) if self.per_residue else self.n
            self.buffer = torch.empty((rows, *logits.shape[(2 if self.per_residue else 1):]), dtype=logits.dtype)
        if mask is None:
            self.buffer[idx] = logits
        else:
            for b, i in enumerate(idx.tolist()):
                rows = self.problem.sample_output(logits[b], mask[b])
                self.buffer[self.starts[i]:self.starts[i] + len(rows)] = rows
                self.counts[i] = len(rows)
        self.seen[idx] = True

    def done(self) -> Any:
        """(N, C) for sequences, a list of (n_residues, C) views for residues."""
        missing = self.n - int(self.seen.sum())
        if missing:
            raise RuntimeError(f"prediction missed {missing} of {self.n} samples")
        if self.buffer is None:
            return []
        if not self.per_residue:
            return self.buffer
        return [self.buffer[a:a + k] for a, k in zip(self.starts[:-1].tolist(), self.counts.tolist(), strict=True)]


def split_metrics(task: TaskSpec, preds: Predictions) -> dict[str, float]:
    """The task's metrics (with the loss first) for predictions that have labels."""
    metrics = task.problem.metrics(task.metrics, preds.labels, preds.scores) if preds.labels is not None else {}
    return metrics if preds.loss is None else {"loss": preds.loss, **metrics}
