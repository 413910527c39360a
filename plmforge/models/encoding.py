"""Records -> tokenised, model-ready splits. Training and inference both take their inputs from here,
so a sequence is encoded the same way wherever it is predicted."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from plmforge.data.batching import EncodedSplit
from plmforge.data.ondisk import RaggedWriter, Workspace
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


ENCODE_ROWS = 20_000  # rows tokenised together when a split on disk is tokenised into files


def encode_records(backbone: Backbone, records: Records, task: TaskSpec, scaler: LabelScaler | None,
                   name: str) -> EncodedSplit:
    """Tokenise a split and turn its labels into the problem type's targets; truncation, rare-residue
    mapping and unknown tokens are logged with their counts. A split on disk is tokenised in parts into
    files on disk (the same tokens and targets as in memory)."""
    if records.on_disk:
        return _encode_on_disk(backbone, records, task, scaler, name)
    enc = encode_sequences(backbone, records.sequences, fields=records.fields, desc=f"tokenising {name}",
                           rows=records.rows)
    _report(backbone, name, len(records), enc.n_truncated, enc.rare_mapped, enc.n_unknown)
    targets = None
    if records.labels is not None:
        targets, dropped = task.problem.targets(records.labels, enc.special, task.num_labels,
                                                scaler or LabelScaler("none"))
        _report_dropped(name, dropped)
    return EncodedSplit(enc.inputs, enc.special, targets)


def reuse_tokens(records: Records, task: TaskSpec, scaler: LabelScaler | None,
                 tokens: dict[str, tuple[EncodedSplit, int]]) -> EncodedSplit | None:
    """The split from sequences tokenised before (another cross-validation fold of the same data: the same
    tokens), with its own targets; None when a sequence is new, or the records carry per-residue columns
    or live on disk (then they are tokenised)."""
    if records.on_disk or records.fields or any(s not in tokens for s in records.sequences):
        return None
    rows = [tokens[s] for s in records.sequences]
    names = rows[0][0].inputs.keys() if rows else ()
    inputs = {k: [enc.inputs[k][j] for enc, j in rows] for k in names}
    special = [enc.special[j] for enc, j in rows]
    targets = None
    if records.labels is not None:
        targets, _ = task.problem.targets(records.labels, special, task.num_labels, scaler or LabelScaler("none"))
    return EncodedSplit(inputs, special, targets)


def _report(backbone: Backbone, name: str, n: int, truncated: int, rare: dict[str, int], unknown: int) -> None:
    if truncated:
        log.warning("%s: %d of %d sequences are longer than %d residues and were truncated to it", name,
                    truncated, n, backbone.max_residues)
    if rare:
        mapped = ", ".join(f"{k}->{backbone.family.rare_map[k]} x{v}" for k, v in sorted(rare.items()))
        log.info("%s: rare residues mapped for the %s family: %s", name, backbone.family.name, mapped)
    if unknown:
        log.warning("%s: %d residues have no token in this model's vocabulary and are fed as the unknown token",
                    name, unknown)


def _report_dropped(name: str, dropped: int) -> None:
    if dropped:
        log.warning("%s: truncation dropped the labels of %d residues beyond model.max_length", name, dropped)


def _encode_on_disk(backbone: Backbone, records: Records, task: TaskSpec, scaler: LabelScaler | None,
                    name: str) -> EncodedSplit:
    ws = Workspace()
    inputs: dict[str, RaggedWriter] = {}
    special = ws.writer(f"{name}-special", np.bool_)
    per_residue = task.problem.per_residue
    target_writer = ws.writer(f"{name}-targets") if per_residue and records.labels is not None else None
    target_parts: list[np.ndarray] = []
    truncated = unknown = dropped = 0
    rare: Counter[str] = Counter()
    n = len(records)
    with tqdm(total=n, desc=f"tokenising {name}", unit="seq", leave=False, mininterval=1.0, delay=1.0) as bar:
        for a in range(0, n, ENCODE_ROWS):
            idx = range(a, min(n, a + ENCODE_ROWS))
            fields = {k: [v[i] for i in idx] for k, v in records.inputs().items()}
            enc = backbone.family.encode(backbone.tokenizer, fields, backbone.max_residues,
                                         [records.rows[i] for i in idx], bar, backbone.inputs)
            for key, values in enc.inputs.items():
                if key not in inputs:
                    inputs[key] = ws.writer(f"{name}-{key}", np.int32)
                inputs[key].extend(values)
            special.extend(enc.special)
            truncated, unknown = truncated + enc.n_truncated, unknown + enc.n_unknown
            rare.update(enc.rare_mapped)
            if records.labels is not None:
                targets, lost = task.problem.targets([records.labels[i] for i in idx], enc.special, task.num_labels,
                                                     scaler or LabelScaler("none"))
                dropped += lost
                if target_writer is not None:
                    target_writer.extend(targets)
                else:
                    target_parts.append(np.asarray(targets))
    _report(backbone, name, n, truncated, dict(rare), unknown)
    _report_dropped(name, dropped)
    labels: Any = None
    if records.labels is not None:
        labels = target_writer.finish() if target_writer is not None else np.concatenate(target_parts)
    return EncodedSplit({k: w.finish() for k, w in inputs.items()}, special.finish(), labels)
