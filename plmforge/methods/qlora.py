"""`qlora`: LoRA on a backbone whose linear weights are stored in 4 bits (NF4 by default) with
bitsandbytes (Dettmers et al. 2023). Where bitsandbytes cannot quantise on this device, the run stops
before training and says so — it never falls back to unquantised LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plmforge.checks import one_of
from plmforge.errors import ConfigError
from plmforge.methods import MethodSpec, register_method
from plmforge.methods.peft_common import LoraOptions, lora_kwargs, targets_for, wrap


@dataclass(frozen=True)
class QLoraOptions(LoraOptions):
    quant_type: str = "nf4"  # 4-bit data type: nf4 or fp4
    double_quant: bool = True  # quantise the quantisation constants too
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"quant_type": ("nf4", "fp4")}

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("method.quant_type", self.quant_type, self.CHOICES["quant_type"])


def check_quantisation(quant_type: str = "nf4") -> None:
    """Quantise and run one small layer on the device training will use; a clear error if that fails."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        import bitsandbytes  # noqa: F401
        from bitsandbytes.nn import Linear4bit
    except ImportError as exc:
        raise ConfigError(f"method qlora needs bitsandbytes ({exc}); install it with pip install bitsandbytes, "
                          "or use method.name=lora (same adapters, unquantised backbone)") from None
    try:
        layer = Linear4bit(16, 8, quant_type=quant_type, compute_dtype=torch.float32)
        layer.load_state_dict(torch.nn.Linear(16, 8).state_dict())
        layer = layer.to(device)
        layer(torch.randn(2, 16, device=device))
    except Exception as exc:  # bitsandbytes raises many kinds of errors for unsupported devices
        raise ConfigError(f"the installed bitsandbytes cannot quantise to 4 bits on {device} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          "use method.name=lora instead (same adapters, unquantised backbone)") from None


def backbone_kwargs(cfg) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from transformers import BitsAndBytesConfig

    check_quantisation(cfg.quant_type)
    if torch.cuda.is_available():
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        device_map: Any = {"": torch.cuda.current_device()}
    else:
        compute, device_map = torch.float32, {"": "cpu"}
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type,
                               bnb_4bit_use_double_quant=cfg.double_quant, bnb_4bit_compute_dtype=compute)
    return {"quantization_config": quant, "device_map": device_map}


def single_kernel(backbone: torch.nn.Module) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer for a faster bf16 inference kernel the
    first time it runs in eval mode, and training then continues on the repacked weights: results would
    depend on when evaluation happened (and a resumed run would differ). Keep one kernel throughout."""
    for module in backbone.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def apply(model, cfg) -> None:  # type: ignore[no-untyped-def]
    from peft import LoraConfig, prepare_model_for_kbit_training

    if not getattr(model.backbone, "is_loaded_in_4bit", False):
        raise ConfigError("method qlora needs the backbone loaded in 4 bits; it was not (internal error)")
    targets = targets_for(model, cfg.target_modules, model.family.lora_targets, "method.target_modules")
    model.backbone = prepare_model_for_kbit_training(model.backbone, use_gradient_checkpointing=False)
    single_kernel(model.backbone)
    wrap(model, LoraConfig(**lora_kwargs(cfg, targets)))


register_method(MethodSpec("qlora", "low-rank adapters on a 4-bit quantised backbone (bitsandbytes + peft)",
                           QLoraOptions, apply, frozen_backbone=False, uses_peft=True, mergeable=False,
                           backbone_kwargs=backbone_kwargs))
