"""Building, training (HuggingFace Trainer), saving, loading and generating with the instruction model.

A run directory holds config.yaml, tokenizer/ (the decoder's, with plmforge's placeholder tokens),
checkpoint-N/ (the Trainer's: trainable.safetensors = LoRA + modality adapter + fragment adapter
[+ encoder if trained], adapter/ in peft's layout, optimizer, scheduler, RNG and trainer state), final/
(the same weights after training), log_history.jsonl, and with a test file test_metrics.json and
test_predictions.csv. `training.resume_from_checkpoint` restores all of it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from plmforge import owned
from plmforge.checkpoint import is_sealed, seal, verify_all
from plmforge.config import read_config_file
from plmforge.errors import ConfigError, RunDirError
from plmforge.instruct.config import (
    InstructConfig,
    check_training_precision,
    instruct_config_from_dict,
    training_arguments,
)
from plmforge.instruct.data import (
    FRAGMENT_TOKEN,
    PROTEIN_TOKEN,
    Collator,
    Example,
    Features,
    featurize,
    load_examples,
)
from plmforge.instruct.model import FragmentPerceiver, ModalityAdapter, ProteinTextModel
from plmforge.precision import check_precision, default_device
from plmforge.train.stopping import graceful_stop

log = logging.getLogger("plmforge")
WEIGHTS = "trainable.safetensors"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Built:
    config: InstructConfig
    model: ProteinTextModel
    tokenizer: Any  # the decoder's
    encoder: Any  # plmforge Backbone (tokenizer, family, max residues)


def build(config: InstructConfig, tokenizer_dir: Path | None = None) -> Built:
    """Encoder (plmforge zoo loading), decoder (+ placeholder tokens, + LoRA), adapters."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from plmforge.config import ModelConfig
    from plmforge.methods.peft_common import check_targets
    from plmforge.models.backbone import load_backbone
    from plmforge.models.families import quiet_transformers

    torch.manual_seed(config.training.seed)  # the new weights (placeholder rows, LoRA, adapters) are seeded
    m = config.model
    dtype = DTYPES[m.dtype]
    if dtype == torch.float16 and not torch.cuda.is_available():
        raise ConfigError("model.dtype=float16 needs a CUDA GPU here; use float32 (or bfloat16 on a CPU with native "
                          "bfloat16)")
    check_precision("bf16" if dtype == torch.bfloat16 else None, default_device(), config.training.force_precision,
                    "model.dtype=bfloat16", fix="model.dtype=float32", keep="set training.force_precision=true")
    encoder = load_backbone(ModelConfig(name=m.encoder, trust_remote_code=m.trust_remote_code))
    if encoder.record_fields:
        raise ConfigError(f"model.encoder {m.encoder!r} reads {', '.join(encoder.record_fields)} besides the sequence; "
                          "the instruction model gives its encoder sequences only: choose a sequence-only encoder")
    if m.max_sequence_length > encoder.max_residues:
        raise ConfigError(f"model.max_sequence_length={m.max_sequence_length} exceeds what the encoder takes "
                          f"({encoder.max_residues} residues)")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or m.decoder),
                                                      trust_remote_code=m.trust_remote_code)
            decoder = AutoModelForCausalLM.from_pretrained(m.decoder, dtype=dtype,
                                                           trust_remote_code=m.trust_remote_code)
    except OSError as exc:
        raise ConfigError(f"model.decoder {m.decoder!r} could not be loaded: {exc}") from None
    if tokenizer_dir is None:
        tokenizer.add_special_tokens({"additional_special_tokens": [PROTEIN_TOKEN, FRAGMENT_TOKEN]})
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the decoder's tokenizer ({m.decoder}) has no end-of-sequence token")
    if len(tokenizer) > decoder.get_input_embeddings().num_embeddings:
        decoder.resize_token_embeddings(len(tokenizer))
    if config.training.gradient_checkpointing:
        decoder.gradient_checkpointing_enable()
    hidden = decoder.config.hidden_size
    if hidden % m.perceiver_heads:
        raise ConfigError(f"model.perceiver_heads={m.perceiver_heads} does not divide the decoder's hidden size "
                          f"{hidden}")
    check_targets(decoder, config.lora.target_modules, "lora.target_modules")
    decoder = get_peft_model(decoder, LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha,
                                                 lora_dropout=config.lora.dropout,
                                                 target_modules=list(config.lora.target_modules),
                                                 task_type="CAUSAL_LM"))
    adapter = ModalityAdapter(encoder.hidden_size, m.adapter_hidden, hidden).to(dtype)
    perceiver = FragmentPerceiver(hidden, m.perceiver_latents, m.perceiver_layers, m.perceiver_heads).to(dtype)
    model = ProteinTextModel(encoder.model.to(dtype), decoder, adapter, perceiver,
                             tokenizer.convert_tokens_to_ids(PROTEIN_TOKEN),
                             tokenizer.convert_tokens_to_ids(FRAGMENT_TOKEN), m.train_encoder)
    return Built(config, model, tokenizer, encoder)


