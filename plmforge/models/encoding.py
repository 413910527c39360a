"""Records -> tokenised, model-ready splits. Training and inference both take their inputs from here,
so a sequence is encoded the same way wherever it is predicted."""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from plmforge.data.batching import EncodedSplit
from plmforge.data.validate import Records
from plmforge.inputs import SEQUENCE
from plmforge.models.backbone import Backbone
from plmforge.models.families import Encoded
from plmforge.tasks import LabelScaler, TaskSpec

log = logging.getLogger("plmforge")


def encode_sequences(backbone: Backbone, sequences: list[str], max_residues: int | None = None,
                     fields: dict[str, list[str]] | None = None, desc: str = "tokenising",
                     rows: list[str] | None = None) -> Encoded:
    """Every named input of the backbone for these sequences (plus any per-residue `fields` it reads)."""
    with tqdm(total=len(sequences), desc=desc, unit="seq", leave=False, mininterval=1.0) as bar:
        return backbone.family.encode(backbone.tokenizer, {SEQUENCE: sequences, **(fields or {})},
                                      max_residues or backbone.max_residues, rows, bar, backbone.inputs)


def encode_records(backbone: Backbone, records: Records, task: TaskSpec, scaler: LabelScaler | None,
                   name: str) -> EncodedSplit:
    """Tokenise a split and turn its labels into the problem type's targets; truncation, rare-residue
    mapping and unknown tokens are logged with their counts."""
    enc = encode_sequences(backbone, records.sequences, fields=records.fields, desc=f"tokenising {name}",
                           rows=records.rows)
    if enc.n_truncated:
        log.warning("%s: %d of %d sequences are longer than %d residues and were truncated to it", name,
                    enc.n_truncated, len(records), backbone.max_residues)
    if enc.rare_mapped:
        mapped = ", ".join(f"{k}->{backbone.family.rare_map[k]} x{v}" for k, v in sorted(enc.rare_mapped.items()))
        log.info("%s: rare residues mapped for the %s family: %s", name, backbone.family.name, mapped)
    if enc.n_unknown:
        log.warning("%s: %d residues have no token in this model's vocabulary and are fed as the unknown token",
                    name, enc.n_unknown)
    targets = None
    if records.labels is not None:
        targets, dropped = task.problem.targets(records.labels, enc.special, task.num_labels,
                                                scaler or LabelScaler("none"))
        if dropped:
            log.warning("%s: truncation dropped the labels of %d residues beyond model.max_length", name, dropped)
    return EncodedSplit(enc.inputs, enc.special, targets)
