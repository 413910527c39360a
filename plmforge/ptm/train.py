"""Training PTM-Mamba: masked language modelling over PTM-aware sequences, with accelerate.

Config sections follow the published pipeline: `dataset` (dataset_location, sequence_column_name,
val_size, test_size, split_seed), `model` (sizes, extra PTM names) and `training` (epochs, log_steps =
validate every N steps, per_device_train_batch_size, max_tokens_per_batch, lr, masking probabilities,
output_dir, resume_from_checkpoint). A run directory holds config.yaml, split_mapping.json (id -> split),
metrics.json (train per step, validation per evaluation over the whole validation set, test at the end),
best.ckpt (lowest validation loss) and last.ckpt; resuming restores model, optimizer, scheduler, step,
best score and random state, and gives the same run as an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from plmforge import owned
from plmforge.checkpoint import load_file_checked, save_file_checked
from plmforge.checks import fraction, positive
from plmforge.config import apply_overrides, read_config_file, section_kwargs
from plmforge.errors import ConfigError, DataError, RunDirError, did_you_mean
from plmforge.ptm.batching import batches, collate, mask_tokens
from plmforge.ptm.mamba import PtmMamba
from plmforge.ptm.plm import PlmFeatures, StoredPlmFeatures, fill_store, store_for
from plmforge.ptm.tokens import PtmTokenizer
from plmforge.train.stopping import graceful_stop

log = logging.getLogger("plmforge")


@dataclass(frozen=True)
class PtmDatasetConfig:
    dataset_location: str = ""
    sequence_column_name: str = "ptm_seq"
    id_column_name: str | None = None  # None: the row number is the id
    val_size: float = 0.1  # a fraction of the rows, or a count when >= 1
    test_size: float = 0.1
    split_seed: int = 42

    def __post_init__(self) -> None:
        if not self.dataset_location:
            raise ConfigError("dataset.dataset_location must name a CSV/TSV/Parquet file of PTM sequences")
        for key in ("val_size", "test_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"dataset.{key} must be >= 0")


@dataclass(frozen=True)
class PtmModelConfig:
    d_model: int = 256
    n_layers: int = 4
    d_state: int = 16
    ptm_tokens: tuple[str, ...] = ()  # extra PTM names as "Name:RESIDUES", e.g. "Hypusine:K"

    def __post_init__(self) -> None:
        for key in ("d_model", "n_layers", "d_state"):
            positive(f"model.{key}", getattr(self, key))
        for item in self.ptm_tokens:
            name, _, residues = str(item).rpartition(":")
            if not name.strip() or not residues:
                raise ConfigError(f"model.ptm_tokens: write each extra PTM as Name:RESIDUES, got {item!r}")
            odd = sorted(set(residues) - set("ACDEFGHIKLMNPQRSTVWY"))
            if odd:
                raise ConfigError(f"model.ptm_tokens: {item!r} names {', '.join(map(repr, odd))}, not one of the 20 "
                                  "amino-acid letters; write the residues the modification sits on, e.g. "
                                  "Hypusine:K")

    def extra_ptms(self) -> dict[str, str]:
        return dict(item.rsplit(":", 1) for item in self.ptm_tokens)


@dataclass(frozen=True)
class PtmTrainingConfig:
    output_dir: str = "runs/ptm_mamba"
    overwrite_output_dir: bool = False
    num_train_epochs: int = 10
    log_steps: int = 100  # validate (on the whole validation set) every N optimizer steps
    per_device_train_batch_size: int = 8
    max_tokens_per_batch: int = 100000
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_length: int = 1024  # tokens per sequence (longer ones are cut, and counted in the log)
    mask_prob: float = 0.15  # amino-acid tokens selected for the MLM objective
    ptm_mask_prob: float = 0.5  # PTM tokens selected (PTM-aware masking)
    seed: int = 42
    resume_from_checkpoint: str | None = None  # a run's last.ckpt (or the run directory)
    use_esm: bool = False  # fuse a protein language model's per-residue embeddings (gated)
    esm_model: str = "esm2_t6_8M_UR50D"  # any zoo name or local model directory with a mask token
    use_precomputed_embeddings: bool = False  # read the PLM states `plmforge ptm embed` stored (see ptm/plm.py)
    embeddings_dir: str | None = None  # the embedding store's root (default: $PLMFORGE_CACHE_DIR or the user cache)

    def __post_init__(self) -> None:
        for key in ("num_train_epochs", "log_steps", "per_device_train_batch_size", "max_tokens_per_batch", "lr",
                    "max_length"):
            positive(f"training.{key}", getattr(self, key))
        fraction("training.mask_prob", self.mask_prob)
        fraction("training.ptm_mask_prob", self.ptm_mask_prob)
        if self.use_precomputed_embeddings and not self.use_esm:
            raise ConfigError("training.use_precomputed_embeddings=true reads PLM states for the gated fusion; "
                              "set training.use_esm=true as well (and training.esm_model)")


@dataclass(frozen=True)
class PtmConfig:
    dataset: PtmDatasetConfig
    model: PtmModelConfig = field(default_factory=PtmModelConfig)
    training: PtmTrainingConfig = field(default_factory=PtmTrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(getattr(self, f.name)).items()}
                for f in dataclasses.fields(self)}


SECTIONS = {"dataset": PtmDatasetConfig, "model": PtmModelConfig, "training": PtmTrainingConfig}


def load_ptm_config(path: str | Path | None, overrides: list[str] | None = None) -> PtmConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_config_file(path)
        loc = (raw.get("dataset") or {}).get("dataset_location")
        base = Path(path).resolve().parent
        if isinstance(loc, str) and not Path(loc).is_absolute() and (base / loc).exists():
            raw["dataset"]["dataset_location"] = str((base / loc).resolve())
    apply_overrides(raw, overrides)
    built = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}{did_you_mean(name, SECTIONS)}; sections are "
                              + ", ".join(SECTIONS))
        built[name] = SECTIONS[name](**section_kwargs(name, SECTIONS[name], values or {}, None))
    if "dataset" not in built:
        raise ConfigError("the config has no 'dataset' section (dataset.dataset_location is required)")
    return PtmConfig(**built)


# ---- data -----------------------------------------------------------------------------------------

def split_ids(ids: list[str], cfg: PtmDatasetConfig) -> dict[str, str]:
    """id -> train/val/test, seeded; sizes are fractions (< 1) or counts."""
    n = len(ids)

    def count(size: float) -> int:
        return int(round(size * n)) if size < 1 else int(size)

    n_val, n_test = count(cfg.val_size), count(cfg.test_size)
    if n_val + n_test >= n:
        raise DataError(f"val_size + test_size ({n_val} + {n_test}) leave no training rows of {n}",
                        file=cfg.dataset_location)
    order = np.random.default_rng(cfg.split_seed).permutation(n)
    split = {}
    for rank, i in enumerate(order):
        split[ids[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return split


def read_sequences(cfg: PtmDatasetConfig, tok: PtmTokenizer, max_length: int) -> tuple[list[str], list[np.ndarray]]:
    from plmforge.data.readers import read_file

    table = read_file(cfg.dataset_location, cfg.sequence_column_name)
    df = table.df
    if cfg.sequence_column_name not in df.columns:
        raise DataError(f"no column {cfg.sequence_column_name!r}; the columns are {', '.join(map(str, df.columns))}",
                        file=cfg.dataset_location, hint="set dataset.sequence_column_name")
    ids = [str(v) for v in df[cfg.id_column_name]] if cfg.id_column_name else [str(i) for i in range(len(df))]
    if len(set(ids)) != len(ids):
        raise DataError(f"the id column {cfg.id_column_name!r} repeats ids", file=cfg.dataset_location)
    seqs, cut = [], 0
    for i, text in enumerate(df[cfg.sequence_column_name].astype(str)):
        where = f"{cfg.dataset_location}, row {i + 1}" + (f" (line {table.lines[i]})" if table.lines else "")
        ids_ = tok.encode(text, where)
        if not len(ids_):
            raise DataError("empty sequence", file=where)
        cut += len(ids_) > max_length
        seqs.append(ids_[:max_length])
    if cut:
        log.warning("%d sequences are longer than training.max_length=%d tokens and were cut", cut, max_length)
    return ids, seqs


# ---- training --------------------------------------------------------------------------------------

@dataclass
class PtmResult:
    run_dir: Path
    metrics: list[dict[str, Any]]
    test: dict[str, float] | None


def evaluate(model: PtmMamba, seqs: list[np.ndarray], cfg: PtmTrainingConfig, tok: PtmTokenizer,
             seed: int, plm: PlmFeatures | None = None) -> dict[str, float]:
    """Loss, perplexity, accuracy and PTM-token accuracy over every sequence of a split (fixed masks)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total, correct, n, ptm_correct, ptm_n = 0.0, 0, 0, 0, 0
    model.eval()
    with torch.no_grad():
        for b in batches(np.array([len(s) for s in seqs]), cfg.per_device_train_batch_size * 2,
                         cfg.max_tokens_per_batch, None):
            ids, mask = collate([seqs[i] for i in b], tok.pad_id)
            inputs, labels = mask_tokens(ids, mask, tok, cfg.mask_prob, cfg.ptm_mask_prob, gen)
            states = plm(ids, mask, (labels != -100) | (ids >= tok.first_ptm), tok).to(device) if plm else None
            logits = model(inputs.to(device), mask.to(device), states).float().cpu()
            sel = labels != -100
            total += float(torch.nn.functional.cross_entropy(logits[sel], labels[sel], reduction="sum"))
            hit = logits[sel].argmax(-1) == labels[sel]
            correct, n = correct + int(hit.sum()), n + int(sel.sum())
            ptm = labels[sel] >= tok.first_ptm
            ptm_correct, ptm_n = ptm_correct + int(hit[ptm].sum()), ptm_n + int(ptm.sum())
    loss = total / max(n, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "accuracy": correct / max(n, 1),
            "ptm_accuracy": ptm_correct / ptm_n if ptm_n else float("nan"), "masked_tokens": n, "masked_ptm": ptm_n}


