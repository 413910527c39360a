"""A masked language model with its trained LM head, as mutation scoring needs it: the model, its tokenizer,
the token ids of the 20 amino acids and of the mask, and one batched call that returns the log-probabilities
of the 20 amino acids at chosen token positions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from plmforge.config import ModelConfig
from plmforge.errors import ConfigError
from plmforge.data.notation import AMINO_ACIDS

log = logging.getLogger("plmforge")


@dataclass
class MaskedLM:
    name: str
    model: Any  # a transformers *ForMaskedLM
    tokenizer: Any
    family: Any
    max_residues: int
    aa_ids: torch.Tensor  # (20,) vocabulary ids of AMINO_ACIDS, in that order
    mask_id: int
    pad_id: int
    device: torch.device
    autocast: torch.dtype | None = None  # bf16/fp16 forward passes (set only where the device runs them natively)

    def encode(self, sequence: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a sequence with the family's special tokens, and the token index of each residue."""
        enc = self.family.encode(self.tokenizer, {"sequence": [sequence]}, len(sequence))
        ids, special = enc.input_ids[0], enc.special[0]
        where = np.flatnonzero(~special)
        if len(where) != len(sequence):
            raise ConfigError(f"{self.name}: the tokenizer gave {len(where)} residue tokens for {len(sequence)} "
                              "residues; mutation scoring needs one token per residue")
        return np.asarray(ids, dtype=np.int64), where

    def site_log_probs(self, items: list[tuple[np.ndarray, np.ndarray]], max_tokens: int | None = None,
                       progress: Any = None) -> list[np.ndarray]:
        """For each (token ids, token positions): the log-softmax over the whole vocabulary at those
        positions, read at the 20 amino acids — an array (positions, 20). Items run in batches of at most
        `max_tokens` padded tokens, similar lengths together."""
        out: list[np.ndarray | None] = [None] * len(items)
        budget = max_tokens or default_max_tokens(self.device)
        for batch in _batches([len(ids) for ids, _ in items], budget):
            width = max(len(items[i][0]) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(items[i][0])
                ids[row, :n] = torch.from_numpy(items[i][0])
                mask[row, :n] = 1
            low = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else nullcontext()
            with torch.inference_mode(), low:
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                lp = torch.log_softmax(logits.float(), dim=-1)[..., self.aa_ids.to(self.device)].cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = lp[row, items[i][1]]
            if progress is not None:
                progress.update(sum(len(items[i][1]) for i in batch))
        return out  # type: ignore[return-value]


def default_max_tokens(device: torch.device) -> int:
    """Padded tokens per batch of masked copies. On a CPU one copy of a 300-residue protein already keeps the
    cores busy: 400 to 8,192 tokens ran at 11-13 sites/s with AntiBERTy on 2 cores (benchmarks/results.md,
    "Mutation scan"); GPUs want larger batches (not measured here)."""
    return 2048 if device.type == "cpu" else 16384


def _batches(lengths: list[int], max_tokens: int) -> Iterator[list[int]]:
    order = np.argsort(lengths, kind="stable")
    batch: list[int] = []
    for i in order:
        width = max([lengths[j] for j in batch] + [lengths[i]])
        if batch and width * (len(batch) + 1) > max_tokens:
            yield batch
            batch = []
        batch.append(int(i))
    if batch:
        yield batch


def load_masked_lm(name: str, trust_remote_code: bool = False, device: str | None = None,
                   precision: str | None = None, force_precision: bool = False) -> MaskedLM:
    """The model `name` (zoo name, hub id or local directory) with its LM head. Refused, with the reason,
    for a family without a masked-LM head and for a checkpoint whose head weights are missing (its head
    would be random)."""
    from plmforge.models.backbone import load_tokenizer, resolve_model
    from plmforge.precision import LOW_PRECISION, check_precision

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if precision not in (None, "fp32", *LOW_PRECISION):
        raise ConfigError(f"--precision {precision!r}: choose fp32, {' or '.join(LOW_PRECISION)}")
    check_precision(precision, dev, force_precision, f"--precision {precision}", fix="--precision fp32",
                    keep="pass --force-precision")  # before any weight is read
    resolved = resolve_model(ModelConfig(name=name, trust_remote_code=trust_remote_code))
    family = resolved.family
    model = family.load_masked_lm(resolved.source, trust_remote_code, name)
    tokenizer = load_tokenizer(resolved)
    unk = tokenizer.unk_token_id
    ids = []
    for aa in AMINO_ACIDS:
        tid = tokenizer.convert_tokens_to_ids(aa)
        if tid is None or tid == unk:
            raise ConfigError(f"{name}: the vocabulary has no token for the amino acid {aa!r}, so it cannot score "
                              "substitutions to it")
        ids.append(tid)
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"{name}: the tokenizer has no mask token, so masked marginals cannot be computed")
    model.to(dev).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return MaskedLM(name, model, tokenizer, family, resolved.max_residues, torch.tensor(ids),
                    int(tokenizer.mask_token_id), int(pad), dev, LOW_PRECISION.get(precision or ""))


