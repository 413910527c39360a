"""`plmforge embed`: protein (mean) or per-residue embeddings of any zoo model, written to HDF5 keyed by
the records' ids, and a Python API that returns numpy arrays.

Embeddings are computed through the persistent store (plmforge/store.py): each distinct sequence once,
in length-sorted token-budget batches; an interrupted run resumes from what the store already holds.
The output file is written under a temporary name and renamed when complete. Under several processes
(`torchrun` / `accelerate launch`) each process embeds its share of the records (every record exactly
once) and the main process writes the file.

Output layout: one dataset per record, named by its id (a repeated id gets `#2`, `#3`, ... so every
record keeps its own entry; `original_id` holds the id as written), shape (H,) for mean embeddings or
(L, H) for per-residue ones (special tokens removed, truncated sequences give min(L, max length) rows);
file attributes record the model, layer, pooling, max length, dtype and the store fingerprint."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from plmforge.config import BatchingConfig, DataConfig, ModelConfig
from plmforge.data.batching import Collator, EncodedSplit
from plmforge.data.readers import read_file, sequences_table
from plmforge.data.validate import Records, table_to_records
from plmforge.errors import ConfigError
from plmforge.heads import masked_mean
from plmforge.inference import eval_loader
from plmforge.models.backbone import Backbone, backbone_fingerprint, load_backbone
from plmforge.models.encoding import encode_records
from plmforge.precision import check_precision, default_device
from plmforge.store import EmbeddingStore, cache_root, digest, record_key
from plmforge.tasks import PROBLEM_TYPES, TaskSpec

log = logging.getLogger("plmforge")
_TASK = TaskSpec("single_label_classification", 2, "none", (), "loss", "min")  # no labels: only the collator uses it


@dataclass(frozen=True)
class EmbedOptions:
    per_residue: bool = False
    layer: int = -1  # hidden-state index: -1 the last layer, 0 the embedding layer
    max_tokens: int = 8000  # token budget per batch (length-sorted)
    precision: str = "fp32"  # or bf16 (autocast; checked against fp32 in the tests)
    cache_dir: str | None = None
    force_precision: bool = False  # keep bf16 where the device only emulates it (many times slower)


@dataclass
class Embeddings:
    ids: list[str]  # unique names (repeated ids get #2, #3, ...)
    original_ids: list[str]
    sequences: list[str]
    arrays: list[np.ndarray]  # (H,) or (L, H) per record
    attrs: dict[str, Any]

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.ids, self.arrays, strict=True))

    def write(self, path: str | Path) -> Path:
        import h5py

        out = Path(path)
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        with h5py.File(tmp, "w") as fh:
            fh.attrs.update({k: str(v) if not isinstance(v, (int, float)) else v for k, v in self.attrs.items()})
            for name, orig, seq, arr in zip(self.ids, self.original_ids, self.sequences, self.arrays, strict=True):
                ds = fh.create_dataset(name.replace("/", "|"), data=arr)
                ds.attrs["original_id"] = orig
                ds.attrs["sequence_length"] = len(seq)
        os.replace(tmp, out)
        return out


def unique_ids(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out


def _records(source: str | Path | list[str] | dict[str, str], backbone: Backbone,
             sequence_column: str) -> Records:
    table = read_file(source, sequence_column) if isinstance(source, (str, Path)) else \
        sequences_table(source, sequence_column)
    cfg = DataConfig(dataset="-", sequence_column=sequence_column)
    return table_to_records(table, cfg, None, with_labels=False, fields=backbone.record_fields)


def _layer_states(model: torch.nn.Module, inputs: dict, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
    if layer == -1:
        return model(**inputs, attention_mask=attention_mask).last_hidden_state
    out = model(**inputs, attention_mask=attention_mask, output_hidden_states=True)
    if not -len(out.hidden_states) <= layer < len(out.hidden_states):
        raise ConfigError(f"--layer {layer} does not exist: the model has hidden states 0..{len(out.hidden_states) - 1}")
    return out.hidden_states[layer]


def embed(model: str | ModelConfig, sequences: str | Path | list[str] | dict[str, str],
          options: EmbedOptions | None = None, sequence_column: str = "aa_seq") -> Embeddings:
    """Embeddings of `sequences` (a file, a list or an {id: sequence} dict) with a zoo model, hub id or
    model directory; returns numpy arrays in input order."""
    from accelerate import PartialState

    opts = options or EmbedOptions()
    if opts.precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be 'fp32' or 'bf16', got {opts.precision!r}")
    check_precision(opts.precision, default_device(), opts.force_precision, f"precision={opts.precision!r}",
                    fix="EmbedOptions(precision='fp32')", keep="pass EmbedOptions(force_precision=True)")
    backbone = load_backbone(model if isinstance(model, ModelConfig) else ModelConfig(name=model))
    records = _records(sequences, backbone, sequence_column)
    kind = "tokens" if opts.per_residue else "mean"
    fingerprint = backbone_fingerprint(backbone, kind, "float32", opts.layer)
    if opts.precision != "fp32":
        fingerprint["precision"] = opts.precision
    store = EmbeddingStore(cache_root(opts.cache_dir), fingerprint)
    keys = [record_key({k: v[i] for k, v in records.inputs().items()}) for i in range(len(records))]
    state = PartialState(cpu=not torch.cuda.is_available())
    encoded = encode_records(backbone, records, _TASK, None, "input")
    _fill(backbone, encoded, keys, store, opts, state)
    store.flush()
    state.wait_for_everyone()
    store.refresh()
    arrays = []
    for key, special in zip(keys, encoded.special, strict=True):
        value = np.asarray(store.get(key), dtype=np.float32)
        arrays.append(value[~special] if opts.per_residue else value.reshape(-1))
    store.close()
    attrs = {"model": backbone.source, "family": backbone.family.name, "layer": opts.layer,
             "pooling": "none (per residue)" if opts.per_residue else "mean over residues",
             "max_residues": backbone.max_residues, "dtype": "float32", "precision": opts.precision,
             "fingerprint": digest(fingerprint), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    return Embeddings(unique_ids(records.ids), records.ids, records.sequences, arrays, attrs)


FLUSH_SECONDS = float(os.environ.get("PLMFORGE_EMBED_FLUSH_SECONDS", 60))  # the store is written this often


def _fill(backbone: Backbone, encoded_all: EncodedSplit, keys: list[str], store: EmbeddingStore, opts: EmbedOptions,
          state: Any) -> None:
    """Compute what the store lacks; with several processes, each takes every n-th missing record."""
    todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
    mine = todo[state.process_index::state.num_processes]
    if not mine:
        return
    encoded = EncodedSplit({k: [v[i] for i in mine] for k, v in encoded_all.inputs.items()},
                           [encoded_all.special[i] for i in mine], None)
    device = torch.device("cuda", state.local_process_index) if torch.cuda.is_available() else torch.device("cpu")
    model = backbone.model.to(device).eval()
    collate = Collator(backbone.pad_values(), PROBLEM_TYPES[_TASK.problem_type])
    batching = BatchingConfig(mode="tokens", max_tokens=opts.max_tokens)
    loader = eval_loader(encoded, dataclasses.replace(batching, eval_batch_size=None), collate)
    bar = tqdm(total=len(mine), desc="embedding", unit="seq", mininterval=1.0, disable=not state.is_main_process)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.precision == "bf16")
    flushed = time.time()
    try:
        with torch.inference_mode(), autocast:
            for batch in loader:
                inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
                mask = batch["attention_mask"].to(device)
                states = _layer_states(model, inputs, mask, opts.layer).float()  # (B, L, H)
                if not opts.per_residue:
                    states = masked_mean(states, batch["residue_mask"].to(device))  # (B, H)
                for b, i in enumerate(batch["idx"].tolist()):
                    n = int(mask[b].sum())
                    store.put(keys[mine[i]], (states[b] if not opts.per_residue else states[b, :n]).cpu().numpy())
                bar.update(len(batch["idx"]))
                if time.time() - flushed > FLUSH_SECONDS:  # a kill loses at most this much work
                    store.flush()
                    flushed = time.time()
    except KeyboardInterrupt:
        store.flush()  # what was computed is kept: the same command again computes only the rest
        bar.close()
        distinct = set(keys)
        kept = sum(1 for k in distinct if k in store)
        raise KeyboardInterrupt(f"embedding stopped: {kept} of {len(distinct)} distinct sequences are "
                                f"kept in the embedding store ({store.dir}); run the same plmforge embed command "
                                "again to compute only the rest") from None
    bar.close()