def train_ptm(config: PtmConfig) -> PtmResult:
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    tcfg = config.training
    resume = _resume_path(tcfg)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    out = _output_dir(tcfg, resume, accelerator.is_main_process, [config.dataset.dataset_location])
    tok = PtmTokenizer.with_extra(config.model.extra_ptms())
    ids, seqs = read_sequences(config.dataset, tok, tcfg.max_length)
    split = split_ids(ids, config.dataset)
    parts = {s: [seqs[i] for i, k in enumerate(ids) if split[k] == s] for s in ("train", "val", "test")}
    plm = plm_features(config, seqs, tok)
    if accelerator.is_main_process:  # only now that data and options are known good: a refused run writes nothing
        if resume is None:
            owned.replace_dir(out, "ptm", [config.dataset.dataset_location])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        (out / "split_mapping.json").write_text(json.dumps(split))
    accelerator.wait_for_everyone()
    torch.manual_seed(tcfg.seed)
    model = new_model(config, tok, plm)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    lengths = np.array([len(s) for s in parts["train"]])
    per_epoch = len(batches(lengths, tcfg.per_device_train_batch_size, tcfg.max_tokens_per_batch, None))
    per_epoch = math.ceil(per_epoch / accelerator.num_processes)
    total = per_epoch * tcfg.num_train_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / tcfg.warmup_steps) if tcfg.warmup_steps else 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = {"step": 0, "best": math.inf, "metrics": []}
    if resume is not None:
        blob = load_file_checked(resume)
        accelerator.unwrap_model(model).load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        state = {"step": blob["step"], "best": blob["best"], "metrics": blob["metrics"]}
    gen = torch.Generator().manual_seed(tcfg.seed)
    bar = tqdm(total=total, initial=state["step"], desc="ptm-mamba", unit="step",
               disable=not accelerator.is_main_process)
    with graceful_stop() as flag:
        for epoch in range(tcfg.num_train_epochs):
            epoch_batches = batches(lengths, tcfg.per_device_train_batch_size, tcfg.max_tokens_per_batch,
                                    np.random.default_rng([tcfg.seed, epoch]))
            mine = epoch_batches[accelerator.process_index::accelerator.num_processes][:per_epoch]
            for k, b in enumerate(mine):
                step_here = epoch * per_epoch + k
                gen.manual_seed(tcfg.seed * 100003 + step_here)  # masks depend on the step only: resumable
                if step_here < state["step"]:
                    continue
                loss = _train_step(model, optimizer, scheduler, accelerator, [parts["train"][i] for i in b], tcfg,
                                   tok, gen, plm)
                state["step"] += 1
                bar.update()
                state["metrics"].append({"split": "train", "epoch": epoch, "step": state["step"], "loss": loss,
                                         "lr": scheduler.get_last_lr()[0]})
                if state["step"] % tcfg.log_steps == 0 or state["step"] == total:
                    _validate_and_save(out, config, accelerator, model, optimizer, scheduler, state, epoch,
                                       parts["val"], tok, plm)
                if _stop_requested(flag, accelerator):
                    _stop(out, config, accelerator, model, optimizer, scheduler, state)
    bar.close()
    test = None
    if parts["test"] and accelerator.is_main_process:
        best = out / "best.ckpt" if (out / "best.ckpt").is_file() else out / "last.ckpt"
        final = new_model(config, tok, plm)
        final.load_state_dict(load_file_checked(best)["model"])
        test = evaluate(final.to(accelerator.device), parts["test"], tcfg, tok, tcfg.seed + 1, plm)
        state["metrics"].append({"split": "test", "step": state["step"], "checkpoint": best.name, **test})
        (out / "metrics.json").write_text(json.dumps(state["metrics"], indent=1))
    return PtmResult(out, state["metrics"], test)


