"""`freeze`: the backbone is a fixed feature extractor; only the head trains.

Its forward runs without gradients and in eval mode, so its outputs are deterministic and the
trainer can compute them once and reuse them every epoch (see train/embedding_cache.py)."""

from __future__ import annotations

from plmforge.methods import CacheOptions, MethodSpec, register_method


def apply(model, options: CacheOptions) -> None:  # type: ignore[no-untyped-def]
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    model.backbone_frozen = True


register_method(MethodSpec("freeze", "train the head only; backbone frozen (fast, cacheable)", CacheOptions, apply,
                           frozen_backbone=True))
