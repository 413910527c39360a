"""The instruction model's run config: the same YAML + `section.key=value` conventions as `plmforge
train`, in four sections (model, lora, data, training); `training` maps onto HuggingFace
TrainingArguments (see `training_arguments`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from plmforge.checks import fraction, one_of, positive
from plmforge.config import apply_overrides, read_config_file, section_kwargs
from plmforge.errors import ConfigError, did_you_mean

TASKS = ("referring_desc", "referring_class", "grounding_single", "grounding_group", "description")
DTYPES = ("float32", "bfloat16", "float16")
STAGES = ("instruct", "align", "align+instruct")


@dataclass(frozen=True)
class InstructModelConfig:
    """Encoder -> modality adapter -> decoder, with a fragment adapter (Perceiver resampler)."""

    encoder: str = "antiberty"  # any zoo model, local directory or hub id that `plmforge train` takes
    decoder: str = ""  # a HuggingFace causal LM (id or local directory), LLaMA family first
    train_encoder: bool = False  # default: the encoder is frozen
    adapter_hidden: int = 2048  # the modality adapter's intermediate size
    perceiver_latents: int = 1  # fragment tokens spliced into the prompt per referenced fragment
    perceiver_layers: int = 2
    perceiver_heads: int = 8
    max_sequence_length: int = 1021  # residues; longer proteins are cropped around the referenced fragment
    dtype: str = "float32"  # weights of the decoder (and encoder): float32, bfloat16, float16
    trust_remote_code: bool = False
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"dtype": DTYPES}

    def __post_init__(self) -> None:
        if not self.decoder:
            raise ConfigError("model.decoder must name a causal language model (HuggingFace id or local directory)")
        for key in ("adapter_hidden", "perceiver_latents", "perceiver_layers", "perceiver_heads",
                    "max_sequence_length"):
            positive(f"model.{key}", getattr(self, key))
        one_of("model.dtype", self.dtype, DTYPES)


@dataclass(frozen=True)
class InstructLoraConfig:
    rank: int = 32
    alpha: int = 64
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        positive("lora.rank", self.rank)
        positive("lora.alpha", self.alpha)
        fraction("lora.dropout", self.dropout)
        if not self.target_modules:
            raise ConfigError("lora.target_modules must name at least one module")


@dataclass(frozen=True)
class InstructDataConfig:
    """JSON, JSONL or CSV files with the fields sequence, conversation (or question), answer,
    position_ref, position_grd, start and optionally task."""

    train: str = ""
    validation: str | None = None
    test: str | None = None
    task: str = "referring_desc"  # used for records without a `task` field
    max_samples: int | None = None  # per split, for quick trials
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"task": TASKS}

    def __post_init__(self) -> None:
        if not self.train:
            raise ConfigError("data.train must name the training file (JSON, JSONL or CSV)")
        one_of("data.task", self.task, TASKS)
        if self.max_samples is not None:
            positive("data.max_samples", self.max_samples)


@dataclass(frozen=True)
class InstructTrainingConfig:
    """HuggingFace TrainingArguments by their own names, plus the stage selection."""

    output_dir: str = "runs/instruct"
    overwrite_output_dir: bool = False
    stage: str = "instruct"  # align (adapter only, InfoNCE), instruct (LoRA + adapters), or align+instruct
    align_epochs: float = 1.0
    align_temperature: float = 0.07
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_steps: int = 500
    eval_steps: int | None = None
    save_total_limit: int | None = 2
    logging_steps: int = 10
    bf16: bool = False
    fp16: bool = False
    force_precision: bool = False  # keep bf16 (training.bf16, model.dtype) where the device only emulates it
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    seed: int = 42
    max_grad_norm: float = 1.0
    report_to: tuple[str, ...] = ()
    resume_from_checkpoint: str | None = None  # a checkpoint-N directory, or "last" for the newest one
    max_new_tokens: int = 64  # generation when evaluating
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"stage": STAGES, "eval_strategy": ("no", "steps", "epoch"),
                                                     "save_strategy": ("no", "steps", "epoch")}

    def __post_init__(self) -> None:
        for key in ("eval_strategy", "save_strategy"):  # YAML reads a bare `no` as false
            if getattr(self, key) in ("False", "false"):
                object.__setattr__(self, key, "no")
        one_of("training.stage", self.stage, STAGES)
        one_of("training.eval_strategy", self.eval_strategy, self.CHOICES["eval_strategy"])
        one_of("training.save_strategy", self.save_strategy, self.CHOICES["save_strategy"])
        if self.bf16 and self.fp16:
            raise ConfigError("training.bf16 and training.fp16 exclude each other")
        positive("training.per_device_train_batch_size", self.per_device_train_batch_size)
        positive("training.gradient_accumulation_steps", self.gradient_accumulation_steps)
        positive("training.learning_rate", self.learning_rate)
        positive("training.align_temperature", self.align_temperature)
        positive("training.max_new_tokens", self.max_new_tokens)
        fraction("training.warmup_ratio", self.warmup_ratio)
        if self.warmup_ratio and self.warmup_steps:
            raise ConfigError("set training.warmup_ratio or training.warmup_steps, not both")


@dataclass(frozen=True)
class InstructConfig:
    model: InstructModelConfig
    data: InstructDataConfig
    lora: InstructLoraConfig = field(default_factory=InstructLoraConfig)
    training: InstructTrainingConfig = field(default_factory=InstructTrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {f.name: {k: plain(v) for k, v in dataclasses.asdict(getattr(self, f.name)).items()}
                for f in fields(self)}


SECTIONS = {"model": InstructModelConfig, "data": InstructDataConfig, "lora": InstructLoraConfig,
            "training": InstructTrainingConfig}
PATHS = {("data", "train"), ("data", "validation"), ("data", "test"), ("model", "encoder"), ("model", "decoder")}


def instruct_config_from_dict(raw: dict[str, Any]) -> InstructConfig:
    if not isinstance(raw, dict):
        raise ConfigError("an instruct config must be a mapping of sections (model, lora, data, training)")
    built = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}{did_you_mean(name, SECTIONS)}; sections are "
                              + ", ".join(SECTIONS))
        if not isinstance(values or {}, dict):
            raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}")
        built[name] = SECTIONS[name](**section_kwargs(name, SECTIONS[name], values or {}, None))
    for needed in ("model", "data"):
        if needed not in built:
            raise ConfigError(f"the instruct config has no {needed!r} section "
                              f"({'model.decoder' if needed == 'model' else 'data.train'} is required)")
    return InstructConfig(**built)


def load_instruct_config(path: str | Path | None, overrides: list[str] | None = None) -> InstructConfig:
    """Read a YAML config (optional; relative paths in it are relative to the file) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_config_file(path)
        base = Path(path).resolve().parent
        for (section, key) in PATHS:
            value = (raw.get(section) or {}).get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
                raw[section][key] = str((base / value).resolve())
    return instruct_config_from_dict(apply_overrides(raw, overrides))


