"""The task model: backbone encoder + prediction head + the problem type's loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from plmforge.tasks import ProblemType


@dataclass
class TaskOutput:
    logits: torch.Tensor  # (B, C) per sequence, or (B, L, C) per residue
    loss: torch.Tensor | None = None


class TaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, problem: ProblemType, num_outputs: int,
                 family: Any = None, hidden_size: int | None = None) -> None:
        super().__init__()
        self.family = family  # models.families.Family: default adapter targets etc.
        self.hidden_size = hidden_size
        self.backbone = backbone
        # a method's module between the backbone's residue states and the head (e.g. the SES-Adapter),
        # fed by the named inputs in `adapter_inputs` (which the backbone never sees)
        self.adapter: nn.Module | None = None
        self.adapter_inputs: tuple[str, ...] = ()
        self.head = head
        self.problem = problem
        self.num_outputs = num_outputs
        self.backbone_frozen = False  # set by methods that train no backbone weight
        self.objective: Any = None  # a training loss other than the problem type's (class weights, focal)

    @property
    def _no_split_modules(self) -> list[str]:
        """The backbone's layer classes, which FSDP shards as units (accelerate's transformer wrap
        policy reads this, so one recipe serves every family); only classes this model really has."""
        inner = self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone
        present = {type(m).__name__ for m in inner.modules()}
        return [name for name in getattr(inner, "_no_split_modules", None) or [] if name in present]

    def train(self, mode: bool = True) -> TaskModel:
        if not self.backbone_frozen:
            return super().train(mode)
        # a frozen backbone is a fixed feature extractor: always in eval mode (no dropout). Its mode is set
        # only when something switched it, not at every epoch's train/eval switch (a walk of every module)
        self.training = mode
        for child in self.children():
            if child is not self.backbone:
                child.train(mode)
        if any(m.training for m in self.backbone.modules()):
            self.backbone.eval()
        return self

    def encode(self, inputs: dict[str, torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        """Backbone hidden states (B, L, H) from the named inputs (each (B, L)); inputs meant for the
        adapter are left out."""
        if self.adapter_inputs:
            inputs = {k: v for k, v in inputs.items() if k not in self.adapter_inputs}
        if self.backbone_frozen:
            with torch.no_grad():
                return self.backbone(**inputs, attention_mask=attention_mask).last_hidden_state
        return self.backbone(**inputs, attention_mask=attention_mask).last_hidden_state

    def forward(
        self,
        residue_mask: torch.Tensor,  # (B, L) bool: residue tokens (no padding, no special tokens)
        inputs: dict[str, torch.Tensor] | None = None,  # named (B, L) inputs, e.g. input_ids
        attention_mask: torch.Tensor | None = None,  # (B, L)
        hidden: torch.Tensor | None = None,  # (B, L, H) precomputed backbone output (frozen backbone)
        labels: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,  # (B, H) precomputed pooled vectors, for heads that start from them
    ) -> TaskOutput:
        if pooled is not None:
            if self.adapter is not None:
                raise ValueError("pooled vectors cannot feed a model with an adapter on residue states")
            logits = self.head.from_pooled(pooled.to(next(self.head.parameters()).dtype))
            return TaskOutput(logits=logits, loss=None if labels is None else self._loss(logits, labels))
        if hidden is None:
            if inputs is None or attention_mask is None:
                raise ValueError("TaskModel needs the named inputs and attention_mask, or precomputed hidden states")
            hidden = self.encode(inputs, attention_mask)
        if self.adapter is not None:
            if inputs is None:
                raise ValueError("the adapter needs its named inputs: " + ", ".join(self.adapter_inputs))
            hidden = self.adapter(hidden.to(next(self.adapter.parameters()).dtype),
                                  {k: inputs[k] for k in self.adapter_inputs}, residue_mask)
        logits = self.head(hidden.to(next(self.head.parameters()).dtype), residue_mask)
        loss = None if labels is None else self._loss(logits, labels)
        return TaskOutput(logits=logits, loss=loss)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.objective or self.problem.loss)(logits, labels)

    def loss_units(self, labels: torch.Tensor) -> float:
        """What the training loss averages over in `labels` (micro-batches are weighted by it)."""
        return (self.objective or self.problem).loss_units(labels)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities for classification, the raw (normalised) value for regression."""
        return self.problem.scores(logits)


def batch_kwargs(batch: dict) -> dict[str, Any]:
    """The model's keyword arguments from a collated batch (labels excluded)."""
    return {"residue_mask": batch["residue_mask"], "inputs": batch["inputs"], "attention_mask": batch["attention_mask"]}


def _numel(p: torch.Tensor) -> int:
    # bitsandbytes packs two 4-bit weights per stored byte
    return p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()


def count_parameters(model: nn.Module) -> dict[str, float]:
    total = sum(_numel(p) for p in model.parameters())
    trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_percent": round(100.0 * trainable / max(total, 1), 4)}