ESM1V = tuple(f"esm1v_t33_650M_UR90S_{i}" for i in range(1, 6))
ENSEMBLES = {"esm1v": ESM1V}  # a family id that names its published ensemble


class _Share:
    """A progress bar that a member of an ensemble moves by its share: every member scores every site."""

    def __init__(self, bar: Any, members: int) -> None:
        self.bar, self.members = bar, members

    def update(self, n: float) -> None:
        self.bar.update(n / self.members)


@dataclass
class MaskedLMEnsemble:
    """Several masked LMs with one vocabulary scored as one: their log-probabilities at every site averaged.
    Every scoring here is a sum of log-probability differences, so the ensemble's score of a variant is the
    mean of its members' scores (the ESM-1v paper's ensemble of five models)."""

    name: str
    members: list[MaskedLM]

    def __post_init__(self) -> None:
        first = self.members[0]
        for m in self.members[1:]:
            if (m.tokenizer.get_vocab() != first.tokenizer.get_vocab() or m.mask_id != first.mask_id
                    or m.pad_id != first.pad_id):
                raise ConfigError(f"{self.name}: {m.name} and {first.name} do not share one vocabulary, so their "
                                  "scores cannot be averaged site by site; score them one at a time")

    @property
    def max_residues(self) -> int:
        return min(m.max_residues for m in self.members)

    @property
    def mask_id(self) -> int:
        return self.members[0].mask_id

    def encode(self, sequence: str) -> tuple[np.ndarray, np.ndarray]:
        return self.members[0].encode(sequence)

    def site_log_probs(self, items: list[tuple[np.ndarray, np.ndarray]], max_tokens: int | None = None,
                       progress: Any = None) -> list[np.ndarray]:
        share = _Share(progress, len(self.members)) if progress is not None else None
        parts = [m.site_log_probs(items, max_tokens, share) for m in self.members]
        return [np.mean([p[i] for p in parts], axis=0, dtype=np.float64) for i in range(len(items))]


def load_scorer(name: str, trust_remote_code: bool = False, device: str | None = None, precision: str | None = None,
                force_precision: bool = False) -> MaskedLM | MaskedLMEnsemble:
    """One masked LM (load_masked_lm), or an ensemble: `esm1v` (ESM-1v's five models) or several models
    joined by commas (zoo names, hub ids or local directories sharing one vocabulary)."""
    names = list(ENSEMBLES.get(name, ())) or [n.strip() for n in name.split(",") if n.strip()]
    if len(names) == 1:
        return load_masked_lm(names[0], trust_remote_code, device, precision, force_precision)
    if not names:
        raise ConfigError("--model is empty: give a masked LM (zoo name, hub id or directory), esm1v, or several "
                          "models joined by commas")
    log.info("%s: an ensemble of %d masked LMs, each scoring every site (%s); their memory adds up", name,
             len(names), ", ".join(names))
    members = [load_masked_lm(n, trust_remote_code, device, precision, force_precision) for n in names]
    return MaskedLMEnsemble(name, members)