def check_training_precision(cfg: InstructTrainingConfig) -> None:
    """training.fp16 needs a CUDA GPU; training.bf16 is refused where the device only emulates bfloat16
    (many times slower), unless training.force_precision."""
    import torch

    from plmforge.precision import check_precision, default_device

    gpu = torch.cuda.is_available()
    if cfg.fp16 and not gpu:
        raise ConfigError("training.fp16 needs a CUDA GPU; on a CPU use neither, or training.bf16=true where the CPU "
                          "has native bfloat16")
    check_precision("bf16" if cfg.bf16 else None, default_device(), cfg.force_precision, "training.bf16=true",
                    fix="training.bf16=false (float32)" + (" or training.fp16=true" if gpu else ""),
                    keep="set training.force_precision=true")


def training_arguments(cfg: InstructTrainingConfig, output_dir: str | Path, *, stage_epochs: float | None = None,
                       has_eval: bool = True, max_steps: int | None = None) -> Any:
    """TrainingArguments from the config: every standard argument by its own name; bf16/fp16 only where
    the device supports them (a clear error otherwise)."""
    import torch
    from transformers import TrainingArguments

    check_training_precision(cfg)
    eval_strategy = cfg.eval_strategy if has_eval else "no"
    return TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=stage_epochs if stage_epochs is not None else cfg.num_train_epochs,
        max_steps=cfg.max_steps if max_steps is None else max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio if cfg.warmup_ratio else cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type, eval_strategy=eval_strategy, save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps, eval_steps=cfg.eval_steps, save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps, bf16=cfg.bf16, fp16=cfg.fp16,
        gradient_checkpointing=False,  # applied to the decoder by the model (the wrapper is not a PreTrainedModel)
        dataloader_num_workers=cfg.dataloader_num_workers, seed=cfg.seed, data_seed=cfg.seed,
        max_grad_norm=cfg.max_grad_norm, report_to=list(cfg.report_to) or "none", remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False)
