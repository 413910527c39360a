"""Run configuration: one frozen dataclass per concern, validated at construction.

A config comes from a YAML file, `key=value` overrides, or both; defaults live here only.
The resolved config is saved with every run and can be re-run as is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from plmforge.checks import fraction, positive
from plmforge.config_text import (apply_overrides, coerce_value, config_to_override_text, read_config_file,
                                  resolve_path)
from plmforge.errors import ConfigError, RunDirError, choice_error, did_you_mean
from plmforge.heads import HEADS
from plmforge.methods import METHODS
from plmforge.metrics import METRICS
from plmforge.tasks import PROBLEM_TYPES

NORMALISATIONS = ("none", "standard", "min_max")
BATCHING_MODES = ("size", "tokens")
SCHEDULERS = ("linear", "cosine", "step", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")
THRESHOLD_METRICS = ("mcc", "f1", "none")
DIRECTIONS = ("max", "min")
ATTENTION = ("sdpa", "eager")
TRACKERS = ("wandb", "tensorboard")
WANDB_MODES = ("offline", "online", "disabled")
LABEL_FORMATS = ("values", "positions")
STORAGE = ("auto", "memory", "disk")  # where the validated, tokenised splits are kept while training
# Each section's CHOICES names the allowed values of its fields (tuples, or registries read when asked):
# validation here and the web UI's dropdowns read the same lists.


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how to read its labels."""

    dataset: str | None = None  # catalogue name, local dir/file, or HuggingFace hub id
    train: str | None = None  # an explicit training file (with validation/test: the splits as given)
    validation: str | None = None  # None: carved from the training data (validation_fraction)
    test: str | None = None  # None: carved from the training data (test_fraction)
    sequence_column: str | None = None  # None: the column of protein sequences, found in the training file
    label_column: str | None = None  # None: the label column and its problem type, found in the training file
    id_column: str | None = None  # None: an id column found in the file, else row numbers
    problem_type: str | None = None  # filled from the catalogue, else required
    num_labels: int | None = None  # None: counted from the training labels
    label_normalisation: str | None = None  # regression: default 'standard'
    validation_fraction: float = 0.1  # with no validation file: this fraction of the training data validates
    test_fraction: float = 0.1  # with no test split: this fraction of the training data is held out as test (0 = none)
    max_samples: int | None = None  # per split, for quick experiments
    # low-N: a random subset (seeded by training.seed) of this many training samples; a validation split carved
    # from the training data is carved from them (plmforge train --few-shot sets it per run)
    train_samples: int | None = None
    train_draw: int = 0  # which random subset of data.train_samples (a few-shot curve's repeats draw 0, 1, 2, ...)
    residue_classes: tuple[str, ...] | None = None  # residue tasks: label symbols in class order, e.g. N,P
    label_format: str = "values"  # residue tasks: 'values' (one per residue) or 'positions' (1-based, =1)
    mask_column: str | None = None  # residue tasks: 0/1 per residue, 0 = ignore
    group_column: str | None = None  # e.g. a sequence-cluster id: a group never straddles train and validation
    # variants given as mutants of one wild type (deep mutational scans): the column of mutant notation (A42G,
    # A42G:K50R) and the wild type (the sequence or a FASTA file); each row's sequence is the wild type with its
    # substitutions, whose wild-type letters are checked
    mutant_column: str | None = None
    wild_type: str | None = None  # with mutant_column: the wild-type sequence or a FASTA file holding it
    # 'disk': splits read in chunks into files on disk, read back row by row (memory does not grow with the residues);
    # 'auto': on disk when the local split files reach 64 MB
    storage: str = "auto"
    CHOICES: ClassVar[dict[str, Any]] = {"problem_type": PROBLEM_TYPES, "label_normalisation": NORMALISATIONS,
                                         "label_format": LABEL_FORMATS, "storage": STORAGE}

    def __post_init__(self) -> None:
        if self.dataset is None and self.train is None:
            raise ConfigError("data.dataset or data.train must be set (a catalogue name, a path or a hub id)")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise choice_error("data.problem_type", self.problem_type, PROBLEM_TYPES)
        if self.num_labels is not None:
            positive("data.num_labels", self.num_labels)
        if self.label_normalisation is not None and self.label_normalisation not in NORMALISATIONS:
            raise choice_error("data.label_normalisation", self.label_normalisation, NORMALISATIONS)
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"data.validation_fraction must be between 0 and 1, got {self.validation_fraction!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be at least 0 and below 1, got {self.test_fraction!r}")
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise ConfigError(f"data.test_fraction ({self.test_fraction}) + data.validation_fraction "
                              f"({self.validation_fraction}) must leave rows to train on: make them smaller")
        if self.max_samples is not None:
            positive("data.max_samples", self.max_samples)
        if self.train_draw < 0:
            raise ConfigError(f"data.train_draw must be 0 or more, got {self.train_draw!r}")
        if self.train_samples is not None and self.train_samples < 2:
            raise ConfigError(f"data.train_samples must be at least 2, got {self.train_samples!r}")
        if self.label_format not in LABEL_FORMATS:
            raise choice_error("data.label_format", self.label_format, LABEL_FORMATS)
        if self.storage not in STORAGE:
            raise choice_error("data.storage", self.storage, STORAGE)
        if (self.mutant_column is None) != (self.wild_type is None):
            given, missing = ("data.mutant_column", "data.wild_type") if self.mutant_column else \
                ("data.wild_type", "data.mutant_column")
            raise ConfigError(f"{given} needs {missing}: variants in mutant notation (A42G) are read against a wild "
                              "type (data.wild_type=SEQUENCE or a FASTA file, data.mutant_column=mutant)")
        if self.mutant_column is not None and self.sequence_column not in (None, self.mutant_column):
            raise ConfigError(f"data.mutant_column={self.mutant_column} gives each row's sequence (the wild type with "
                              f"its substitutions): drop data.sequence_column={self.sequence_column}")
        if self.residue_classes is not None and len(set(self.residue_classes)) != len(self.residue_classes):
            raise ConfigError(f"data.residue_classes repeats a symbol: {','.join(self.residue_classes)}")


