"""Model families: everything that differs between kinds of checkpoint lives here, in one object per
family — how a checkpoint and its tokenizer are loaded, where the special tokens go, whether residues
are space-separated, how rare residues are mapped, which named inputs the backbone takes and how each
is encoded and padded, and the default adapter targets. The loading code asks the family; a new
family is one registration (plus zoo rows), with no edit elsewhere.

Rare residues (the data layer has already upper-cased and validated input):
- ESM: B, Z, U, O and X are all tokens of the ESM vocabulary and are kept as they are.
- ProtTrans-style families (BERT and T5 encoders: ProtBert, IgBert, ProtT5, IgT5, Ankh, AntiBERTy):
  U, Z, O and B become X, as those models were trained. Where the vocabulary has no X (AntiBERTy),
  X is fed as the unknown token; the number of such residues is reported, never hidden.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plmforge.errors import ConfigError, DataError
from plmforge.inputs import SEQUENCE, THREE_DI, ModelInput, encode_symbols, first_non_3di
from plmforge.models import residue_tokens
from plmforge.registry import Registry

log = logging.getLogger("plmforge")
PROTTRANS_RARE = {"U": "X", "Z": "X", "O": "X", "B": "X"}


@dataclass
class Encoded:
    inputs: dict[str, list[np.ndarray]]  # per named input, per sequence (special tokens included)
    special: list[np.ndarray]  # True where the token is a special token
    n_truncated: int = 0
    n_unknown: int = 0
    rare_mapped: dict[str, int] = field(default_factory=dict)

    @property
    def input_ids(self) -> list[np.ndarray]:
        return self.inputs["input_ids"]


@contextmanager
def quiet_transformers():
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


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json model_type values that belong to this family
    model_class: str  # transformers class that loads the encoder
    split_residues: bool  # residues given to the tokenizer separated by spaces
    rare_map: dict[str, str] = field(default_factory=dict)
    lora_targets: tuple[str, ...] = ()
    ia3_targets: tuple[str, ...] = ()  # IA3 scales keys, values and the feed-forward output
    ia3_feedforward: tuple[str, ...] = ()
    special_tokens: str = ""  # where the family puts special tokens, for the docs
    unused_modules: tuple[str, ...] = ()  # modules outside the encoder's forward path, removed at load
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # fixed from_pretrained arguments
    special_positions: int | None = None  # positions taken by special tokens (None: relative positions)
    position_offset: int = 0  # positions before the first token (ESM starts after the padding index)
    inputs: tuple[ModelInput, ...] = (ModelInput("input_ids"),)
    # config key of the dropout on attention weights alone (None: the family has no separate one)
    attention_dropout_key: str | None = "attention_probs_dropout_prob"
    # a data column merged with the residues into the tokenizer's text (SaProt: residue + 3Di letter)
    text_field: str | None = None
    # the transformers class with the masked-LM head (mutation scoring) and the state-dict prefix of that
    # head's weights; None: the family has no such head here
    mlm_class: str | None = None
    mlm_head: str = ""

    # ---- loading ----------------------------------------------------------------------------------
    def max_residues(self, config: dict[str, Any]) -> int:
        positions = config.get("max_position_embeddings")
        if self.special_positions is None or not positions:
            return 4096  # relative positions (T5): no hard limit, memory is the limit
        return int(positions) - self.special_positions - self.position_offset

    def load_model(self, source: str, trust_remote_code: bool, extra: dict[str, Any] | None = None,
                   attention: str = "sdpa") -> Any:
        import transformers

        cls = getattr(transformers, self.model_class)
        kwargs = {"trust_remote_code": trust_remote_code, "attn_implementation": attention, **self.load_kwargs,
                  **(extra or {})}
        with quiet_transformers():
            model = cls.from_pretrained(source, **kwargs)
        for name in self.unused_modules:
            # never in the forward pass, so never trained; left in, it stalls distributed data parallel
            if getattr(model, name, None) is not None:
                setattr(model, name, None)
        return model

    def load_tokenizer(self, source: str) -> Any:
        from transformers import AutoTokenizer

        with quiet_transformers():
            return AutoTokenizer.from_pretrained(source)

    def load_masked_lm(self, source: str, trust_remote_code: bool, name: str) -> Any:
        """The checkpoint with its masked-LM head, for mutation scoring; refused where the family has none or
        the checkpoint lacks the head's weights (a head initialised at random would score noise)."""
        if self.mlm_class is None:
            raise ConfigError(f"{name}: {self.name} models have no masked-language-model head here, so they cannot "
                              "score mutations; use an ESM (ESM-2, ESM-1v, ESM-1b) or BERT-style model (ProtBert, "
                              "IgBert, AntiBERTy)")
        import transformers

        cls = getattr(transformers, self.mlm_class)
        try:
            with quiet_transformers():
                model, info = cls.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  output_loading_info=True)
        except OSError as exc:
            raise ConfigError(f"model {name!r} could not be loaded from {source!r}: {exc}") from None
        _refuse_missing_head(name, [k for k in info.get("missing_keys", ()) if k.startswith(self.mlm_head)])
        return model

    def recognises(self, path: Path, config: dict[str, Any]) -> bool:
        """Whether a local model directory belongs to this family beyond its model_type (families that
        share a model_type with another, e.g. SaProt's ESM checkpoints, or that keep their own layout,
        e.g. PTM-Mamba run directories, override this)."""
        return False

    def directory_config(self, path: Path, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration `max_residues` reads for a local directory (its config.json by default)."""
        return config

    # ---- inputs -----------------------------------------------------------------------------------
    @property
    def record_fields(self) -> tuple[str, ...]:
        """Data columns (besides the sequence) that this family's inputs are read from."""
        text = (self.text_field,) if self.text_field else ()
        return text + tuple(i.source for i in self.inputs if i.source != SEQUENCE)

    def pad_values(self, tokenizer: Any, inputs: tuple[ModelInput, ...] | None = None) -> dict[str, int]:
        return {i.name: (tokenizer.pad_token_id or 0) if i.source == SEQUENCE else i.pad
                for i in inputs or self.inputs}

    def prepare_text(self, seq: str, extra: str | None = None) -> str:
        """The tokenizer's text for one (truncated) sequence; `extra`: its `text_field` symbols."""
        mapped = "".join(self.rare_map.get(c, c) for c in seq)
        return " ".join(mapped) if self.split_residues else mapped

    def encode(self, tokenizer: Any, fields: dict[str, list[str]], limit: int, rows: list[str] | None = None,
               progress: Any = None, inputs: tuple[ModelInput, ...] | None = None) -> Encoded:
        """Every named input of every record (the family's own, or `inputs`: the family's plus a method's);
        truncation is at residue level (special tokens stay)."""
        extras = fields[self.text_field] if self.text_field else None
        enc = self._tokenise(tokenizer, fields[SEQUENCE], limit, progress, extras)
        for spec in inputs or self.inputs:
            if spec.source != SEQUENCE:
                enc.inputs[spec.name] = [encode_symbols(spec, text, special, rows[i] if rows else f"record {i + 1}")
                                         for i, (text, special) in enumerate(zip(fields[spec.source], enc.special,
                                                                                strict=True))]
        return enc

    def _tokenise(self, tokenizer: Any, sequences: list[str], limit: int, progress: Any,
                  extras: list[str] | None = None, chunk: int = 2048) -> Encoded:
        name = next(i.name for i in self.inputs if i.source == SEQUENCE)
        ids_out: list[np.ndarray] = []
        enc = Encoded({name: ids_out}, [])
        unk_id = tokenizer.unk_token_id
        for start in range(0, len(sequences), chunk):
            part = [s[:limit] for s in sequences[start:start + chunk]]
            enc.n_truncated += sum(len(s) > limit for s in sequences[start:start + chunk])
            for c in self.rare_map:
                n = sum(s.count(c) for s in part)
                if n:
                    enc.rare_mapped[c] = enc.rare_mapped.get(c, 0) + n
            pairs = self._by_table(tokenizer, part) if extras is None else None
            if pairs is None:
                texts = [self.prepare_text(s, None if extras is None else extras[start + k][:limit])
                         for k, s in enumerate(part)]
                out = tokenizer(texts, return_special_tokens_mask=True, add_special_tokens=True, truncation=False)
                pairs = [(np.asarray(ids, dtype=np.int64), np.asarray(spec, dtype=bool))
                         for ids, spec in zip(out["input_ids"], out["special_tokens_mask"], strict=True)]
            for seq, (ids_arr, special) in zip(part, pairs, strict=True):
                if unk_id is not None:  # the unknown token is "special" to some tokenizers; here it is a residue
                    special &= ids_arr != unk_id
                    enc.n_unknown += int((ids_arr == unk_id).sum())
                if int((~special).sum()) != len(seq):
                    raise ConfigError(
                        f"the tokenizer turned a {len(seq)}-residue sequence into {int((~special).sum())} residue "
                        f"tokens; it does not tokenise one residue per token (family {self.name!r}; check the "
                        "model's family and tokenizer files)")
                ids_out.append(ids_arr)
                enc.special.append(special)
            if progress is not None:
                progress.update(len(part))
        return enc

    def _by_table(self, tokenizer: Any, part: list[str]) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The chunk's (ids, special mask) looked up residue by residue, when that is exactly what the
        tokenizer gives (models/residue_tokens.py); None: use the tokenizer."""
        table = residue_tokens.table_for(tokenizer, self.prepare_text, quiet_transformers)
        if table is None or not part or not residue_tokens.agrees(table, tokenizer, self.prepare_text, part[0]):
            return None
        pairs = [table.encode(s) for s in part]
        return None if any(p is None for p in pairs) else pairs  # type: ignore[return-value]


def _refuse_missing_head(name: str, missing: list[str]) -> None:
    if missing:
        raise ConfigError(f"{name}: the checkpoint's LM head weights are missing ({', '.join(sorted(missing)[:3])}"
                          f"{', ...' if len(missing) > 3 else ''}): it was saved without its masked-LM head (e.g. "
                          "a fine-tuned encoder), and a random head would score noise; use the pretrained model")


class BertFamily(Family):
    def load_tokenizer(self, source: str) -> Any:
        if Path(source).is_file():  # a bare vocabulary file (the AntiBERTy wheel ships one)
            from transformers import BertTokenizer

            with quiet_transformers():
                # transformers 5: the vocabulary goes positionally, else every residue is [UNK]
                return BertTokenizer(source, do_lower_case=False)
        return super().load_tokenizer(source)


class SaProtFamily(Family):
    """SaProt-style structure-aware ESM checkpoints: each residue is one token together with its Foldseek
    3Di letter in lower case (`Md`, `Ev`, ...), `#` where the structure is unknown (SaProt's convention
    for low-confidence regions). The 3Di letters come from the `foldseek_seq` column."""

    def prepare_text(self, seq: str, extra: str | None = None) -> str:
        if extra is None:
            raise ConfigError(f"the {self.name} family needs the {self.text_field} column")
        return "".join(a + b.lower() for a, b in zip(seq, extra, strict=True))

    def encode(self, tokenizer: Any, fields: dict[str, list[str]], limit: int, rows: list[str] | None = None,
               progress: Any = None, inputs: tuple[ModelInput, ...] | None = None) -> Encoded:
        for i, text in enumerate(fields[self.text_field or ""]):
            bad = first_non_3di(text)
            if bad is not None:
                raise DataError(f"unknown 3Di symbol {text[bad]!r} at position {bad + 1}",
                                file=rows[i] if rows else f"record {i + 1}", column=self.text_field,
                                hint=f"3Di letters are {THREE_DI} (either case), and # for an unknown "
                                     "structure; plmforge structure writes them")
        return super().encode(tokenizer, fields, limit, rows, progress, inputs)

    def recognises(self, path: Path, config: dict[str, Any]) -> bool:
        vocab = path / "vocab.txt"
        return (config.get("model_type") == "esm" and vocab.is_file()
                and {"A#", "Ad"} <= set(vocab.read_text().split()))


class RemoteCodeFamily(Family):
    """Checkpoints whose modelling code lives in their own hub repository (e.g. ProSST): loaded only with
    the explicit model.trust_remote_code=true, with a warning naming what runs; the encoder is the
    masked-LM's base model."""

    def load_model(self, source: str, trust_remote_code: bool, extra: dict[str, Any] | None = None,
                   attention: str = "sdpa") -> Any:
        if not trust_remote_code:
            raise ConfigError(f"{source}: {self.name} models run code from their own repository; review it, then "
                              "set model.trust_remote_code=true")
        log.warning("model.trust_remote_code=true: running the model code that %s ships", source)
        from transformers import AutoModelForMaskedLM

        with quiet_transformers():
            model = AutoModelForMaskedLM.from_pretrained(source, trust_remote_code=True,
                                                         **self.load_kwargs, **(extra or {}))
        return model.base_model

    def load_masked_lm(self, source: str, trust_remote_code: bool, name: str) -> Any:
        """The checkpoint's own masked-LM class (its code, trusted explicitly), refused without the head's
        weights (every weight outside the base model)."""
        if not trust_remote_code:
            raise ConfigError(f"{name}: {self.name} models run code from their own repository; review it, then pass "
                              "--trust-remote-code")
        log.warning("trust_remote_code: running the model code that %s ships", source)
        from transformers import AutoModelForMaskedLM

        try:
            with quiet_transformers():
                model, info = AutoModelForMaskedLM.from_pretrained(source, trust_remote_code=True,
                                                                   output_loading_info=True, **self.load_kwargs)
        except OSError as exc:
            raise ConfigError(f"model {name!r} could not be loaded from {source!r}: {exc}") from None
        base = model.base_model_prefix + "."
        _refuse_missing_head(name, [k for k in info.get("missing_keys", ()) if not k.startswith(base)])
        return model

    def load_tokenizer(self, source: str) -> Any:
        from transformers import AutoTokenizer

        with quiet_transformers():  # reached only after the model loaded with trust_remote_code=true
            return AutoTokenizer.from_pretrained(source, trust_remote_code=True)


FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    return FAMILIES.register(family.name, family)


register_family(Family("esm", ("esm",), "EsmModel", False, {}, ("query", "key", "value"),
                       ("key", "value", "output.dense"), ("output.dense",), "<cls> residues <eos>",
                       ("contact_head",), {"add_pooling_layer": False}, special_positions=2, position_offset=2,
                       mlm_class="EsmForMaskedLM", mlm_head="lm_head."))
register_family(BertFamily("bert", ("bert",), "BertModel", True, PROTTRANS_RARE, ("query", "key", "value"),
                           ("key", "value", "output.dense"), ("output.dense",), "[CLS] residues [SEP]",
                           load_kwargs={"add_pooling_layer": False}, special_positions=2,
                           mlm_class="BertForMaskedLM", mlm_head="cls.predictions."))
register_family(SaProtFamily("saprot", (), "EsmModel", False, {}, ("query", "key", "value"),
                             ("key", "value", "output.dense"), ("output.dense",),
                             "<cls> residue+3Di tokens <eos>", ("contact_head",), {"add_pooling_layer": False},
                             special_positions=2, position_offset=2, text_field="foldseek_seq",
                             mlm_class="EsmForMaskedLM", mlm_head="lm_head."))
register_family(RemoteCodeFamily("prosst", ("prosst", "ProSST"), "AutoModelForMaskedLM", False, {}, (), (), (),
                                 "<cls> residues <eos>; ss_input_ids: 1, structure tokens + 3, 2",
                                 special_positions=2, attention_dropout_key=None,
                                 inputs=(ModelInput("input_ids"),
                                         ModelInput("ss_input_ids", source="prosst_tokens", offset=3, pad=0,
                                                    specials=(1, 2)))))
register_family(Family("t5", ("t5",), "T5EncoderModel", True, PROTTRANS_RARE, ("q", "k", "v"),
                       ("k", "v", "wo"), ("wo",), "residues </s> (no CLS)", attention_dropout_key=None))


_plugins_loaded = False


def load_plugin_families() -> None:
    """Families other packages (and plmforge's own PTM-Mamba) declare under the `plmforge.families` entry
    points; loaded once. A plugin that fails to load is reported and left out."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group="plmforge.families"):
        try:
            family = point.load()
        except Exception as exc:  # a broken third-party plugin must not break the built-in families
            log.warning("model family plugin %s (%s) could not be loaded: %s", point.name, point.value, exc)
            continue
        if family.name not in FAMILIES:
            register_family(family)


def family_for_directory(path: Path, config: dict[str, Any]) -> Family:
    """The family of a local model directory: one that recognises it from its files, else by model_type."""
    load_plugin_families()
    for family in FAMILIES.values():
        if family.recognises(path, config):
            return family
    return family_for_model_type(config.get("model_type", ""), str(path / "config.json"))


def family_for_model_type(model_type: str, where: str) -> Family:
    load_plugin_families()
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ConfigError(f"{where}: model_type {model_type!r} is not a supported family; "
                      f"supported model types: {', '.join(supported)}")