def _stop_requested(flag: Any, accelerator: Any) -> bool:
    """Whether Ctrl-C / SIGTERM asked to stop; every process agrees (one collective when distributed)."""
    requested = bool(flag.requested)
    if accelerator.num_processes > 1:
        t = torch.tensor([float(requested)], device=accelerator.device)
        requested = bool(accelerator.reduce(t, reduction="sum").item() > 0)
    return requested


def _stop(out: Path, config: PtmConfig, accelerator: Any, model: Any, optimizer: Any, scheduler: Any,
          state: dict) -> None:
    """Save last.ckpt at this step (the data order and masks follow from the step: a resume continues here
    exactly) and stop."""
    if accelerator.is_main_process:
        _save(out / "last.ckpt", accelerator.unwrap_model(model), optimizer, scheduler, state, config)
        (out / "metrics.json").write_text(json.dumps(state["metrics"], indent=1))
    accelerator.wait_for_everyone()
    raise KeyboardInterrupt(f"stopped at step {state['step']}; the state is saved in {out / 'last.ckpt'}: continue "
                            f"with training.resume_from_checkpoint={out}")


def _resume_path(tcfg: PtmTrainingConfig) -> Path | None:
    resume = Path(tcfg.resume_from_checkpoint) if tcfg.resume_from_checkpoint else None
    if resume is not None and resume.is_dir():
        resume = resume / "last.ckpt"
    if resume is not None and not resume.is_file():
        raise RunDirError(f"training.resume_from_checkpoint: {resume} does not exist")
    return resume


