"""In-memory cache of frozen-backbone outputs, so the backbone runs once per sample, not once per epoch.

A frozen backbone runs in eval mode without gradients, so its output for a sequence is fixed; the
cache stores it trimmed to the sequence's real length and re-pads it for whatever batch the sample
lands in. A budget in MB bounds memory: past it, batches are computed as usual."""

from __future__ import annotations

import torch


class EmbeddingCache:
    def __init__(self, max_mb: int) -> None:
        self.max_bytes = max_mb * 1024 * 1024
        self.used = 0
        self.store: dict[tuple[str, int], torch.Tensor] = {}
        self.full_warned = False

    def hidden(self, split: str, batch: dict[str, torch.Tensor], encode) -> torch.Tensor:  # type: ignore[no-untyped-def]
        """Backbone output (B, L, H) for the batch, from the cache where every sample is in it."""
        keys = [(split, int(i)) for i in batch["idx"]]
        if all(k in self.store for k in keys):
            return self._pad([self.store[k] for k in keys], batch["attention_mask"])
        hidden = encode(batch["inputs"], batch["attention_mask"])  # (B, L, H)
        lengths = batch["attention_mask"].sum(1).tolist()
        for k, row, n in zip(keys, hidden, lengths, strict=True):
            if k in self.store:
                continue
            item = row[:n].detach().to("cpu", copy=True)
            size = item.numel() * item.element_size()
            if self.used + size > self.max_bytes:
                self.full_warned = True
                continue
            self.store[k] = item
            self.used += size
        return hidden

    @staticmethod
    def _pad(items: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        width = attention_mask.shape[1]
        out = items[0].new_zeros((len(items), width, items[0].shape[-1]))  # (B, L, H)
        for row, item in enumerate(items):
            out[row, : item.shape[0]] = item
        return out.to(attention_mask.device)
