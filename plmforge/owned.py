"""What plmforge may delete: only directories it made. Every output directory (a run, a cross-validation,
a sweep, an export, an instruct or PTM-Mamba run) gets a marker file naming its kind when it is created;
replacing one (--overwrite, the UI's "Replace an existing run") needs that marker and nothing in the
directory that plmforge does not write there. The home directory, the file system root, and any
directory that holds the inputs of the command are never replaced. Every check runs before any compute."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from plmforge.errors import RunDirError

MARKER = ".plmforge-output"

_RUN = ("config.yaml", "command.txt", "split_mapping.json", "model_stats.json", "task.json", "train.log",
        "events.jsonl", "metrics_steps.jsonl", "metrics_epochs.jsonl", "memory_estimate.json", "method_report.json",
        "threshold.json", "best", "last", "best.old", "last.old", "best.new", "last.new", "tokenizer", "plots",
        "test_*", "wandb", "tensorboard", "plmforge", "*.partial", ".*.partial")
OWN_NAMES: dict[str, tuple[str, ...]] = {
    "run": _RUN,
    "cv": (*_RUN, "fold_*", "cv.json", "cv.log", "cv_metrics.*", "test_ensemble_*"),
    "sweep": ("sweep_base.yaml", "sweep_space.yaml", "sweep.json", "sweep.log", "sweep_trials.csv", "study.db",
              "study.db-*", "best_config.yaml", "trial_*"),
    "export": ("best", "backbone", "tokenizer", "config.yaml", "task.json", "model_stats.json", "README.md",
               "command.txt", "checksums.json"),
    "instruct": ("config.yaml", "tokenizer", "checkpoint-*", "final", "align", "adapter", "log_history.jsonl",
                 "metrics.json", "test_*", "predictions.csv", "training_args.bin", "train.log", "runs", "*.partial"),
    "eval": ("eval_metrics.*", "predictions.csv", "predictions_sequences.csv", "plots", ".*.partial"),
    "mutate": ("scan.csv", "top.csv", "scan.json", "scan_progress.npz", "heatmap.png", ".*.partial"),
    "fewshot": ("config.yaml", "command.txt", "n*_r*", "few_shot.*", "few_shot_plan.json", "fewshot.log", "plots"),
    "mutate_benchmark": ("scores", "metrics_by_assay.csv", "*_DMS_level.csv", "summary.json", "summary.csv",
                         ".*.partial"),
    "ptm": ("config.yaml", "ptm_tokenizer.json", "*.ckpt", "*.ckpt.sha256", "*.ckpt.tmp", "last.engine.tmp",
            "metrics.json", "split_mapping.json", "metrics_*.jsonl", "train.log", "plots", "*.partial"),
}
KIND_WORDS = {"run": "plmforge training run", "cv": "plmforge cross-validation run", "sweep": "plmforge sweep",
              "export": "plmforge export", "eval": "plmforge evaluation", "mutate": "plmforge mutation scan",
              "mutate_benchmark": "plmforge mutation benchmark", "fewshot": "plmforge few-shot run",
              "instruct": "plmforge instruct run", "ptm": "PTM-Mamba run"}
# made before markers existed: recognised by the files every such directory holds
_LEGACY = {"run": ("config.yaml", "model_stats.json"), "cv": ("config.yaml", "cv.json"),
           "sweep": ("sweep_base.yaml", "sweep.json"), "export": ("best", "backbone", "config.yaml"),
           "eval": ("eval_metrics.json",)}


def mark(directory: Path, kind: str) -> None:
    """Record that plmforge made `directory` (as an output of this kind)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    tmp.replace(directory / MARKER)  # whole or absent, whenever the process is stopped


