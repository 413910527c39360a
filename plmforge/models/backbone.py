"""Loading a backbone (zoo name, HuggingFace id or local directory). Every family-specific rule is
asked of the family object (models/families.py); this module only decides where the weights are."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plmforge.config import ModelConfig
from plmforge.errors import ConfigError
from plmforge.inputs import SEQUENCE, ModelInput
from plmforge.models.families import FAMILIES, Family, family_for_directory, family_for_model_type, quiet_transformers
from plmforge.models.zoo import ZOO, ZooEntry

log = logging.getLogger("plmforge")


@dataclass
class Backbone:
    model: torch.nn.Module
    tokenizer: Any
    family: Family
    hidden_size: int
    max_residues: int
    source: str  # what from_pretrained was given
    extra_inputs: tuple[ModelInput, ...] = ()  # a method's own per-residue inputs (e.g. structure tokens)

    @property
    def inputs(self) -> tuple[ModelInput, ...]:
        return self.family.inputs + self.extra_inputs

    @property
    def record_fields(self) -> tuple[str, ...]:
        """Data columns (besides the sequence) the model reads."""
        return self.family.record_fields + tuple(i.source for i in self.extra_inputs if i.source != SEQUENCE)

    def pad_values(self) -> dict[str, int]:
        return self.family.pad_values(self.tokenizer, self.inputs)


@dataclass(frozen=True)
class Resolved:
    source: str
    tokenizer_source: str
    family: Family
    max_residues: int
    entry: ZooEntry | None


def _local_family(path: Path) -> tuple[Family, dict[str, Any]]:
    cfg_file = path / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    if not cfg_file.is_file() or not cfg.get("model_type"):
        own = [f for f in _families_with_own_layout() if f.recognises(path, cfg)]
        if own:
            return own[0], own[0].directory_config(path, cfg)
    if not cfg_file.is_file():
        raise ConfigError(f"model directory {str(path)!r} has no config.json; it must be a HuggingFace model "
                          "directory (save_pretrained output) or a `plmforge ptm train` run directory")
    if not cfg.get("model_type"):
        raise ConfigError(f"{cfg_file}: no 'model_type' field, so the model family cannot be told")
    family = family_for_directory(path, cfg)
    return family, family.directory_config(path, cfg)


def _families_with_own_layout() -> list[Family]:
    from plmforge.models.families import load_plugin_families

    load_plugin_families()
    return list(FAMILIES.values())


def _zoo_entry(name: str) -> ZooEntry | None:
    if name in ZOO:
        return ZOO[name]
    by_id = [e for e in ZOO.values() if e.hf_id == name]
    return by_id[0] if by_id else None


def resolve_model(cfg: ModelConfig) -> Resolved:
    """Turn model.name into a loadable source and its family, without loading weights."""
    name = cfg.name
    entry = _zoo_entry(name)
    if entry is not None:
        if not entry.trainable_here:
            raise ConfigError(f"model {entry.name!r} is in the zoo but cannot be used yet: {entry.note}")
        source, tokenizer_source = entry.locate() if entry.locate else (entry.hf_id, entry.hf_id)
        return Resolved(source, tokenizer_source, FAMILIES[entry.family], entry.max_residues, entry)
    path = Path(name).expanduser()
    if path.is_dir():
        family, raw = _local_family(path)
        return Resolved(str(path.resolve()), str(path.resolve()), family, family.max_residues(raw), None)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ConfigError(f"model.name {name!r} is not a zoo model, a model directory or a hub id "
                          "(owner/name); `plmforge models` lists the zoo")
    owner = name.split("/")[0]
    if Path(owner).expanduser().is_dir():  # a local directory of that name: a missing path, never a hub query
        raise ConfigError(f"model.name {name!r}: no such model directory (there is a local directory {owner!r}, "
                          "so this is read as a path, not a hub id); check the path")
    return _resolve_hub(name, cfg.trust_remote_code)


def _resolve_hub(name: str, trust_remote_code: bool) -> Resolved:
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            hub_cfg = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ConfigError(f"model {name!r} could not be fetched from the HuggingFace hub: {exc}") from None
    family = family_for_model_type(hub_cfg.model_type, f"model {name}")
    return Resolved(name, name, family, family.max_residues(hub_cfg.to_dict()), None)


def residue_limit(cfg: ModelConfig) -> int | None:
    """The model's length limit in residues, read without loading weights (None when it cannot be
    resolved here, e.g. a hub model while offline)."""
    from plmforge.errors import PlmforgeError

    try:
        return resolve_model(cfg).max_residues
    except PlmforgeError:
        return None


def load_tokenizer(resolved: Resolved, saved_dir: Path | None = None) -> Any:
    """The run's own tokenizer copy wins (so predictions tokenise exactly as training did)."""
    if saved_dir is not None and saved_dir.is_dir():
        return resolved.family.load_tokenizer(str(saved_dir))
    return resolved.family.load_tokenizer(resolved.tokenizer_source)


