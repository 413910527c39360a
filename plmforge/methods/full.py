"""`full`: every backbone parameter trains together with the head."""

from __future__ import annotations

from plmforge.methods import MethodSpec, NoOptions, register_method


def apply(model, options: NoOptions) -> None:  # type: ignore[no-untyped-def]
    for p in model.parameters():
        p.requires_grad_(True)
    model.backbone_frozen = False


register_method(MethodSpec("full", "train all backbone and head parameters", NoOptions, apply,
                           frozen_backbone=False))
