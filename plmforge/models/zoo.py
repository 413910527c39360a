"""The model zoo: the one registry of named models that the CLI, docs and tests read.

A zoo entry names a checkpoint (HuggingFace id, or files that a package ships) and its family
(models/families.py says how each family is loaded and tokenised). A local directory works too: its
family comes from `model_type` in its config.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plmforge.errors import ConfigError
from plmforge.models.families import FAMILIES
from plmforge.registry import Registry


@dataclass(frozen=True)
class ZooEntry:
    name: str
    hf_id: str
    family: str
    params: str  # published size of the checkpoint
    hidden_size: int
    max_residues: int  # longest sequence the model takes, special tokens excluded
    note: str = ""
    locate: Callable[[], tuple[str, str]] | None = None  # local (model dir, tokenizer source), else the hub id
    trainable_here: bool = True  # False: listed for reference; the note says why it cannot be used

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return FAMILIES[self.family].lora_targets if self.family in FAMILIES else ()


ZOO: Registry[ZooEntry] = Registry("model")


def register_model(entry: ZooEntry) -> ZooEntry:
    return ZOO.register(entry.name, entry)


def antiberty_files() -> tuple[str, str]:
    """Checkpoint directory and vocabulary of the AntiBERTy model shipped in the antiberty wheel."""
    try:
        import antiberty
    except ImportError:
        raise ConfigError("model 'antiberty' needs the antiberty package: pip install antiberty==0.1.3") from None
    root = Path(antiberty.__file__).parent / "trained_models"
    return str(root / "AntiBERTy_md_smooth"), str(root / "vocab.txt")


register_model(ZooEntry("antiberty", "antiberty==0.1.3 (PyPI wheel)", "bert", "26M", 512, 510,
                        "antibody sequences; works offline out of the box", locate=antiberty_files))

for _name, _size, _hidden in [("esm2_t6_8M_UR50D", "8M", 320), ("esm2_t12_35M_UR50D", "35M", 480),
                              ("esm2_t30_150M_UR50D", "150M", 640), ("esm2_t33_650M_UR50D", "650M", 1280),
                              ("esm2_t36_3B_UR50D", "3B", 2560), ("esm2_t48_15B_UR50D", "15B", 5120)]:
    register_model(ZooEntry(_name, f"facebook/{_name}", "esm", _size, _hidden, 1022))
register_model(ZooEntry("esm1b_t33_650M_UR50S", "facebook/esm1b_t33_650M_UR50S", "esm", "650M", 1280, 1022))
for _i in range(1, 6):
    register_model(ZooEntry(f"esm1v_t33_650M_UR90S_{_i}", f"facebook/esm1v_t33_650M_UR90S_{_i}", "esm", "650M",
                            1280, 1022))
for _name, _id, _note in [
    ("prot_bert", "Rostlab/prot_bert", "UniRef100"),
    ("prot_bert_bfd", "Rostlab/prot_bert_bfd", "BFD"),
    ("IgBert", "Exscientia/IgBert", "paired antibody chains"),
    ("IgBert_unpaired", "Exscientia/IgBert_unpaired", "unpaired antibody chains"),
]:
    register_model(ZooEntry(_name, _id, "bert", "420M", 1024, 1022, _note))
for _name, _id, _size, _note in [
    ("prot_t5_xl_uniref50", "Rostlab/prot_t5_xl_uniref50", "3B (encoder 1.2B)", "UniRef50"),
    ("prot_t5_xl_bfd", "Rostlab/prot_t5_xl_bfd", "3B (encoder 1.2B)", "BFD"),
    ("prot_t5_xxl_uniref50", "Rostlab/prot_t5_xxl_uniref50", "11B (encoder 4.8B)", "UniRef50"),
    ("prot_t5_xxl_bfd", "Rostlab/prot_t5_xxl_bfd", "11B (encoder 4.8B)", "BFD"),
    ("IgT5", "Exscientia/IgT5", "3B (encoder 1.2B)", "paired antibody chains"),
    ("IgT5_unpaired", "Exscientia/IgT5_unpaired", "3B (encoder 1.2B)", "unpaired antibody chains"),
]:
    register_model(ZooEntry(_name, _id, "t5", _size, 1024, 4096, _note))
register_model(ZooEntry("ankh-base", "ElnaggarLab/ankh-base", "t5", "450M", 768, 4096))
register_model(ZooEntry("ankh-large", "ElnaggarLab/ankh-large", "t5", "1.2B", 1536, 4096))
for _vocab in (20, 128, 512, 1024, 2048, 4096):
    register_model(ZooEntry(f"ProSST-{_vocab}", f"AI4Protein/ProSST-{_vocab}", "prosst", "110M", 768, 2046,
                            f"structure-token model: column prosst_tokens with {_vocab}-token structure sequences "
                            "from ProSST's own structure quantizer (not computed by plmforge); needs "
                            "model.trust_remote_code=true"))
for _name, _size, _hidden, _note in [("SaProt_35M_AF2", "35M", 480, "AlphaFold2 structures"),
                                     ("SaProt_650M_AF2", "650M", 1280, "AlphaFold2 structures"),
                                     ("SaProt_650M_PDB", "650M", 1280, "PDB and AlphaFold2 structures")]:
    register_model(ZooEntry(_name, f"westlake-repl/{_name}", "saprot", _size, _hidden, 1022,
                            f"residue + 3Di tokens from the foldseek_seq column (plmforge structure); {_note}"))
register_model(ZooEntry("Prime_690M", "AI4Protein/Prime_690M", "prime", "690M", 1280, 1022,
                        "its model code exists only in its hub repository, which could not be read or tested here "
                        "(no network), so no family describes its inputs yet", trainable_here=False))


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
            "note": e.note if e.trainable_here else f"not usable: {e.note}",
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
