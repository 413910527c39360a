"""The model zoo: the one registry that the CLI, docs and tests read.

Families describe how a kind of checkpoint is loaded and tokenised; zoo entries are named models.
A local directory works too: its family comes from `model_type` in its config.json.

Rare residues (the one explicit rule; the data layer has already upper-cased and validated input):
- ESM family: B, Z, U, O and X are all tokens of the ESM vocabulary and are kept as they are.
- ProtTrans-style families (BERT and T5 encoders: ProtBert, IgBert, ProtT5, IgT5, Ankh, AntiBERTy):
  U, Z, O and B become X, as those models were trained. Where the vocabulary has no X (AntiBERTy),
  X is fed as the unknown token; the number of such residues is reported, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plmforge.errors import ConfigError

PROTTRANS_RARE = {"U": "X", "Z": "X", "O": "X", "B": "X"}


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


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} registered twice")
    FAMILIES[family.name] = family


register_family(Family("esm", ("esm",), "EsmModel", False, {}, ("query", "key", "value"),
                       ("key", "value", "output.dense"), ("output.dense",), "<cls> residues <eos>",
                       ("contact_head",)))
register_family(Family("bert", ("bert",), "BertModel", True, PROTTRANS_RARE, ("query", "key", "value"),
                       ("key", "value", "output.dense"), ("output.dense",), "[CLS] residues [SEP]"))
register_family(Family("t5", ("t5",), "T5EncoderModel", True, PROTTRANS_RARE, ("q", "k", "v"),
                       ("k", "v", "wo"), ("wo",), "residues </s> (no CLS)"))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    hf_id: str
    family: str
    params: str  # published size of the checkpoint
    hidden_size: int
    max_residues: int  # longest sequence the model takes, special tokens excluded
    group: str
    note: str = ""
    source: str = "hub"  # 'hub' or 'antiberty-wheel'
    trainable_here: bool = True  # False: needs inputs a later issue adds (e.g. structure tokens)

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return FAMILIES[self.family].lora_targets if self.family in FAMILIES else ()


ZOO: dict[str, ZooEntry] = {}


def register_model(entry: ZooEntry) -> None:
    if entry.name in ZOO:
        raise ValueError(f"model {entry.name!r} registered twice")
    ZOO[entry.name] = entry


register_model(ZooEntry("antiberty", "antiberty==0.1.3 (PyPI wheel)", "bert", "26M", 512, 510, "AntiBERTy",
                        "antibody sequences; works offline out of the box", source="antiberty-wheel"))

for _name, _size, _hidden in [("esm2_t6_8M_UR50D", "8M", 320), ("esm2_t12_35M_UR50D", "35M", 480),
                              ("esm2_t30_150M_UR50D", "150M", 640), ("esm2_t33_650M_UR50D", "650M", 1280),
                              ("esm2_t36_3B_UR50D", "3B", 2560), ("esm2_t48_15B_UR50D", "15B", 5120)]:
    register_model(ZooEntry(_name, f"facebook/{_name}", "esm", _size, _hidden, 1022, "ESM-2"))
register_model(ZooEntry("esm1b_t33_650M_UR50S", "facebook/esm1b_t33_650M_UR50S", "esm", "650M", 1280, 1022,
                        "ESM-1b"))
for _i in range(1, 6):
    register_model(ZooEntry(f"esm1v_t33_650M_UR90S_{_i}", f"facebook/esm1v_t33_650M_UR90S_{_i}", "esm", "650M",
                            1280, 1022, "ESM-1v"))
for _name, _id, _group, _note in [
    ("prot_bert", "Rostlab/prot_bert", "ProtBert", "UniRef100"),
    ("prot_bert_bfd", "Rostlab/prot_bert_bfd", "ProtBert", "BFD"),
    ("IgBert", "Exscientia/IgBert", "IgBert", "paired antibody chains"),
    ("IgBert_unpaired", "Exscientia/IgBert_unpaired", "IgBert", "unpaired antibody chains"),
]:
    register_model(ZooEntry(_name, _id, "bert", "420M", 1024, 1022, _group, _note))
for _name, _id, _size, _group, _note in [
    ("prot_t5_xl_uniref50", "Rostlab/prot_t5_xl_uniref50", "3B (encoder 1.2B)", "ProtT5", "UniRef50"),
    ("prot_t5_xl_bfd", "Rostlab/prot_t5_xl_bfd", "3B (encoder 1.2B)", "ProtT5", "BFD"),
    ("prot_t5_xxl_uniref50", "Rostlab/prot_t5_xxl_uniref50", "11B (encoder 4.8B)", "ProtT5", "UniRef50"),
    ("prot_t5_xxl_bfd", "Rostlab/prot_t5_xxl_bfd", "11B (encoder 4.8B)", "ProtT5", "BFD"),
    ("IgT5", "Exscientia/IgT5", "3B (encoder 1.2B)", "IgT5", "paired antibody chains"),
    ("IgT5_unpaired", "Exscientia/IgT5_unpaired", "3B (encoder 1.2B)", "IgT5", "unpaired antibody chains"),
]:
    register_model(ZooEntry(_name, _id, "t5", _size, 1024, 4096, _group, _note))
register_model(ZooEntry("ankh-base", "ElnaggarLab/ankh-base", "t5", "450M", 768, 4096, "Ankh"))
register_model(ZooEntry("ankh-large", "ElnaggarLab/ankh-large", "t5", "1.2B", 1536, 4096, "Ankh"))
for _vocab in (20, 128, 512, 1024, 2048, 4096):
    register_model(ZooEntry(f"ProSST-{_vocab}", f"AI4Protein/ProSST-{_vocab}", "prosst", "110M", 768, 2046,
                            "ProSST", f"needs {_vocab}-token structure sequences (structure issue)",
                            trainable_here=False))
register_model(ZooEntry("Prime_690M", "AI4Protein/Prime_690M", "prime", "690M", 1280, 1022, "ProPrime",
                        "custom model code (trust_remote_code); family support planned", trainable_here=False))


def family_for_model_type(model_type: str, where: str) -> Family:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ConfigError(f"{where}: model_type {model_type!r} is not a supported family; "
                      f"supported model types: {', '.join(supported)}")


def zoo_rows() -> list[dict[str, str]]:
    """The zoo as table rows (CLI `models`, README table)."""
    rows = []
    for e in ZOO.values():
        rows.append({
            "name": e.name,
            "huggingface id": e.hf_id,
            "family": e.family,
            "params": e.params,
            "hidden": str(e.hidden_size),
            "max residues": str(e.max_residues),
            "tokens": _tokens(e.family),
            "LoRA targets": ",".join(e.lora_targets) or "-",
            "note": e.note if e.trainable_here else f"not yet trainable: {e.note}",
        })
    return rows


def _tokens(family: str) -> str:
    fam = FAMILIES.get(family)
    if fam is None:
        return "-"
    return f"{'space-separated' if fam.split_residues else 'contiguous'}; {fam.special_tokens}"


def zoo_markdown() -> str:
    """The zoo as a Markdown table (README; a test keeps the README in step with this registry)."""
    rows = zoo_rows()
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)
