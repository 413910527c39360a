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

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from plmforge.config import BatchingConfig
from plmforge.data.batching import Collator, EncodedSplit, make_batch_sampler
from plmforge.models.task_model import batch_kwargs
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
                    precision: str = "fp32") -> Predictions:
    """`precision='bf16'` runs the model under bfloat16 autocast (CPU or GPU); scores stay float32."""
    problem = task.problem
    model.eval()
    loader = eval_loader(encoded, batching, collate, num_workers)
    main = True
    if accelerator is not None:
        loader, main = accelerator.prepare(loader), accelerator.is_main_process
    device = next(model.parameters()).device
    run = forward or (lambda batch: model(**batch_kwargs(batch)).logits)
    found: dict[int, torch.Tensor] = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, mininterval=1.0, disable=not main):
        batch.pop("labels", None)
        if accelerator is None:
            batch = _to(batch, device)
        with autocast:
            logits = run(batch).float().cpu()
        mask = batch["residue_mask"].cpu()
        items = [(int(i), problem.sample_output(logits[b], mask[b])) for b, i in enumerate(batch["idx"].cpu())]
        if accelerator is not None and accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            items = gather_object(items)  # samples repeated to even out processes overwrite themselves
        found.update(items)
    if len(found) != len(encoded):
        raise RuntimeError(f"prediction missed {len(encoded) - len(found)} of {len(encoded)} samples")
    outputs = [found[i] for i in range(len(encoded))]
    targets = problem.eval_targets(encoded.labels, encoded.special) if encoded.labels is not None else None
    loss = None if targets is None else problem.split_loss(outputs, targets)
    labels = None if targets is None else problem.user_targets(targets, scaler)
    return Predictions(problem.split_scores(outputs, scaler), labels, loss)


def split_metrics(task: TaskSpec, preds: Predictions) -> dict[str, float]:
    """The task's metrics (with the loss first) for predictions that have labels."""
    metrics = task.problem.metrics(task.metrics, preds.labels, preds.scores) if preds.labels is not None else {}
    return metrics if preds.loss is None else {"loss": preds.loss, **metrics}
