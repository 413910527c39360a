"""Writes the generated reference pages of the documentation site from the code itself, so that they cannot
drift: docs/reference/cli.md (every command's --help, from the parser) and docs/reference/config.md (every
config key with its type, default, choices and the comment beside it in plmforge/config.py, and each
method's options). tests/test_docs.py regenerates them and fails when the committed pages differ.

    .venv/bin/python docs/gen_reference.py          # rewrite the pages
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
import typing
from pathlib import Path

DOCS = Path(__file__).resolve().parent
COLUMNS = "100"  # argparse wraps help to the terminal width: fixed, so the page is the same everywhere


def cli_page() -> str:
    os.environ["COLUMNS"] = COLUMNS
    from plmforge.cli import build_parser
    from plmforge.cli_tools import commands

    parser = build_parser()
    parser.prog = "plmforge"
    out = ["# Command line", "",
           "Generated from plmforge's own argument parser (`docs/gen_reference.py`); every command ends with an "
           "example. `plmforge COMMAND --help` prints the same text.", "",
           "```text", _help(parser), "```", ""]
    for path, sub in commands(parser):
        out += [f"## plmforge {' '.join(path)}", "", "```text", _help(sub), "```", ""]
    return "\n".join(out)


def _help(parser: argparse.ArgumentParser) -> str:
    text = parser.format_help().rstrip()
    return re.sub(r"[ \t]+\n", "\n", text)


def config_page() -> str:
    from plmforge import config
    from plmforge.methods import METHODS

    out = ["# Configuration keys", "",
           "Generated from the config classes in `plmforge/config.py` and the methods' option classes "
           "(`docs/gen_reference.py`): every key of a run's `config.yaml`, its type, its default and, where the "
           "choice is closed, its choices. Set a key in a YAML file or on the command line as "
           "`section.key=value`; the resolved config is saved in every run directory.", ""]
    for section, cls in config._SECTION_TYPES.items():
        if section == "method":
            continue
        out += _section(section, cls)
    out += ["## method", "", "`method.name` picks the fine-tuning method; its options are written flat beside it "
            "(`method.rank=16`). Default method: `freeze`.", ""]
    for name, spec in METHODS.items():
        out += _section(f"method (name: {name})", spec.options, prefix="method", level="###")
    return "\n".join(out)


def _section(title: str, cls: type, prefix: str | None = None, level: str = "##") -> list[str]:
    prefix = prefix or title
    doc = inspect.getdoc(cls) or ""
    comments = _comments(cls)
    hints = typing.get_type_hints(cls)
    choices = getattr(cls, "CHOICES", {})
    rows = [f"{level} {title}", ""]
    if doc and not doc.startswith(cls.__name__ + "("):
        rows += [" ".join(doc.split()), ""]
    rows += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        meaning = comments.get(f.name, "")
        if f.name in choices:
            meaning = (meaning + "; " if meaning else "") + "one of " + ", ".join(f"`{c}`" for c in choices[f.name])
        rows.append(f"| `{prefix}.{f.name}` | {_type(hints.get(f.name))} | {_value(default)} | "
                    f"{meaning.replace('|', '/')} |")
    return rows + [""]


def _type(hint: object) -> str:
    text = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = re.sub(r"\bNoneType\b", "None", text)
    return f"`{text}`".replace("|", "or")


def _value(value: object) -> str:
    if isinstance(value, str) and value == "(required)":
        return value
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`" if value else '`""`'


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in the source of the class or of the class that declares it (a base): the one on
    its line, after any comment lines just above it."""
    out: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        out.update(_own_comments(klass))
    return out


def _own_comments(cls: type) -> dict[str, str]:
    lines = inspect.getsource(cls).splitlines()
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"\s+(\w+)\s*:\s*[^=]+?(?:=.*?)?(?:#\s*(.*))?$", line)
        if m and not stripped.startswith(("def ", "return", "if ", "raise")) and ":" in stripped.split("=")[0]:
            text = " ".join(above + ([m.group(2).strip()] if m.group(2) else []))
            if text:
                out[m.group(1)] = text
        above = []
    return out


# ESM-2's sizes: name, layers, hidden size, attention heads (the intermediate size is 4 x hidden)
ESM2 = [("esm2_t6_8M_UR50D", 6, 320, 20), ("esm2_t12_35M_UR50D", 12, 480, 20), ("esm2_t30_150M_UR50D", 30, 640, 20),
        ("esm2_t33_650M_UR50D", 33, 1280, 20), ("esm2_t36_3B_UR50D", 36, 2560, 40),
        ("esm2_t48_15B_UR50D", 48, 5120, 40)]
MEMORY_BATCH = (8, 512)  # sequences of a batch, tokens of each
SHARDS = 8  # GPUs sharing weights, gradients and optimizer state under FSDP / ZeRO-3