def _output_dir(tcfg: PtmTrainingConfig, resume: Path | None, main: bool, inputs: list[str]) -> Path:
    out = Path(tcfg.output_dir).expanduser()
    if main and resume is None:
        owned.check_output_dir(out, "ptm", overwrite=tcfg.overwrite_output_dir, inputs=inputs,
                               how="set training.overwrite_output_dir=true",
                               other="choose another training.output_dir (or resume from its last.ckpt)")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"training.output_dir {out} is a file; choose a directory")
    return out


def plm_features(config: PtmConfig, seqs: list[np.ndarray], tok: PtmTokenizer) -> Any:
    """The PLM states for the gated fusion: none, computed on the fly, or read from the store."""
    tcfg = config.training
    if not tcfg.use_esm:
        return None
    plm = PlmFeatures(tcfg.esm_model, tcfg.max_length)
    if tcfg.use_precomputed_embeddings:
        return StoredPlmFeatures(plm, tcfg.embeddings_dir, seqs, tok, "plmforge ptm embed --config <your config>")
    return plm.to(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))


def new_model(config: PtmConfig, tok: PtmTokenizer, plm: Any) -> PtmMamba:
    m = config.model
    return PtmMamba(len(tok), m.d_model, m.n_layers, m.d_state, plm.dim if plm else 0)


def _train_step(model: Any, optimizer: Any, scheduler: Any, accelerator: Any, seqs: list[np.ndarray],
                tcfg: PtmTrainingConfig, tok: PtmTokenizer, gen: torch.Generator, plm: Any) -> float:
    model.train()
    ids, mask = collate(seqs, tok.pad_id)
    inputs, labels = mask_tokens(ids, mask, tok, tcfg.mask_prob, tcfg.ptm_mask_prob, gen)
    device = accelerator.device
    states = plm(ids, mask, (labels != -100) | (ids >= tok.first_ptm), tok).to(device) if plm else None
    logits = model(inputs.to(device), mask.to(device), states)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.to(logits.device).flatten(),
                                             ignore_index=-100)
    accelerator.backward(loss)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return float(loss.detach())


