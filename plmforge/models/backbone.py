"""Loading a backbone (zoo name, HuggingFace id or local directory) and tokenising sequences for it."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plmforge.config import ModelConfig
from plmforge.errors import ConfigError
from plmforge.models.zoo import FAMILIES, ZOO, Family, ZooEntry, family_for_model_type

log = logging.getLogger("plmforge")


@dataclass
class Backbone:
    model: torch.nn.Module
    tokenizer: Any
    family: Family
    hidden_size: int
    max_residues: int
    source: str  # what from_pretrained was given


@dataclass(frozen=True)
class Resolved:
    source: str
    tokenizer_source: str
    family: Family
    max_residues: int
    entry: ZooEntry | None


@contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def antiberty_paths() -> tuple[Path, Path]:
    """Checkpoint directory and vocabulary of the AntiBERTy model shipped in the antiberty wheel."""
    try:
        import antiberty
    except ImportError:
        raise ConfigError("model 'antiberty' needs the antiberty package: pip install antiberty==0.1.3") from None
    root = Path(antiberty.__file__).parent / "trained_models"
    return root / "AntiBERTy_md_smooth", root / "vocab.txt"


def _local_family(path: Path) -> tuple[Family, dict[str, Any]]:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"model directory {str(path)!r} has no config.json; "
                          "it must be a HuggingFace model directory (save_pretrained output)")
    cfg = json.loads(cfg_file.read_text())
    model_type = cfg.get("model_type")
    if not model_type:
        raise ConfigError(f"{cfg_file}: no 'model_type' field, so the model family cannot be told")
    return family_for_model_type(model_type, str(cfg_file)), cfg


def _max_residues_from_config(family: Family, cfg: dict[str, Any]) -> int:
    positions = cfg.get("max_position_embeddings")
    if family.name == "esm" and positions:
        return int(positions) - 4  # positions start after the padding index; <cls> and <eos> take two
    if family.name == "bert" and positions:
        return int(positions) - 2  # [CLS] and [SEP]
    return 4096  # relative positions (T5): no hard limit, memory is the limit


def resolve_model(cfg: ModelConfig) -> Resolved:
    """Turn model.name into a loadable source and its family, without loading weights."""
    name = cfg.name
    entry = ZOO.get(name)
    if entry is None:
        by_id = [e for e in ZOO.values() if e.hf_id == name]
        entry = by_id[0] if by_id else None
    if entry is not None:
        if not entry.trainable_here:
            raise ConfigError(f"model {entry.name!r} is in the zoo but cannot be used yet: {entry.note}")
        if entry.source == "antiberty-wheel":
            ckpt, vocab = antiberty_paths()
            return Resolved(str(ckpt), str(vocab), FAMILIES[entry.family], entry.max_residues, entry)
        return Resolved(entry.hf_id, entry.hf_id, FAMILIES[entry.family], entry.max_residues, entry)
    path = Path(name).expanduser()
    if path.is_dir():
        family, raw = _local_family(path)
        return Resolved(str(path.resolve()), str(path.resolve()), family, _max_residues_from_config(family, raw),
                        None)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ConfigError(f"model.name {name!r} is not a zoo model, a model directory or a hub id "
                          "(owner/name); `plmforge models` lists the zoo")
    return _resolve_hub(name, cfg.trust_remote_code)


def _resolve_hub(name: str, trust_remote_code: bool) -> Resolved:
    from transformers import AutoConfig

    try:
        with _quiet_transformers():
            hub_cfg = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ConfigError(f"model {name!r} could not be fetched from the HuggingFace hub: {exc}") from None
    family = family_for_model_type(hub_cfg.model_type, f"model {name}")
    return Resolved(name, name, family, _max_residues_from_config(family, hub_cfg.to_dict()), None)


def load_tokenizer(resolved: Resolved, saved_dir: Path | None = None) -> Any:
    """The run's own tokenizer copy wins (so predictions tokenise exactly as training did)."""
    from transformers import AutoTokenizer, BertTokenizer

    with _quiet_transformers():
        if saved_dir is not None and saved_dir.is_dir():
            return AutoTokenizer.from_pretrained(str(saved_dir))
        if resolved.entry is not None and resolved.entry.source == "antiberty-wheel":
            # transformers 5: the vocabulary must be passed positionally, else every residue is [UNK]
            return BertTokenizer(resolved.tokenizer_source, do_lower_case=False)
        return AutoTokenizer.from_pretrained(resolved.tokenizer_source)