@dataclass(frozen=True)
class ModelConfig:
    """Which protein language model to start from."""

    name: str = "antiberty"  # zoo name, HuggingFace id or local directory
    max_length: int | None = None  # residues; None = the model's limit
    trust_remote_code: bool = False  # allow models whose code lives in their own repository (ProSST)
    # recompute activations in the backward pass instead of keeping them; None = the memory plan decides (training
    # the backbone: on, for every k-th layer, when the largest batch's activations would not fit the activation
    # budget even in micro-batches; a frozen backbone: off)
    gradient_checkpointing: bool | None = None
    checkpoint_every: int | None = None  # recompute every Nth encoder layer (1 = all); None = 1, or the plan's choice
    activation_budget_mb: float | None = None  # the memory plan's ceiling for activations; None = half the free memory
    attention: str = "sdpa"  # PyTorch scaled-dot-product attention, or the model's 'eager' implementation
    # dropout on attention weights while training; None = the checkpoint's own value. Above 0, PyTorch's
    # SDPA falls back to its unfused kernel (every heads x L x L matrix kept for the backward pass)
    attention_dropout: float | None = None
    # dropout masks on a CPU from a counter-based hash instead of torch's one-thread generator: the same
    # Bernoulli masks from another random stream, about 3x faster (a LoRA step on AntiBERTy: 31 % faster)
    fast_dropout: bool = True
    CHOICES: ClassVar[dict[str, Any]] = {"attention": ATTENTION}

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model.name must not be empty")
        if self.attention not in ATTENTION:
            raise choice_error("model.attention", self.attention, ATTENTION)
        if self.max_length is not None:
            positive("model.max_length", self.max_length)
        if self.checkpoint_every is not None:
            positive("model.checkpoint_every", self.checkpoint_every)
        if self.activation_budget_mb is not None:
            positive("model.activation_budget_mb", self.activation_budget_mb)
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ConfigError(f"model.attention_dropout must be in [0, 1), got {self.attention_dropout!r}")