def memory_page() -> str:
    """Every ESM-2 size through plmforge's own memory estimate (plmforge/train/memory.py), built on the meta
    device from its architecture: nothing is downloaded or allocated."""
    import torch
    from torch import nn
    from transformers import EsmConfig, EsmModel

    from plmforge.config import load_config
    from plmforge.train.memory import MB, estimate

    n_seq, length = MEMORY_BATCH
    gib = MB * 1024

    def total(model: nn.Module, hf: object, method: str, checkpointing: bool, frozen: bool) -> tuple[float, float]:
        """GiB in all, and of the weights, gradients and AdamW state (what FSDP / ZeRO-3 shard)."""
        cfg = load_config(None, ["data.dataset=amp", f"batching.batch_size={n_seq}", "training.mixed_precision=bf16",
                                 f"model.gradient_checkpointing={str(checkpointing).lower()}", f"method.name={method}"])
        est = estimate(model, hf, [length] * n_seq, cfg, frozen, torch.device("cuda"), measure_available=False)
        return est.total_mb / 1024, (est.parameters_mb + est.gradients_mb + est.optimizer_mb) / 1024  # MiB -> GiB

    rows = []
    for name, layers, hidden, heads in ESM2:
        hf = EsmConfig(vocab_size=33, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       intermediate_size=4 * hidden, max_position_embeddings=1026, position_embedding_type="rotary",
                       attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
        with torch.device("meta"):
            backbone = EsmModel(hf, add_pooling_layer=False)
            head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2))  # the mean head
            lora = nn.ParameterList([nn.Parameter(torch.empty(2 * 8 * hidden)) for _ in range(3 * layers)])
        n = sum(p.numel() for p in backbone.parameters())
        model = nn.ModuleList([backbone, head])
        backbone.requires_grad_(False)
        freeze = total(model, hf, "freeze", False, True)[0]
        with_lora = nn.ModuleList([backbone, head, lora])
        lora_plain, _ = total(with_lora, hf, "lora", False, False)
        lora_ckpt, _ = total(with_lora, hf, "lora", True, False)
        backbone.requires_grad_(True)
        full_plain, states = total(model, hf, "full", False, False)
        full_ckpt, _ = total(model, hf, "full", True, False)
        shard = full_ckpt - states + states / SHARDS
        size = f"{n / 1e6:,.1f}M" if n < 1e8 else f"{n / 1e6:,.0f}M"
        rows.append(f"| {name} | {size} | {n * 4 / gib:.2f} | {freeze:.1f} | {lora_plain:.1f} | "
                    f"{lora_ckpt:.1f} | {full_plain:.1f} | {full_ckpt:.1f} | {shard:.1f} |")
    return "\n".join([
        "# Memory per model size", "",
        "Generated by `docs/gen_reference.py` from plmforge's own memory estimate (`plmforge/train/memory.py`, "
        "the one every run prints and writes to `memory_estimate.json` before training): the weights, the "
        "gradients and AdamW state of what trains, the activations of the largest batch and the runtime "
        "overhead. Each ESM-2 size is built from its architecture on PyTorch's meta device; nothing is "
        "downloaded.", "",
        f"Setting: one GPU, bf16 autocast over fp32 weights (`training.mixed_precision=bf16`), batches of "
        f"{n_seq} sequences of {length} tokens, the mean-pooling head; LoRA of rank 8 on the query, key and "
        "value projections (the ESM default). GiB; the totals include 0.3 GiB of CUDA runtime.", "",
        "| model | parameters | weights (fp32) | freeze | LoRA | LoRA, checkpointing | full | "
        f"full, checkpointing | full, checkpointing, {SHARDS} GPUs (FSDP / ZeRO-3), each |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        "How to read it:", "",
        "- *freeze* keeps the backbone in evaluation mode without autograd (and its pooled vectors are stored "
        "once, so later epochs and runs do not run it at all); *LoRA* trains a few million adapter weights but "
        "keeps every layer's activations for the backward pass, which is why *checkpointing* "
        "(`model.gradient_checkpointing=true`, or every k-th layer with `model.checkpoint_every`) matters "
        "most there.",
        "- *full* adds 12 bytes per parameter (fp32 gradients and AdamW's two moments) to the 4 of the weights; "
        f"sharded over {SHARDS} GPUs those 16 bytes are divided by {SHARDS}, the activations of each GPU's "
        "own batch are not.",
        "- The frozen weights of freeze and LoRA stay in fp32 (autocast computes in bf16); QLoRA "
        "(`method.name=qlora`, on a CUDA GPU with bitsandbytes) stores the linear layers' weights in 4 bits, "
        "about an eighth of their fp32 size.",
        "- Activations grow with sequences x tokens of a batch (and attention weights, when they are "
        "materialised, with the square of the length): halve the batch or set `batching.max_tokens` to fit.", "",
        "The activation constants were fitted to measured peaks of AntiBERTy runs on a CPU "
        "(`benchmarks/memory.py`); for GPUs and these model sizes the table is that formula's estimate, not a "
        "measurement (no GPU was available here). Each run's `memory_estimate.json` records the estimate next "
        "to the measured peak, so a run on your hardware shows how far off it is.",
    ])


PAGES = {"reference/cli.md": cli_page, "reference/config.md": config_page, "reference/memory.md": memory_page}


def main() -> None:
    for name, make in PAGES.items():
        path = DOCS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make() + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