def _validate_and_save(out: Path, config: PtmConfig, accelerator: Any, model: Any, optimizer: Any, scheduler: Any,
                       state: dict, epoch: int, val_seqs: list[np.ndarray], tok: PtmTokenizer, plm: Any) -> None:
    tcfg = config.training
    val = evaluate(accelerator.unwrap_model(model), val_seqs, tcfg, tok, tcfg.seed, plm) if val_seqs else None
    if val is not None:
        state["metrics"].append({"split": "val", "epoch": epoch, "step": state["step"], **val})
        log.info("step %d: validation loss %.4f, accuracy %.3f, PTM accuracy %.3f", state["step"], val["loss"],
                 val["accuracy"], val["ptm_accuracy"])
    if accelerator.is_main_process:
        if val is not None and val["loss"] < state["best"]:
            state["best"] = val["loss"]
            _save(out / "best.ckpt", accelerator.unwrap_model(model), optimizer, scheduler, state, config)
        _save(out / "last.ckpt", accelerator.unwrap_model(model), optimizer, scheduler, state, config)
        (out / "metrics.json").write_text(json.dumps(state["metrics"], indent=1))


def embed_ptm(config: PtmConfig) -> tuple[int, int, Path]:
    """`plmforge ptm embed`: the PLM states of every sequence of the dataset into the embedding store
    (each process its share under accelerate launch); returns (computed, already stored, store dir)."""
    from accelerate import PartialState

    tcfg = config.training
    if not tcfg.use_esm:
        raise ConfigError("ptm embed precomputes the PLM states of the gated fusion: set training.use_esm=true "
                          "and training.esm_model (and training.use_precomputed_embeddings=true to train on them)")
    tok = PtmTokenizer.with_extra(config.model.extra_ptms())
    _, seqs = read_sequences(config.dataset, tok, tcfg.max_length)
    state = PartialState(cpu=not torch.cuda.is_available())
    plm = PlmFeatures(tcfg.esm_model, tcfg.max_length).to(state.device)
    store = store_for(plm, tcfg.embeddings_dir)
    before = len(store)
    computed = fill_store(plm, store, seqs, tok, tcfg.max_tokens_per_batch, state)
    state.wait_for_everyone()
    store.refresh()
    store.close()
    return computed, before, store.dir


def _save(path: Path, model: PtmMamba, optimizer: Any, scheduler: Any, state: dict, config: PtmConfig) -> None:
    save_file_checked({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "step": state["step"], "best": state["best"],
                       "metrics": state["metrics"], "config": config.to_dict()}, path)


# ---- using a trained model ----------------------------------------------------------------------------

def load_ptm_model(checkpoint: str | Path) -> tuple[PtmMamba, PtmTokenizer]:
    """A trained PTM-Mamba and its tokenizer from best.ckpt or last.ckpt (or a run directory: best.ckpt)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "best.ckpt" if (path / "best.ckpt").is_file() else path / "last.ckpt"
    if not path.is_file():
        raise RunDirError(f"{path} does not exist: give a PTM-Mamba run directory or its best.ckpt/last.ckpt")
    blob = load_file_checked(path)
    m = PtmModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in blob["config"]["model"].items()})
    t = blob["config"]["training"]
    tok = PtmTokenizer.with_extra(m.extra_ptms())
    plm = PlmFeatures(t["esm_model"], t["max_length"]) if t.get("use_esm") else None
    model = PtmMamba(len(tok), m.d_model, m.n_layers, m.d_state, plm.dim if plm else 0)
    model.load_state_dict(blob["model"])
    model.plm_features = plm  # type: ignore[assignment]  # the PLM the fusion was trained with
    return model.eval(), tok


@torch.no_grad()
def ptm_embeddings(model: PtmMamba, tok: PtmTokenizer, sequences: list[str], batch_size: int = 16) -> list[np.ndarray]:
    """Per-token hidden states (one row per residue or PTM token) for PTM-aware sequences, e.g. as
    features for PTM site prediction; batched by length, returned in input order."""
    encoded = [tok.encode(s, f"sequence {i + 1}") for i, s in enumerate(sequences)]
    out: list[np.ndarray | None] = [None] * len(encoded)
    device = next(model.parameters()).device
    for b in batches(np.array([len(e) for e in encoded]), batch_size, 10 ** 9, None):
        ids, mask = collate([encoded[i] for i in b], tok.pad_id)
        plm = getattr(model, "plm_features", None)
        states = plm(ids, mask, ids >= tok.first_ptm, tok).to(device) if plm is not None else None
        hidden = model.hidden_states(ids.to(device), mask.to(device), states).float().cpu().numpy()
        for row, i in enumerate(b):
            out[i] = hidden[row, : len(encoded[i])]
    return out  # type: ignore[return-value]