@dataclass(frozen=True)
class MethodConfig:
    """How the backbone is fine-tuned: a registered method and its own options (written flat in YAML
    and overrides, e.g. `method.rank=4`; each method's option class says which keys it takes)."""

    name: str = "freeze"
    options: Any = None  # the method's option dataclass; None = its defaults

    def __post_init__(self) -> None:
        spec = METHODS.lookup(self.name, "method.name")
        if self.options is None:
            object.__setattr__(self, "options", spec.options())
        elif not isinstance(self.options, spec.options):
            raise ConfigError(f"method {self.name!r} takes {spec.options.__name__}, got {type(self.options).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self.options)}


@dataclass(frozen=True)
class HeadConfig:
    """The prediction head on top of the backbone."""

    pooling: str | None = None  # None = the problem type's default (mean, or the per-residue head)
    dropout: float = 0.1  # dropout before each layer of the head's MLP
    hidden_size: int | None = None  # None = backbone hidden size
    CHOICES: ClassVar[dict[str, Any]] = {"pooling": HEADS}

    def __post_init__(self) -> None:
        if self.pooling is not None:
            HEADS.lookup(self.pooling, "head.pooling")
        fraction("head.dropout", self.dropout)
        if self.hidden_size is not None:
            positive("head.hidden_size", self.hidden_size)


@dataclass(frozen=True)
class BatchingConfig:
    """Fixed batch size, or a token budget with length-bucketed batches."""

    mode: str = "size"
    batch_size: int = 16  # sequences per training batch (batching.mode=size)
    max_tokens: int = 10_000  # padded tokens per training batch (batching.mode=tokens)
    eval_batch_size: int | None = None  # None = 2 x batch_size
    # a training batch above this many padded tokens runs as length-sorted micro-batches within one optimizer
    # step (gradients accumulated, each part's loss weighted by its share: the step's loss is the batch's);
    # None = the memory plan decides (one process on a CPU: parts of at most 512 tokens, fewer when the activation
    # budget asks; elsewhere whole batches), 0 = never split
    micro_batch_tokens: int | None = None
    CHOICES: ClassVar[dict[str, Any]] = {"mode": BATCHING_MODES}

    def __post_init__(self) -> None:
        if self.mode not in BATCHING_MODES:
            raise choice_error("batching.mode", self.mode, BATCHING_MODES)
        positive("batching.batch_size", self.batch_size)
        if self.max_tokens < 64:
            raise ConfigError(f"batching.max_tokens must be >= 64, got {self.max_tokens!r}")
        if self.eval_batch_size is not None:
            positive("batching.eval_batch_size", self.eval_batch_size)
        if self.micro_batch_tokens is not None:
            positive("batching.micro_batch_tokens", self.micro_batch_tokens, allow_zero=True)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation, early stopping, metrics and reporting."""

    learning_rate: float = 5e-4  # peak learning rate of AdamW
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    epochs: int = 10  # passes over the training data (fewer with early stopping)
    patience: int | None = 5  # None = no early stopping
    monitor: str | None = None  # metric name or 'loss'; None = the problem type's default
    direction: str | None = None  # 'max' or 'min'; None = the metric's own direction
    metrics: tuple[str, ...] | None = None  # None = the problem type's defaults
    scheduler: str = "linear"
    warmup_steps: int = 0  # optimizer steps of linear warm-up from 0 (or warmup_ratio of all steps)
    warmup_ratio: float = 0.0  # warm-up as a fraction of all optimizer steps
    step_size_epochs: int = 1  # 'step' scheduler: decay every N epochs
    step_gamma: float = 0.5  # scheduler=step: the factor applied every step_size_epochs
    gradient_accumulation_steps: int = 1  # batches summed into one optimizer step
    max_grad_norm: float | None = 1.0  # None = no clipping
    num_workers: int = 0  # DataLoader worker processes (0: in the training process)
    seed: int = 42  # seeds splits, head initialisation, shuffling and dropout
    mixed_precision: str = "no"
    force_precision: bool = False  # keep bf16 where the device only emulates it (many times slower; refused otherwise)
    logging_steps: int = 10  # optimizer steps between two lines of metrics_steps.jsonl
    report_to: tuple[str, ...] = ()
    wandb_project: str = "plmforge"  # the W&B project of report_to=[wandb]
    wandb_mode: str = "offline"
    class_weights: str | None = None  # 'balanced', or one number per class: "1,4.5"
    focal_gamma: float | None = None  # focal loss (1 - p_t)^gamma; None = the plain loss
    tune_threshold: str = "none"  # binary tasks: 'mcc' or 'f1' = the decision threshold maximising it on validation
    CHOICES: ClassVar[dict[str, Any]] = {
        "monitor": ("loss", *METRICS), "direction": DIRECTIONS, "metrics": METRICS, "scheduler": SCHEDULERS,
        "mixed_precision": MIXED_PRECISION, "report_to": TRACKERS, "wandb_mode": WANDB_MODES,
        "tune_threshold": THRESHOLD_METRICS}

    def __post_init__(self) -> None:
        positive("training.learning_rate", self.learning_rate)
        positive("training.weight_decay", self.weight_decay, allow_zero=True)
        positive("training.epochs", self.epochs)
        if self.patience is not None:
            positive("training.patience", self.patience)
        if self.monitor is not None and self.monitor != "loss" and self.monitor not in METRICS:
            raise choice_error("training.monitor", self.monitor, ["loss", *METRICS])
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise choice_error("training.direction", self.direction, DIRECTIONS)
        for name in self.metrics or ():
            if name not in METRICS:
                raise choice_error("training.metrics", name, METRICS)
        if self.scheduler not in SCHEDULERS:
            raise choice_error("training.scheduler", self.scheduler, SCHEDULERS)
        positive("training.warmup_steps", self.warmup_steps, allow_zero=True)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError("set training.warmup_steps or training.warmup_ratio, not both")
        positive("training.step_size_epochs", self.step_size_epochs)
        positive("training.step_gamma", self.step_gamma)
        positive("training.gradient_accumulation_steps", self.gradient_accumulation_steps)
        if self.max_grad_norm is not None:
            positive("training.max_grad_norm", self.max_grad_norm)
        positive("training.num_workers", self.num_workers, allow_zero=True)
        if self.mixed_precision not in MIXED_PRECISION:
            raise choice_error("training.mixed_precision", self.mixed_precision, MIXED_PRECISION)
        positive("training.logging_steps", self.logging_steps)
        if isinstance(self.class_weights, (list, tuple)):  # a YAML list
            object.__setattr__(self, "class_weights", ",".join(str(v) for v in self.class_weights))
        if self.class_weights is not None and str(self.class_weights) != "balanced":
            try:
                weights = [float(v) for v in str(self.class_weights).split(",") if v.strip()]
            except ValueError:
                weights = []
            if not weights or any(not w > 0 for w in weights):
                raise ConfigError(f"training.class_weights must be 'balanced' or positive numbers separated by commas "
                                  f"(one per class), got {self.class_weights!r}")
        if self.focal_gamma is not None:
            positive("training.focal_gamma", self.focal_gamma, allow_zero=True)
        if self.tune_threshold not in THRESHOLD_METRICS:
            raise choice_error("training.tune_threshold", self.tune_threshold, THRESHOLD_METRICS)
        for tracker in self.report_to:
            if tracker not in TRACKERS:
                raise choice_error("training.report_to", tracker, TRACKERS)
        if self.wandb_mode not in WANDB_MODES:
            raise choice_error("training.wandb_mode", self.wandb_mode, WANDB_MODES)


@dataclass(frozen=True)
class OutputConfig:
    """Where the run directory goes and what is written to it."""

    dir: str = "runs/run"  # the run directory
    overwrite: bool = False  # replace a run directory that plmforge made (never one it did not)
    save_predictions: bool = True  # write test_predictions.csv
    plots: bool = True  # draw the plots in plots/
    baselines: bool = True  # majority and composition (and one-hot / window) models on the same splits
    bootstrap: int = 1000  # resamples for the 95% intervals of test metrics; 0 = none

    def __post_init__(self) -> None:
        positive("output.bootstrap", self.bootstrap, allow_zero=True)


@dataclass(frozen=True)
class CVConfig:
    """Cross-validation: K sub-runs, each validating on one fold of the training data (pooled with the
    validation file when there is one); the test split stays held out."""

    folds: int = 0  # 0 = no cross-validation
    fold: int | None = None  # set in a fold's own run: the fold (1..folds) it validates on
    ensemble: bool = True  # the fold models' mean prediction on the test split
    # heads on a frozen backbone's stored pooled vectors: every fold's head in one stacked pass (false: one
    # fold after another, each exactly as its own run)
    together: bool = True

    def __post_init__(self) -> None:
        positive("cv.folds", self.folds, allow_zero=True)
        if self.folds == 1:
            raise ConfigError("cv.folds=1 is not cross-validation: use 0 (off) or at least 2 folds")
        if self.fold is not None:
            if self.folds < 2:
                raise ConfigError(f"cv.fold={self.fold} needs cv.folds (the number of folds) to be set")
            if not 1 <= self.fold <= self.folds:
                raise ConfigError(f"cv.fold must be between 1 and cv.folds={self.folds}, got {self.fold}")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    cv: CVConfig = field(default_factory=CVConfig)

    def to_dict(self) -> dict[str, Any]:
        out = {name: (section.to_dict() if isinstance(section, MethodConfig) else dataclasses.asdict(section))
               for name, section in ((f.name, getattr(self, f.name)) for f in fields(self))}
        for section in out.values():
            for key, value in section.items():
                if isinstance(value, tuple):
                    section[key] = list(value)
        return out

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)


_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "head": HeadConfig,
    "batching": BatchingConfig,
    "training": TrainingConfig,
    "output": OutputConfig,
    "cv": CVConfig,
}
PATH_KEYS = {("data", "dataset"), ("data", "train"), ("data", "validation"), ("data", "test"),
             ("data", "wild_type"), ("model", "name"), ("output", "dir")}


def config_from_dict(raw: dict[str, Any], *, base_dir: Path | None = None) -> RunConfig:
    """Build a validated RunConfig; unknown sections or keys fail with a did-you-mean."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of sections (data, model, method, ...)")
    sections: dict[str, Any] = {}
    for name, values in raw.items():
        if name not in _SECTION_TYPES:
            raise ConfigError(f"unknown config section {name!r}{did_you_mean(name, _SECTION_TYPES)}; "
                              f"sections are {', '.join(_SECTION_TYPES)}")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}")
        if name == "method":
            sections[name] = _method_section(values)
            continue
        sections[name] = _SECTION_TYPES[name](**section_kwargs(name, _SECTION_TYPES[name], values, base_dir))
    if "data" not in sections:
        raise ConfigError("the config has no 'data' section: set data.dataset (or data.train)")
    return RunConfig(**sections)


