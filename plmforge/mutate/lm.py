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
from plmforge.inputs import THREE_DI

STRUCTURE_LETTERS = THREE_DI.lower() + "#"  # SaProt's structure letters (# = unknown)

log = logging.getLogger("plmforge")


@dataclass
class Tokens:
    """One (window of a) sequence as the model reads it."""

    ids: np.ndarray  # token ids, special tokens included
    where: np.ndarray  # the token index of each residue
    extra: dict[str, np.ndarray]  # the model's further inputs, aligned with ids (ProSST's ss_input_ids)
    # (residues, 20) vocabulary ids of the 20 amino acids at each residue, or (residues, 20, k): k tokens each
    # (SaProt: an amino acid with every structure letter), whose probabilities add up
    candidates: np.ndarray
    masks: np.ndarray  # (residues,): the id that masks each residue


@dataclass
class Site:
    """One batch item: token ids (a site possibly masked) and the token positions to read, each with the ids
    of its 20 amino-acid candidates."""

    ids: np.ndarray
    extra: dict[str, np.ndarray]
    positions: np.ndarray  # token indices
    candidates: np.ndarray  # (len(positions), 20) or (len(positions), 20, k), as Tokens.candidates


@dataclass
class MaskedLM:
    name: str
    model: Any  # a transformers *ForMaskedLM
    tokenizer: Any
    family: Any
    max_residues: int
    aa_ids: torch.Tensor  # (20,) vocabulary ids of AMINO_ACIDS, in that order (SaProt: with no structure, `A#`)
    mask_id: int
    pad_id: int
    device: torch.device
    autocast: torch.dtype | None = None  # bf16/fp16 forward passes (set only where the device runs them natively)

    @property
    def structure_field(self) -> str | None:
        """The structure column this model reads beside the residues (SaProt: foldseek_seq, ProSST:
        prosst_tokens), None for a sequence-only model."""
        return _structure_field(self.family)

    def encode(self, sequence: str, structure: list[str] | None = None) -> Tokens:
        """The model's tokens of a sequence (with its structure symbols, one per residue, for a structure-aware
        model). SaProt's tokens pair a residue with its 3Di letter: a site is masked as `#` + its 3Di letter
        (the structure kept) and an amino acid's probability there is the sum over its tokens with every
        structure letter, as SaProt's own mutation scoring (and ProteinGym's) computes it."""
        fields = {"sequence": [sequence]}
        if self.structure_field is not None:
            if structure is None or len(structure) != len(sequence):
                raise ConfigError(f"{self.name} reads a structure token at every residue: give the structure "
                                  "(--structure FILE for SaProt's 3Di letters, --structure-tokens for ProSST's)")
            joined = "".join(structure) if self.family.text_field else ",".join(structure)
            fields[self.structure_field] = [joined]
        enc = self.family.encode(self.tokenizer, fields, len(sequence))
        ids, special = enc.input_ids[0], enc.special[0]
        where = np.flatnonzero(~special)
        if len(where) != len(sequence):
            raise ConfigError(f"{self.name}: the tokenizer gave {len(where)} residue tokens for {len(sequence)} "
                              "residues; mutation scoring needs one token per residue")
        extra = {k: v[0] for k, v in enc.inputs.items() if k != "input_ids"}
        if self.family.text_field:  # residue x structure-letter tokens
            letters = [c.lower() for c in structure]  # type: ignore[union-attr]
            # an amino acid's probability is its tokens' summed over every structure letter (SaProt's and
            # ProteinGym's scoring): the same (20, letters) ids at every residue
            every = np.array(self._ids([a + c for a in AMINO_ACIDS for c in STRUCTURE_LETTERS]), dtype=np.int64)
            candidates = np.broadcast_to(every.reshape(len(AMINO_ACIDS), -1),
                                         (len(sequence), len(AMINO_ACIDS), len(STRUCTURE_LETTERS)))
            masks = np.array(self._ids(["#" + c for c in letters]), dtype=np.int64)
        else:
            candidates = np.broadcast_to(self.aa_ids.numpy(), (len(sequence), len(AMINO_ACIDS)))
            masks = np.full(len(sequence), self.mask_id, dtype=np.int64)
        return Tokens(np.asarray(ids, dtype=np.int64), where, extra, candidates, masks)

    def _ids(self, tokens: list[str]) -> list[int]:
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        bad = [t for t, i in zip(tokens, ids, strict=True) if i is None or i == self.tokenizer.unk_token_id]
        if bad:
            raise ConfigError(f"{self.name}: the vocabulary has no token {bad[0]!r}")
        return list(ids)

    def site_log_probs(self, items: list[Site], max_tokens: int | None = None,
                       progress: Any = None) -> list[np.ndarray]:
        """For each item: the log-softmax over the whole vocabulary at its positions, read at each position's
        20 candidates — an array (positions, 20). Items run in batches of at most `max_tokens` padded
        tokens, similar lengths together."""
        out: list[np.ndarray | None] = [None] * len(items)
        budget = max_tokens or default_max_tokens(self.device)
        pads = self.family.pad_values(self.tokenizer)
        for batch in _batches([len(item.ids) for item in items], budget):
            width = max(len(items[i].ids) for i in batch)
            names = ["input_ids", *items[batch[0]].extra]
            inputs = {k: torch.full((len(batch), width), self.pad_id if k == "input_ids" else pads.get(k, 0),
                                    dtype=torch.long) for k in names}
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(items[i].ids)
                inputs["input_ids"][row, :n] = torch.from_numpy(items[i].ids)
                for k, v in items[i].extra.items():
                    inputs[k][row, :n] = torch.from_numpy(v)
                mask[row, :n] = 1
            low = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else nullcontext()
            with torch.inference_mode(), low:
                try:
                    logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()},
                                        attention_mask=mask.to(self.device)).logits
                except IndexError as exc:  # an id beyond an embedding table: structure tokens of another model
                    extra = f" (its inputs: {', '.join(names[1:])})" if len(names) > 1 else ""
                    raise ConfigError(f"{self.name}: a token is out of the model's vocabulary{extra}: structure "
                                      "tokens made for another model (e.g. ProSST-2048's tokens given to "
                                      f"ProSST-20) do not fit it: {exc}") from None
                rows = np.concatenate([np.full(len(items[i].positions), row) for row, i in enumerate(batch)])
                at = torch.from_numpy(np.concatenate([items[i].positions for i in batch])).to(self.device)
                chosen = torch.from_numpy(np.concatenate([items[i].candidates for i in batch])).to(self.device)
                lp = torch.log_softmax(logits[torch.from_numpy(rows).to(self.device), at].float(), dim=-1)
                if chosen.dim() == 3:  # (positions, 20, tokens of one amino acid): their probabilities summed
                    lp = torch.logsumexp(lp[torch.arange(len(lp), device=lp.device)[:, None, None], chosen], -1)
                else:
                    lp = lp.gather(1, chosen)
                lp = lp.cpu().numpy()  # (positions of the batch, 20)
            start = 0
            for i in batch:
                out[i] = lp[start:start + len(items[i].positions)]
                start += len(items[i].positions)
            if progress is not None:
                progress.update(sum(len(items[i].positions) for i in batch))
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
    for aa in AMINO_ACIDS:  # (SaProt's tokens pair each residue with a structure letter: `A#` stands for A)
        tid = tokenizer.convert_tokens_to_ids(aa + "#" if family.text_field else aa)
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
    def structure_field(self) -> str | None:
        return self.members[0].structure_field

    def encode(self, sequence: str, structure: list[str] | None = None) -> Tokens:
        return self.members[0].encode(sequence, structure)

    def site_log_probs(self, items: list[Site], max_tokens: int | None = None,
                       progress: Any = None) -> list[np.ndarray]:
        share = _Share(progress, len(self.members)) if progress is not None else None
        parts = [m.site_log_probs(items, max_tokens, share) for m in self.members]
        return [np.mean([p[i] for p in parts], axis=0, dtype=np.float64) for i in range(len(items))]