def load_backbone(cfg: ModelConfig, tokenizer_dir: Path | None = None,
                  extra_kwargs: dict[str, Any] | None = None) -> Backbone:
    import transformers

    resolved = resolve_model(cfg)
    cls = getattr(transformers, resolved.family.model_class)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if resolved.family.name in ("bert", "esm"):
        kwargs["add_pooling_layer"] = False  # unused by every head, and randomly initialised when absent
    kwargs.update(extra_kwargs or {})
    try:
        with _quiet_transformers():
            model = cls.from_pretrained(resolved.source, **kwargs)
    except OSError as exc:
        raise ConfigError(f"model {cfg.name!r} could not be loaded from {resolved.source!r}: {exc}") from None
    for name in resolved.family.unused_modules:
        # never in the forward pass, so never trained; left in, it stalls distributed data parallel
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    if cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # recompute activations in the backward pass: less memory, ~30 % more time
    tokenizer = load_tokenizer(resolved, tokenizer_dir)
    max_residues = resolved.max_residues
    if cfg.max_length is not None:
        if cfg.max_length > max_residues:
            raise ConfigError(f"model.max_length={cfg.max_length} exceeds what {cfg.name!r} takes "
                              f"({max_residues} residues)")
        max_residues = cfg.max_length
    hidden = int(getattr(model.config, "hidden_size", None) or model.config.d_model)
    return Backbone(model, tokenizer, resolved.family, hidden, max_residues, resolved.source)


@dataclass
class Encoded:
    input_ids: list[np.ndarray]  # per sequence, special tokens included
    special: list[np.ndarray]  # True where the token is a special token
    n_truncated: int
    n_unknown: int
    rare_mapped: dict[str, int]


def prepare_text(seq: str, family: Family) -> str:
    mapped = "".join(family.rare_map.get(c, c) for c in seq)
    return " ".join(mapped) if family.split_residues else mapped


def encode_sequences(backbone: Backbone, sequences: list[str], max_residues: int | None = None,
                     chunk: int = 2048, desc: str = "tokenising") -> Encoded:
    """Tokenise residue strings; truncation is at residue level so special tokens stay in place."""
    from tqdm.auto import tqdm

    limit = max_residues or backbone.max_residues
    tok = backbone.tokenizer
    unk_id = tok.unk_token_id
    ids_out: list[np.ndarray] = []
    special_out: list[np.ndarray] = []
    n_trunc = n_unk = 0
    rare: dict[str, int] = {}
    bar = tqdm(total=len(sequences), desc=desc, unit="seq", leave=False, mininterval=1.0)
    for start in range(0, len(sequences), chunk):
        part = sequences[start:start + chunk]
        bar.update(len(part))
        texts = []
        for seq in part:
            if len(seq) > limit:
                n_trunc += 1
                seq = seq[:limit]
            for c in backbone.family.rare_map:
                if c in seq:
                    rare[c] = rare.get(c, 0) + seq.count(c)
            texts.append(prepare_text(seq, backbone.family))
        enc = tok(texts, return_special_tokens_mask=True, add_special_tokens=True, truncation=False)
        for i, (ids, spec) in enumerate(zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)):
            ids_arr = np.asarray(ids, dtype=np.int64)
            spec_arr = np.asarray(spec, dtype=bool)
            # the unknown token is "special" to some tokenizers; it stands for a residue here
            if unk_id is not None:
                spec_arr &= ids_arr != unk_id
                n_unk += int((ids_arr == unk_id).sum())
            expected = min(len(part[i]), limit)
            if int((~spec_arr).sum()) != expected:
                raise ConfigError(
                    f"the tokenizer of {backbone.source!r} turned a {expected}-residue sequence into "
                    f"{int((~spec_arr).sum())} residue tokens; it does not tokenise one residue per token "
                    f"(family {backbone.family.name!r}; check the model's family and tokenizer files)")
            ids_out.append(ids_arr)
            special_out.append(spec_arr)
    bar.close()
    return Encoded(ids_out, special_out, n_trunc, n_unk, rare)
