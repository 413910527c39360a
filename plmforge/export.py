"""`plmforge export RUN_DIR --merge OUT_DIR`: a self-contained model directory.

Adapters (LoRA, DoRA, AdaLoRA, IA3) are merged into the backbone weights, which are written with the
head, the tokenizer, the task description and a model card. The result is itself a run-like directory:
`plmforge predict OUT_DIR ...` works on it and predicts like the unmerged run."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

from safetensors.torch import save_file

from plmforge import owned
from plmforge.api import load_run
from plmforge.checkpoint import seal
from plmforge.config import save_config
from plmforge.errors import ConfigError
from plmforge.heads import HEADS
from plmforge.methods import METHODS


def export_merged(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    out = Path(out_dir)
    owned.check_output_dir(out, "export", overwrite=overwrite, inputs=[run_dir], other="choose another directory")
    run = load_run(run_dir)
    spec = METHODS[run.config.method.name]
    if spec.uses_peft and not spec.mergeable:
        raise ConfigError(f"method {spec.name!r} cannot be merged: its base weights are 4-bit quantised, so merging "
                          "would re-quantise the adapters; use the run directory itself (or its best/adapter "
                          "with peft) for prediction")
    backbone = run.model.backbone.merge_and_unload() if spec.uses_peft else run.model.backbone
    owned.replace_dir(out, "export", [run_dir, run.config.model.name])
    (out / "best").mkdir(parents=True)
    backbone.save_pretrained(str(out / "backbone"))
    run.backbone.tokenizer.save_pretrained(str(out / "tokenizer"))
    head = {f"head.{k}": v.detach().contiguous() for k, v in run.model.head.state_dict().items()}
    save_file(head, str(out / "best" / "model.safetensors"))
    seal(out / "best")  # an export is verified when loaded, as a run is
    seal(out / "backbone")
    config = run.config.replace(
        model=run.config.model.__class__(name="backbone", max_length=run.config.model.max_length,
                                          trust_remote_code=run.config.model.trust_remote_code),
        method=run.config.method.__class__(name="freeze"),
        output=run.config.output.__class__(dir=str(out)))
    save_config(config, out / "config.yaml")
    shutil.copy(run.run_dir / "task.json", out / "task.json")
    (out / "README.md").write_text(model_card(run, spec.name))
    return out


def model_card(run, method: str) -> str:  # type: ignore[no-untyped-def]
    rd = run.run_dir
    task = run.task
    mapping = json.loads((rd / "split_mapping.json").read_text()) if (rd / "split_mapping.json").exists() else {}
    test = json.loads((rd / "test_metrics.json").read_text()) if (rd / "test_metrics.json").exists() else None
    stats = json.loads((rd / "model_stats.json").read_text()) if (rd / "model_stats.json").exists() else {}
    lines = [f"# {Path(rd).name} (plmforge export)", "",
             f"Exported {date.today().isoformat()} from run `{rd}`.", "",
             "## Model", "",
             f"- base model: `{run.config.model.name}` ({run.backbone.family.name} family)",
             f"- fine-tuning method: `{method}`" + (" (adapters merged into the backbone weights)"
                                                   if METHODS[method].uses_peft else ""),
             f"- head: `{run.config.head.pooling}` ({HEADS[run.config.head.pooling].description}), "
             f"{task.num_outputs} output(s)",
             f"- trained parameters: {stats.get('trainable', '?'):,} of {stats.get('total', '?'):,}"
             if stats else "- trained parameters: unknown",
             "", "## Task and data", "",
             f"- problem type: `{task.problem_type}`, labels: {task.num_labels}",
             f"- data: `{mapping.get('source', run.config.data.dataset or run.config.data.train)}`",
             f"- samples per split: {mapping.get('counts', {})}"
             + (" (validation carved from train)" if mapping.get("validation_carved_from_train") else ""),
             f"- monitored metric: {task.monitor} ({task.direction})"]
    if test:
        lines += ["", "## Test metrics", "", f"{test['n_samples']} test samples; {test['averaging']}.", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in test["metrics"].items()]
    lines += ["", "## Use", "", "```bash", "plmforge predict THIS_DIRECTORY --input sequences.fasta",
              "```", ""]
    return "\n".join(lines)