def load_backbone(cfg: ModelConfig, tokenizer_dir: Path | None = None,
                  extra_kwargs: dict[str, Any] | None = None) -> Backbone:
    resolved = resolve_model(cfg)
    extra_kwargs = dict(extra_kwargs or {})
    if cfg.attention_dropout is not None:
        key = resolved.family.attention_dropout_key
        if key is None:
            raise ConfigError(f"model.attention_dropout: {resolved.family.name} models have no dropout of their own "
                              "on attention weights (one rate covers every layer); leave model.attention_dropout unset")
        extra_kwargs[key] = cfg.attention_dropout
    try:
        model = resolved.family.load_model(resolved.source, cfg.trust_remote_code, extra_kwargs, cfg.attention)
    except OSError as exc:
        raise ConfigError(f"model {cfg.name!r} could not be loaded from {resolved.source!r}: {exc}") from None
    if cfg.gradient_checkpointing:
        enable_checkpointing(model, cfg.checkpoint_every or 1)
    tokenizer = load_tokenizer(resolved, tokenizer_dir)
    max_residues = resolved.max_residues
    if cfg.max_length is not None:
        if cfg.max_length > max_residues:
            raise ConfigError(f"model.max_length={cfg.max_length} exceeds what {cfg.name!r} takes "
                              f"({max_residues} residues)")
        max_residues = cfg.max_length
    hidden = int(getattr(model.config, "hidden_size", None) or model.config.d_model)
    return Backbone(model, tokenizer, resolved.family, hidden, max_residues, resolved.source)


def backbone_fingerprint(backbone: Backbone, stored: str, dtype: str, layer: int = -1) -> dict[str, Any]:
    """Everything that changes what a frozen backbone outputs for a sequence (the embedding store's key):
    the checkpoint and a signature of its weights, its config, the tokenizer vocabulary, the family's
    tokenisation rules, the length limit, the layer, what is stored ('mean' or 'tokens') and the dtype."""
    import hashlib

    from plmforge.store import weights_signature

    vocab = json.dumps(sorted(backbone.tokenizer.get_vocab().items()))
    family = backbone.family
    return {"source": backbone.source, "weights": weights_signature(backbone.source),
            "config": hashlib.sha256(backbone.model.config.to_json_string(use_diff=False).encode()).hexdigest()[:16],
            "vocab": hashlib.sha256(vocab.encode()).hexdigest()[:16], "family": family.name,
            "rules": {"split_residues": family.split_residues, "rare_map": family.rare_map,
                      "inputs": [i.name for i in family.inputs]},
            "max_residues": backbone.max_residues, "layer": layer, "stored": stored, "dtype": dtype}


def enable_checkpointing(model: Any, every: int = 1) -> None:
    """Recompute activations in the backward pass (less memory, more time) on every `every`-th encoder
    layer of a loaded transformers model; also after an adapter method has wrapped it (the layers are the
    same objects)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    if every > 1:
        checkpoint_some_layers(model, every)


def checkpoint_some_layers(model: Any, every: int) -> int:
    """Keep recomputation on every `every`-th encoder layer only (a middle ground between memory and
    speed); returns how many layers recompute."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ConfigError("model.checkpoint_every: this model's layers do not support choosing which layers "
                          "recompute; leave model.checkpoint_every=1")
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i % every == 0
    return sum(layer.gradient_checkpointing for layer in layers)
