"""A frozen protein language model's per-residue states for PTM-Mamba's gated fusion, computed on the fly
or read from the embedding store (plmforge/store.py, HDF5) that `plmforge ptm embed` fills.

The PLM reads each token's parent residue, with PTM positions replaced by its mask token, so it never
reveals a modification. Computed on the fly (`PlmFeatures`), the positions the MLM objective hides in a
step are fed as the mask token too, so the PLM cannot reveal them either. Precomputed states
(`StoredPlmFeatures`) are computed once per sequence, before any masking, so they can only hide PTM
positions: during training the fused state of every MLM-hidden residue is set to zero instead. That
removes the direct copy of the hidden residue, but the PLM's states at neighbouring positions have seen
it, so amino-acid accuracy under precomputed states is optimistic; PTM-token metrics are leak-free in
both modes. Use on-the-fly states when amino-acid metrics matter, precomputed ones to save the PLM's
forward pass at every step."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from plmforge.errors import ConfigError, DataError
from plmforge.ptm.batching import batches, collate
from plmforge.ptm.tokens import PtmTokenizer
from plmforge.store import EmbeddingStore, cache_root, record_key

log = logging.getLogger("plmforge")
PTM_INPUT = "parent residues, PTM positions as the mask token"


class PlmFeatures:
    """A frozen protein language model's per-residue states for PTM-aware sequences: each token's parent
    residue is fed, with PTM positions and the positions the MLM objective hides replaced by the PLM's
    mask token, so the PLM never reveals what the model must predict."""

    def __init__(self, name: str, max_length: int) -> None:
        from plmforge.config import ModelConfig
        from plmforge.models.backbone import load_backbone

        self.name = name
        self.backbone = load_backbone(ModelConfig(name=name))
        self.backbone.model.eval().requires_grad_(False)
        self.mask_id = self.backbone.tokenizer.mask_token_id
        if self.mask_id is None:
            raise ConfigError(f"training.esm_model {name!r} has no mask token to hide PTM positions with")
        if max_length > self.backbone.max_residues:
            raise ConfigError(f"training.max_length={max_length} exceeds what {name!r} takes "
                              f"({self.backbone.max_residues} residues); lower training.max_length")

    @property
    def dim(self) -> int:
        return self.backbone.hidden_size

    def to(self, device: torch.device) -> PlmFeatures:
        self.backbone.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, hide: torch.Tensor, tok: PtmTokenizer) -> torch.Tensor:
        from plmforge.models.encoding import encode_sequences

        lengths = mask.sum(1).tolist()
        parents = ["".join(tok.parent(tok.tokens[int(t)]) for t in row[:n]) for row, n in zip(ids, lengths, strict=True)]
        enc = encode_sequences(self.backbone, parents, desc="PLM")
        width = max(len(x) for x in enc.input_ids)
        pid = torch.full((len(parents), width), self.backbone.tokenizer.pad_token_id or 0, dtype=torch.long)
        att = torch.zeros_like(pid)
        where = []
        for r, (x, special) in enumerate(zip(enc.input_ids, enc.special, strict=True)):
            x = x.copy()
            residues = np.flatnonzero(~special)
            x[residues[hide[r, : lengths[r]].cpu().numpy()]] = self.mask_id
            pid[r, : len(x)], att[r, : len(x)] = torch.from_numpy(x), 1
            where.append(residues)
        device = next(self.backbone.model.parameters()).device
        states = self.backbone.model(input_ids=pid.to(device), attention_mask=att.to(device)).last_hidden_state.cpu()
        out = torch.zeros(ids.shape[0], ids.shape[1], states.shape[-1])
        for r, residues in enumerate(where):
            out[r, : len(residues)] = states[r, torch.from_numpy(residues)]
        return out


def plm_input_key(ids: np.ndarray, tok: PtmTokenizer) -> str:
    """Store key of one sequence's PLM input: its parent residues with PTM positions as '#' (the PLM sees
    the mask token there whatever the modification, so sequences differing only in PTM type share it)."""
    text = "".join("#" if t >= tok.first_ptm else tok.parent(tok.tokens[int(t)]) for t in ids)
    return record_key({"ptm_plm_input": text})


def store_for(plm: PlmFeatures, embeddings_dir: str | None) -> EmbeddingStore:
    from plmforge.models.backbone import backbone_fingerprint

    fingerprint = backbone_fingerprint(plm.backbone, "tokens", "float32")
    fingerprint["input"] = PTM_INPUT
    return EmbeddingStore(cache_root(embeddings_dir), fingerprint)


def fill_store(plm: PlmFeatures, store: EmbeddingStore, seqs: list[np.ndarray], tok: PtmTokenizer,
               max_tokens: int, state: Any = None) -> int:
    """Compute and store the states of every sequence the store lacks (each process its share when
    `state` is an accelerate PartialState); returns how many this process computed."""
    from tqdm.auto import tqdm

    keys = [plm_input_key(s, tok) for s in seqs]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
    if state is not None:
        todo = todo[state.process_index::state.num_processes]
    main = state is None or state.is_main_process
    bar = tqdm(total=len(todo), desc="PLM states", unit="seq", mininterval=1.0, disable=not main)
    for b in batches(np.array([len(seqs[i]) for i in todo]), 64, max_tokens, None):
        rows = [todo[i] for i in b]
        ids, mask = collate([seqs[i] for i in rows], tok.pad_id)
        states = plm(ids, mask, ids >= tok.first_ptm, tok)
        for r, i in enumerate(rows):
            store.put(keys[i], states[r, : len(seqs[i])].numpy())
        bar.update(len(rows))
    bar.close()
    store.flush()
    return len(todo)


class StoredPlmFeatures:
    """PLM states read from the embedding store; the fused state of every MLM-hidden residue is zero (see
    the module notes for why and what it means for the metrics)."""

    def __init__(self, plm: PlmFeatures, embeddings_dir: str | None, seqs: list[np.ndarray], tok: PtmTokenizer,
                 command: str) -> None:
        self.dim = plm.dim
        self.store = store_for(plm, embeddings_dir)
        self.tok = tok
        missing = sum(plm_input_key(s, tok) not in self.store for s in seqs)
        if missing:
            raise DataError(f"{missing} of {len(seqs)} sequences have no precomputed PLM states of "
                            f"{plm.name!r} in {self.store.dir.parent}",
                            hint=f"run `{command}` first (with the same config), or set "
                                 "training.use_precomputed_embeddings=false to compute them on the fly")
        log.info("PLM states of %d sequences read from %s (MLM-hidden residues are zeroed in the fused "
                 "states; see `plmforge ptm embed --help`)", len(seqs), self.store.dir)

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, hide: torch.Tensor, tok: PtmTokenizer) -> torch.Tensor:
        lengths = mask.sum(1).tolist()
        out = torch.zeros(ids.shape[0], ids.shape[1], self.dim)
        for r, n in enumerate(lengths):
            row = ids[r, :n].cpu().numpy()
            out[r, :n] = torch.from_numpy(np.asarray(self.store.get(plm_input_key(row, tok)), dtype=np.float32))
        out[hide.cpu() & (ids.cpu() < tok.first_ptm)] = 0.0  # MLM-hidden residues: no PLM state
        return out

