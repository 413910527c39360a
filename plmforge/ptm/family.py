"""A trained PTM-Mamba as a backbone for plmforge's fine-tuning: `model.name=<a ptm train run directory>`
works in `plmforge train`, `embed`, `predict` and the UI like any model directory, with every method
whose adapters fit Mamba's linear layers (freeze, full, LoRA, DoRA, AdaLoRA, IA3) and every head.

The encoder is the trained model without its LM head: per-token hidden states, one per residue (no
special tokens), with the gated PLM fusion it was trained with (that PLM reads the parent residues,
PTM positions as its mask token, and stays frozen). Sequences are plain amino-acid sequences here, as
the data layer validates them; PTM-token sequences are embedded with `plmforge.ptm.train.ptm_embeddings`.

This module is a model-family plugin: pyproject.toml lists `FAMILY` under the `plmforge.families` entry
points, which models/families.py loads on the first directory lookup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from plmforge.errors import ConfigError
from plmforge.models.families import Family
from plmforge.ptm.tokens import SPECIALS, PtmTokenizer

TOKENIZER_FILE = "ptm_tokenizer.json"


def _run_config(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


class PtmTokenizerAdapter:
    """The PTM tokenizer behind the small part of the HuggingFace tokenizer interface plmforge uses."""

    def __init__(self, tok: PtmTokenizer) -> None:
        self.tok = tok
        self.pad_token_id = tok.pad_id
        self.mask_token_id = tok.mask_id
        self.unk_token_id = tok.index["<unk>"]

    def __len__(self) -> int:
        return len(self.tok)

    def __call__(self, texts: list[str], return_special_tokens_mask: bool = False, **_: Any) -> dict[str, list]:
        ids = [self.tok.encode(t, f"sequence {i + 1}").tolist() for i, t in enumerate(texts)]
        out: dict[str, list] = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
        if return_special_tokens_mask:  # PTM-Mamba adds no special tokens: every token is a residue
            out["special_tokens_mask"] = [[0] * len(x) for x in ids]
        return out

    def get_vocab(self) -> dict[str, int]:
        return dict(self.tok.index)

    def save_pretrained(self, directory: str) -> None:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        extra = {k: v for k, v in self.tok.ptms.items()}
        (out / TOKENIZER_FILE).write_text(json.dumps({"specials": list(SPECIALS), "ptms": extra}, indent=1))


class PtmMambaEncoder(nn.Module):
    """Hidden states of a trained PTM-Mamba (its LM head is not used)."""

    _no_split_modules = ["BiMambaLayer"]

    def __init__(self, mamba: nn.Module, tok: PtmTokenizer, plm: Any, source: str) -> None:
        from transformers import PretrainedConfig

        super().__init__()
        self.mamba = mamba
        self.tok = tok
        self.plm = plm  # frozen PLM features (a plain object: not trained, not in the state dict) or None
        d_model = mamba.embed.embedding_dim
        self.config = PretrainedConfig(model_type="ptm_mamba", hidden_size=d_model, vocab_size=len(tok),
                                       num_hidden_layers=len(mamba.layers), name_or_path=source,
                                       plm=getattr(plm, "name", None))

    def gradient_checkpointing_enable(self, **_: Any) -> None:
        raise ConfigError("model.gradient_checkpointing: PTM-Mamba backbones do not support it (their memory "
                          "grows linearly with length already); leave it off")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        states = None
        if self.plm is not None:
            self.plm.to(input_ids.device)
            states = self.plm(input_ids, attention_mask, input_ids >= self.tok.first_ptm, self.tok).to(input_ids.device)
        return BaseModelOutput(last_hidden_state=self.mamba.hidden_states(input_ids, attention_mask, states))


class PtmMambaFamily(Family):
    def recognises(self, path: Path, config: dict[str, Any]) -> bool:
        has_ckpt = (path / "best.ckpt").is_file() or (path / "last.ckpt").is_file()
        return has_ckpt and "d_model" in (_run_config(path).get("model") or {})

    def directory_config(self, path: Path, config: dict[str, Any]) -> dict[str, Any]:
        return _run_config(path)

    def max_residues(self, config: dict[str, Any]) -> int:
        training = config.get("training") or {}
        # with PLM fusion the PLM's limit (checked at training time) is the limit; else memory is
        return int(training.get("max_length", 1024)) if training.get("use_esm") else 4096

    def load_model(self, source: str, trust_remote_code: bool, extra: dict[str, Any] | None = None,
                   attention: str = "sdpa") -> Any:
        from plmforge.ptm.train import load_ptm_model

        if extra:
            raise ConfigError(f"PTM-Mamba backbones take no loading options ({', '.join(extra)}); QLoRA's "
                              "quantisation and model.attention_dropout do not apply to them")
        mamba, tok = load_ptm_model(source)
        return PtmMambaEncoder(mamba, tok, getattr(mamba, "plm_features", None), source)

    def load_tokenizer(self, source: str) -> Any:
        path = Path(source)
        if (path / TOKENIZER_FILE).is_file():  # a fine-tuning run's own copy
            saved = json.loads((path / TOKENIZER_FILE).read_text())
            return PtmTokenizerAdapter(PtmTokenizer(dict(saved["ptms"])))
        extra = (_run_config(path).get("model") or {}).get("ptm_tokens") or []
        return PtmTokenizerAdapter(PtmTokenizer.with_extra(dict(item.rsplit(":", 1) for item in extra)))


FAMILY = PtmMambaFamily("ptm_mamba", ("ptm_mamba",), "PtmMamba", False, {}, ("in_proj", "out_proj"),
                        ("in_proj", "out_proj"), ("out_proj",), "none (one token per residue)",
                        attention_dropout_key=None)