def _marked_kind(directory: Path) -> str | None:
    try:
        return json.loads((directory / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def made_as(directory: str | Path, kind: str) -> bool:
    """Whether plmforge made `directory` as an output of this kind (its marker says so)."""
    return _marked_kind(Path(directory).expanduser()) == kind


def foreign(directory: Path, kind: str) -> list[str]:
    """Entries of `directory` that plmforge does not write in an output of this kind."""
    patterns = (MARKER, MARKER + ".tmp", *OWN_NAMES[kind])
    return sorted(p.name for p in directory.iterdir() if not any(fnmatch.fnmatch(p.name, pat) for pat in patterns))


def _listing(directory: Path, names: list[str], limit: int = 8) -> str:
    shown = ", ".join(n + ("/" if (directory / n).is_dir() else "") for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def protected(directory: Path, inputs: Iterable[str | Path | None] = ()) -> str | None:
    """Why `directory` may never be replaced, or None: the root, the home directory, the current directory
    or one above it, or a directory that holds (or is) one of the inputs."""
    d = directory.expanduser().resolve()
    if d == Path(d.anchor):
        return "it is the root of the file system"
    if d == Path.home().resolve():
        return "it is your home directory"
    if Path.cwd().resolve().is_relative_to(d):
        return "it holds the current directory"
    for item in inputs:
        if not item:
            continue
        p = Path(str(item).split("::", 1)[0]).expanduser()
        if not p.exists():
            continue
        p = p.resolve()
        if p == d or p.is_relative_to(d):
            return f"it holds an input of this command ({p})"
    return None


def check_output_dir(directory: str | Path, kind: str, *, overwrite: bool, inputs: Iterable[str | Path | None] = (),
                     how: str = "pass --overwrite", other: str = "choose another output directory") -> None:
    """Refuse (before any compute) an output directory that is not empty unless `overwrite` is set and it
    is a plmforge output of this kind with nothing foreign in it; never for a protected directory."""
    d = Path(directory).expanduser()
    if d.exists() and not d.is_dir():
        raise RunDirError(f"{d} is a file, not a directory; {other}")
    if not d.is_dir() or not any(d.iterdir()):
        why = protected(d, inputs) if d.is_dir() else None
        if why:
            raise RunDirError(f"{d} cannot be the output directory: {why}; {other}")
        return
    why = protected(d, inputs)
    if why:
        raise RunDirError(f"{d} cannot be the output directory: {why}; {other} (plmforge never replaces it)")
    names = sorted(p.name for p in d.iterdir())
    kind_found = _marked_kind(d)
    legacy = kind_found is None and all((d / n).exists() for n in _LEGACY.get(kind, ("\0",)))
    if kind_found is None and names == [MARKER + ".tmp"]:  # stopped while its marker was being written
        legacy = True
    if kind_found != kind and not legacy:
        what = (f"a {KIND_WORDS.get(kind_found, kind_found)}, not a {KIND_WORDS[kind]}" if kind_found else
                f"not a {KIND_WORDS[kind]} (it holds {_listing(d, names)})")
        raise RunDirError(f"{d} is {what}; {other}: plmforge replaces only a directory it made")
    strange = foreign(d, kind)
    if strange:
        raise RunDirError(f"{d} holds files plmforge did not write there ({_listing(d, strange)}); {other}, or "
                          "move those files out first: plmforge replaces only a directory it made")
    if not overwrite:
        raise RunDirError(f"{d} already holds a {KIND_WORDS[kind]}; {other}, or {how} to replace it")


def replace_dir(directory: str | Path, kind: str, inputs: Iterable[str | Path | None] = ()) -> None:
    """Delete a plmforge output directory (checked again just before) and mark its new empty self."""
    d = Path(directory).expanduser()
    if d.is_dir() and any(d.iterdir()):
        check_output_dir(d, kind, overwrite=True, inputs=inputs)
        shutil.rmtree(d)
    mark(d, kind)


def inputs_of(data: object) -> list[str]:
    """The local paths a data config reads (dataset, train/validation/test files)."""
    out = []
    for key in ("dataset", "train", "validation", "test"):
        value = getattr(data, key, None)
        if value:
            out.extend(part.split("::", 1)[0] for part in str(value).split(","))
    return [p for p in out if os.path.exists(os.path.expanduser(p))]


def check_output_file(path: str | Path, *, overwrite: bool, inputs: Iterable[str | Path | None] = (),
                      flag: str = "--output", companions: Iterable[str | Path] = ()) -> Path:
    """An output file (and the files written next to it, `companions`) may be written: never an input, an
    existing file only with --overwrite, into a directory that exists and is writable. Checked before any
    compute; the writers themselves replace files atomically."""
    out = Path(path).expanduser()
    targets = [out, *(Path(c).expanduser() for c in companions)]
    for target in targets:
        if target.is_dir():
            raise RunDirError(f"{flag} {target} is a directory; give a file name, e.g. {target / 'predictions.csv'}")
        for item in inputs:
            if item and Path(str(item)).expanduser().exists() and \
                    Path(str(item)).expanduser().resolve() == target.resolve():
                raise RunDirError(f"{flag} {target} is an input of this command: writing it would replace your "
                                  "data; choose another file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise RunDirError(f"the directory of {flag} {out} does not exist ({parent}); create it or choose another "
                          f"{flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write into {parent} (no permission); choose another {flag}")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise RunDirError(f"{existing[0]} exists; choose another {flag}, or pass --overwrite to replace it")
    return out