def _structure_field(family: Any) -> str | None:
    fields = family.record_fields
    return fields[0] if fields else None


def member_names(name: str) -> list[str]:
    """The models a --model value names: an ensemble's members (`esm1v`), the names joined by commas, or itself."""
    return list(ENSEMBLES.get(name, ())) or [n.strip() for n in name.split(",") if n.strip()]


def structure_field_of(model: str | MaskedLM | MaskedLMEnsemble, trust_remote_code: bool = False) -> str | None:
    """The structure column a model (loaded, or named: then from its family alone, no weights read; an
    ensemble by its first member) reads beside the residues: foldseek_seq (SaProt), prosst_tokens (ProSST) or
    None."""
    if isinstance(model, (MaskedLM, MaskedLMEnsemble)):
        return model.structure_field
    from plmforge.models.backbone import resolve_model

    first = (member_names(model) or [model])[0]
    return _structure_field(resolve_model(ModelConfig(name=first, trust_remote_code=trust_remote_code)).family)


def load_scorer(name: str, trust_remote_code: bool = False, device: str | None = None, precision: str | None = None,
                force_precision: bool = False) -> MaskedLM | MaskedLMEnsemble:
    """One masked LM (load_masked_lm), or an ensemble: `esm1v` (ESM-1v's five models) or several models
    joined by commas (zoo names, hub ids or local directories sharing one vocabulary)."""
    names = member_names(name)
    if len(names) == 1:
        return load_masked_lm(names[0], trust_remote_code, device, precision, force_precision)
    if not names:
        raise ConfigError("--model is empty: give a masked LM (zoo name, hub id or directory), esm1v, or several "
                          "models joined by commas")
    log.info("%s: an ensemble of %d masked LMs, each scoring every site (%s); their memory adds up", name,
             len(names), ", ".join(names))
    members = [load_masked_lm(n, trust_remote_code, device, precision, force_precision) for n in names]
    return MaskedLMEnsemble(name, members)
