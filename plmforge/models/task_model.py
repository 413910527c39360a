"""The task model: backbone encoder + prediction head + the problem type's loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from plmforge.data.residue import IGNORE
from plmforge.tasks import base_type


@dataclass
class TaskOutput:
    logits: torch.Tensor  # (B, num_outputs)
    loss: torch.Tensor | None = None


class TaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, problem_type: str, num_outputs: int,
                 family: Any = None) -> None:
        super().__init__()
        self.family = family  # models.zoo.Family: default adapter targets etc.
        self.backbone = backbone
        self.head = head
        self.problem_type = problem_type
        self.num_outputs = num_outputs
        self.backbone_frozen = False  # set by methods that train no backbone weight

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()  # a frozen backbone is a fixed feature extractor: no dropout
        return self

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Backbone hidden states (B, L, H)."""
        if self.backbone_frozen:
            with torch.no_grad():
                return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(
        self,
        residue_mask: torch.Tensor,  # (B, L) bool: residue tokens (no padding, no special tokens)
        input_ids: torch.Tensor | None = None,  # (B, L)
        attention_mask: torch.Tensor | None = None,  # (B, L)
        hidden: torch.Tensor | None = None,  # (B, L, H) precomputed backbone output (frozen backbone)
        labels: torch.Tensor | None = None,
    ) -> TaskOutput:
        if hidden is None:
            assert input_ids is not None and attention_mask is not None
            hidden = self.encode(input_ids, attention_mask)
        logits = self.head(hidden.to(next(self.head.parameters()).dtype), residue_mask)  # (B, out)
        loss = None if labels is None else self.loss(logits, labels)
        return TaskOutput(logits=logits, loss=loss)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sequence tasks: logits (B, C). Residue tasks: logits (B, L, C) with labels (B, L[, C]) that
        hold IGNORE (classes) or NaN (values) at special, padding and masked positions."""
        kind = base_type(self.problem_type)
        logits = logits.float()
        if kind == "single_label_classification":
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.long().reshape(-1), ignore_index=IGNORE)
        if kind == "multi_label_classification":
            keep = ~torch.isnan(labels)
            return F.binary_cross_entropy_with_logits(logits[keep], labels[keep].float())
        values = logits.squeeze(-1)
        keep = ~torch.isnan(labels)
        return F.mse_loss(values[keep], labels[keep].float())

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities for classification, the raw (normalised) value for regression."""
        kind = base_type(self.problem_type)
        if kind == "single_label_classification":
            return torch.softmax(logits.float(), dim=-1)
        if kind == "multi_label_classification":
            return torch.sigmoid(logits.float())
        return logits.float().squeeze(-1)


def _numel(p: torch.Tensor) -> int:
    # bitsandbytes packs two 4-bit weights per stored byte
    return p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()


def count_parameters(model: nn.Module) -> dict[str, float]:
    total = sum(_numel(p) for p in model.parameters())
    trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_percent": round(100.0 * trainable / max(total, 1), 4)}