def section_kwargs(name: str, cls: type, values: dict[str, Any], base_dir: Path | None,
                    scope: str = "") -> dict[str, Any]:
    known = {f.name: f.type for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}{did_you_mean(key, known)}; "
                              f"{scope or 'keys of ' + name}: {', '.join(known) or 'none'}")
        value = coerce_value(name, key, value, known[key])
        if base_dir is not None and (name, key) in PATH_KEYS and isinstance(value, str):
            value = resolve_path(value, base_dir)
        kwargs[key] = value
    return kwargs


def _method_section(values: dict[str, Any]) -> MethodConfig:
    """`name` picks the method; every other key must be one of that method's options."""
    values = dict(values)
    name = coerce_value("method", "name", values.pop("name", "freeze"), "str")
    spec = METHODS.lookup(name, "method.name")
    unknown = [k for k in values if k not in spec.option_names]
    if unknown:
        takers = [m for m, s in METHODS.items() if unknown[0] in s.option_names]
        if takers:
            raise ConfigError(f"method.{unknown[0]} is not an option of method {name!r} (it is one of "
                              f"{', '.join(takers)}); {name} takes: {', '.join(spec.option_names) or 'no options'}")
    kwargs = section_kwargs("method", spec.options, values, None, f"options of method {name!r} (besides name)")
    return MethodConfig(name, spec.options(**kwargs))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (optional) and apply `section.key=value` overrides on top."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _rebase_paths(read_config_file(path), Path(path).resolve().parent)
    from_file = dict(raw.get("method") or {}) if isinstance(raw.get("method"), dict) else {}
    apply_overrides(raw, overrides)
    _drop_other_methods_options(raw, from_file, path)
    return config_from_dict(raw)