def features(built: Built, examples: list[Example], with_answer: bool = True) -> list[Features]:
    from plmforge.models.encoding import encode_sequences

    enc = encode_sequences(built.encoder, [e.sequence for e in examples], built.config.model.max_sequence_length,
                           desc="encoding proteins", rows=[e.row for e in examples])
    return [featurize(e, built.tokenizer, ids, special, built.config.model.perceiver_latents, with_answer)
            for e, ids, special in zip(examples, enc.input_ids, enc.special, strict=True)]


def collator(built: Built, side: str = "right") -> Collator:
    return Collator(built.tokenizer.pad_token_id, built.encoder.tokenizer.pad_token_id or 0, side)


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Features]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Features:
        return self.items[i]


def _trainer_class():  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file
    from transformers import Trainer

    class InstructTrainer(Trainer):
        """Saves and restores exactly the trained weights (LoRA and both adapters), never the frozen
        decoder or encoder; stage `align` trains the modality adapter with the InfoNCE loss."""

        stage = "instruct"
        temperature = 0.07

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            if self.stage == "align":
                loss = model.align_loss(**inputs, temperature=self.temperature)
                return (loss, {"loss": loss}) if return_outputs else loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _save(self, output_dir=None, state_dict=None):  # type: ignore[no-untyped-def]
            """`state_dict`: the whole weights the Trainer gathered from a sharded engine (DeepSpeed
            ZeRO-3, FSDP); without one, the local parameters."""
            out = Path(output_dir or self.args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            weights = self.model.trainable_state()
            if state_dict is not None:
                weights = {k: state_dict[k].detach().cpu().contiguous() for k in weights if k in state_dict}
            save_file(weights, str(out / WEIGHTS))
            lora = {k.removeprefix("decoder."): v for k, v in weights.items() if k.startswith("decoder.")}
            # peft's own layout; the placeholder rows added to the embeddings are always overwritten by splicing
            self.model.decoder.save_pretrained(str(out / "adapter"), state_dict=lora or None,
                                               save_embedding_layers=False)
            torch.save(self.args, out / "training_args.bin")

        def _save_checkpoint(self, model, trial):  # type: ignore[no-untyped-def]
            """The Trainer's checkpoint, then its checksum record (written last: see `_resume_point`)."""
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                seal(Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # type: ignore[no-untyped-def]
            # before the Trainer reads anything of it (optimizer, scheduler, RNG states come after this)
            verify_all(Path(resume_from_checkpoint))
            load_trainable(model or self.model, Path(resume_from_checkpoint))

    return InstructTrainer


def _save_final(trainer: Any, directory: Path) -> None:
    """The trained weights, gathered from every process under a sharded engine (the Trainer's save_model
    hands ZeRO-3 / FSDP's full state to _save), then their checksum record."""
    trainer.save_model(str(directory))
    if trainer.args.should_save:
        seal(directory)


def load_trainable(model: ProteinTextModel, directory: Path) -> None:
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    if not path.is_file():
        raise RunDirError(f"{directory} holds no {WEIGHTS}: not a plmforge instruct checkpoint")
    weights = load_file(str(path))
    params = dict(model.named_parameters())
    unknown = [k for k in weights if k not in params]
    if unknown:
        raise RunDirError(f"{path}: weights {unknown[:3]} do not belong to this model (another config?)")
    with torch.no_grad():
        for k, v in weights.items():
            params[k].copy_(v.to(params[k].dtype))


def _set_stage(model: ProteinTextModel, stage: str) -> None:
    """align: the modality adapter alone trains; instruct: LoRA, modality and fragment adapters."""
    for name, p in model.named_parameters():
        if name.startswith("encoder."):
            p.requires_grad_(model.train_encoder and stage == "instruct")
        elif name.startswith("adapter."):
            p.requires_grad_(True)
        elif name.startswith("perceiver.") or "lora_" in name:
            p.requires_grad_(stage == "instruct")


@dataclass
class InstructResult:
    run_dir: Path
    log_history: list[dict[str, Any]]
    test_metrics: dict[str, float] | None


def _stop_callback(flag: Any):  # type: ignore[no-untyped-def]
    """Ctrl-C / SIGTERM (see `graceful_stop`): the Trainer saves a checkpoint at the end of the current step
    (sealed like every other) and stops; `resume_from_checkpoint=last` continues from that very step."""
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if flag.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopAtStep()


def train_instruct(config: InstructConfig, callbacks: list[Any] | None = None) -> InstructResult:
    """Train (one or two stages), then score the test split. `callbacks`: extra transformers
    TrainerCallbacks. The first Ctrl-C or SIGTERM stops at the end of the current step with a checkpoint
    saved there (a second one stops at once)."""
    tcfg = config.training
    out = Path(tcfg.output_dir).expanduser()
    resume = tcfg.resume_from_checkpoint
    inputs = [config.data.train, config.data.validation, config.data.test]
    if not resume:
        owned.check_output_dir(out, "instruct", overwrite=tcfg.overwrite_output_dir, inputs=inputs,
                               how="set training.overwrite_output_dir=true",
                               other="choose another training.output_dir (or resume with "
                                     "training.resume_from_checkpoint)")
    check_training_precision(tcfg)  # before any model is loaded or file written
    built = build(config, out / "tokenizer" if resume and (out / "tokenizer").is_dir() else None)
    d = config.data
    maxlen = config.model.max_sequence_length
    # the data is read before anything is written: a data error leaves no directory behind
    train_set = _Dataset(features(built, load_examples(d.train, d.task, maxlen, d.max_samples)))
    eval_set = _Dataset(features(built, load_examples(d.validation, d.task, maxlen, d.max_samples))) \
        if d.validation else None
    if not resume:
        owned.replace_dir(out, "instruct", inputs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    built.tokenizer.save_pretrained(str(out / "tokenizer"))
    stages = tcfg.stage.split("+")
    history: list[dict[str, Any]] = []
    trainer = None
    with graceful_stop() as flag:
        for stage in stages:
            trainer = _train_stage(config, built, stage, stages, train_set, eval_set, flag, callbacks or [],
                                   history) or trainer
            if flag.requested:
                step = trainer.state.global_step if trainer else 0
                raise KeyboardInterrupt(f"stopped at step {step} of stage {stage}; the state is saved in its "
                                        "checkpoint: continue with training.resume_from_checkpoint=last")
    assert trainer is not None
    _save_final(trainer, out / "final")
    (out / "log_history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    metrics = None
    if d.test:
        examples = load_examples(d.test, d.task, maxlen, d.max_samples)
        answers = generate(built, examples, max_new_tokens=tcfg.max_new_tokens)
        from plmforge.instruct.scores import score, write_predictions

        metrics = score(examples, answers)
        (out / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
        write_predictions(examples, answers, out / "test_predictions.csv")
    return InstructResult(out, history, metrics)


def _train_stage(config: InstructConfig, built: Built, stage: str, stages: list[str], train_set: Any,
                 eval_set: Any, flag: Any, callbacks: list[Any], history: list[dict[str, Any]]) -> Any:
    """One stage's Trainer run (a finished align stage of a resumed run is read, not run again)."""
    tcfg = config.training
    out, resume = Path(tcfg.output_dir), tcfg.resume_from_checkpoint
    _set_stage(built.model, stage)
    two = len(stages) > 1
    stage_dir = out / "align" if stage == "align" and two else out
    if stage == "align" and two and resume and (stage_dir / "final" / WEIGHTS).is_file():
        verify_all(stage_dir / "final")
        load_trainable(built.model, stage_dir / "final")  # stage 1 finished before the stop
        log.info("stage align: finished earlier, its adapter read from %s", stage_dir / "final")
        return None
    args = training_arguments(tcfg, stage_dir, has_eval=eval_set is not None,
                              stage_epochs=tcfg.align_epochs if stage == "align" else None,
                              max_steps=-1 if stage == "align" and two else tcfg.max_steps)
    trainer = _trainer_class()(model=built.model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                               data_collator=collator(built), callbacks=[_stop_callback(flag), *callbacks])
    trainer.stage, trainer.temperature = stage, tcfg.align_temperature
    ckpt = _resume_point(stage_dir, resume, required=not (stage == "instruct" and two))
    log.info("stage %s: %d trainable parameters", stage,
             sum(p.numel() for p in built.model.parameters() if p.requires_grad))
    trainer.train(resume_from_checkpoint=ckpt)
    history += [{"stage": stage, **h} for h in trainer.state.log_history]
    if stage == "align" and two and not flag.requested:
        _save_final(trainer, stage_dir / "final")  # the second stage starts from this adapter
    return trainer


def _resume_point(stage_dir: Path, resume: str | None, required: bool = True) -> str | None:
    """The checkpoint this stage resumes from: `last` = its newest checkpoint-N (none yet is an error only
    when `required`: the instruct stage of a run stopped during alignment starts afresh); a directory is
    used by the stage whose directory holds it."""
    if not resume:
        return None
    if resume == "last":
        points = sorted(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        sealed = [p for p in points if is_sealed(p)]
        if sealed and sealed[-1] != points[-1]:  # a stop while the Trainer was writing the newest one
            log.warning("%s has no checksum record: the run stopped while writing it; resuming from %s",
                        points[-1], sealed[-1].name)
            points = sealed
        if not points:
            if required:
                raise RunDirError(f"training.resume_from_checkpoint=last: {stage_dir} has no checkpoint-N directory")
            return None
        return str(points[-1])
    path = Path(resume)
    if not (path / WEIGHTS).is_file():
        raise RunDirError(f"training.resume_from_checkpoint={resume}: no {WEIGHTS} there")
    return resume if path.resolve().parent == stage_dir.resolve() else None


def load_instruct(run_dir: str | Path, checkpoint: str = "final") -> Built:
    rd = Path(run_dir)
    for needed in ("config.yaml", "tokenizer", checkpoint):
        if not (rd / needed).exists():
            raise RunDirError(f"{rd} is not a finished plmforge instruct run: {needed} is missing")
    try:
        raw = read_config_file(rd / "config.yaml")
    except ConfigError as exc:
        raise RunDirError(f"{rd} is not a usable plmforge instruct run: {exc}") from None
    config = instruct_config_from_dict(raw)
    verify_all(rd / checkpoint)  # weights without their checksum record are not used (--trust-unverified)
    built = build(config, rd / "tokenizer")
    load_trainable(built.model, rd / checkpoint)
    built.model.eval()
    if torch.cuda.is_available() and not getattr(built.model.decoder, "is_loaded_in_4bit", False):
        built.model.cuda()  # generation runs where the weights are (untested here: no GPU on the CI machine)
    return built


def generate(built: Built, examples: list[Example], max_new_tokens: int = 64, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 8) -> list[str]:
    """Answers to the examples' prompts (their `answer` fields are not shown to the model)."""
    from tqdm.auto import tqdm

    items = features(built, examples, with_answer=False)
    collate = collator(built, side="left")
    device = next(built.model.adapter.parameters()).device
    out: list[str] = []
    built.model.eval()
    for i in tqdm(range(0, len(items), batch_size), desc="generating", unit="batch", leave=False):
        batch = {k: v.to(device) for k, v in collate(items[i:i + batch_size]).items()}
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                  "pad_token_id": built.tokenizer.pad_token_id,
                                  "eos_token_id": built.tokenizer.eos_token_id}
        if do_sample:
            kwargs |= {"temperature": temperature, "top_p": top_p}
        tokens = built.model.generate(**batch, **kwargs)
        out += [t.strip() for t in built.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    return out