def _not_taken(method: str, keys: Any) -> list[str]:
    """The keys of a method section (besides `name`) that the method has no option for."""
    return [k for k in keys if k != "name" and k not in METHODS[method].option_names]


def saved_before_test_splits(raw: dict[str, Any]) -> dict[str, Any]:
    """A config saved before test splits were carved from the training data keeps none (data.test_fraction=0),
    so a resumed run or sweep reads the splits it was started with."""
    data = raw.get("data")
    if isinstance(data, dict) and "test_fraction" not in data:
        raw["data"] = {**data, "test_fraction": 0.0}
    return raw


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The config saved in a run directory. Runs written before methods had their own option classes
    saved every method option, and residue runs saved `head.pooling: mean` although they used the
    per-residue head: both are read as what the run really used, and said so in the log."""
    import json
    import logging

    rd = Path(run_dir)
    try:
        raw = read_config_file(rd / "config.yaml")
    except ConfigError as exc:
        raise RunDirError(f"{rd} is not a usable plmforge run: {exc}; "
                          "restore its config.yaml from a copy of the run") from None
    notes = []
    method = raw.get("method") or {}
    if method.get("name", "freeze") in METHODS:
        extra = _not_taken(method.get("name", "freeze"), method)
        notes += [f"method.{k}" for k in extra]
        raw["method"] = {k: v for k, v in method.items() if k not in extra}
    task_file = rd / "task.json"
    head = raw.get("head") or {}
    if task_file.is_file() and head.get("pooling") in HEADS:
        try:
            problem = PROBLEM_TYPES.get(json.loads(task_file.read_text())["task"]["problem_type"])
        except (ValueError, KeyError, TypeError):
            raise RunDirError(f"{task_file} is damaged (not the JSON training wrote); restore it from a copy of "
                              "the run") from None
        if problem is not None and HEADS[head["pooling"]].per_residue != problem.per_residue:
            notes.append(f"head.pooling={head['pooling']} (the run used the {problem.name} default head)")
            raw["head"] = {**head, "pooling": None}
    saved_before_test_splits(raw)
    if notes:
        logging.getLogger("plmforge").info("%s was written by an earlier plmforge; not applicable and left out: %s",
                                           rd / "config.yaml", "; ".join(notes))
    return config_from_dict(_rebase_paths(raw, rd.resolve()))  # relative paths: relative to the run directory


def _drop_other_methods_options(raw: dict[str, Any], from_file: dict[str, Any], path: str | Path | None) -> None:
    """An override that switches the method (e.g. `method.name=freeze` on a LoRA config file) leaves the
    file's options of the old method behind: those the new method does not take are dropped, and
    each one is named in a warning (options given as overrides are still checked strictly)."""
    import logging

    method = raw.get("method") or {}
    new, old = method.get("name", "freeze"), from_file.get("name", "freeze")
    if new == old or new not in METHODS:
        return
    dropped = [k for k in _not_taken(new, from_file) if method.get(k) == from_file[k]]
    for key in dropped:
        del method[key]
    if dropped:
        logging.getLogger("plmforge").warning(
            "method.name=%s overrides %s in %s; its options %s do not apply to %s and are left out",
            new, old, path, ", ".join(f"method.{k}={from_file[k]}" for k in dropped), new)


def _rebase_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for section, key in PATH_KEYS:
        value = (out.get(section) or {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, list) and section == "data":
            value = ",".join(str(v) for v in value)
        if isinstance(value, str):
            out[section][key] = resolve_path(value, base_dir)
    return out


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_to_overrides(config: RunConfig) -> list[str]:
    """The `section.key=value` list that rebuilds `config` from defaults (the preview command)."""
    out = []
    for name, cls in _SECTION_TYPES.items():
        section = getattr(config, name)
        if name == "method":  # the name, then the options that differ from the method's defaults
            if section.name != MethodConfig.name:
                out.append(f"method.name={section.name}")
            section, cls = section.options, type(section.options)
        for f in fields(cls):
            value = getattr(section, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if value == default:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, str):
                value = config_to_override_text(value)
            if value is None:
                value = "null"
            out.append(f"{name}.{f.name}={value}")
    return out
