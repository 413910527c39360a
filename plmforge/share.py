"""`plmforge push RUN --repo owner/name`: a finished run on the HuggingFace Hub, with a model card.

The upload is a run directory cut to what prediction needs — the trained weights (the adapter, or the
head of a frozen backbone, or the fine-tuned model), the task, the tokenizer, the decision threshold —
plus the evidence: test metrics with their intervals, baselines, plots, the exact command, and a
generated README.md (the model card). Checkpoint training state (last/, optimizer) and the list of
training sample ids stay home. The backbone is not uploaded: it is named in config.yaml and the card,
and loaded from its own repository.

`--dry-run` writes the folder and uploads nothing. `plmforge predict owner/name ...` downloads a pushed
run and predicts with it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plmforge.errors import ConfigError, PlmforgeError, RunDirError

log = logging.getLogger("plmforge")

# what a pushed run holds: (name, needed)
CONTENTS = (("config.yaml", True), ("task.json", True), ("tokenizer", True), ("best", True),
            ("threshold.json", False), ("model_stats.json", False), ("command.txt", False),
            ("test_metrics.json", False), ("test_metrics.csv", False), ("test_baselines.csv", False),
            ("method_report.json", False))
PLOTS = ("loss.png", "validation_metrics.png", "baselines.png", "confusion_matrix.png", "roc.png",
         "precision_recall.png", "scatter.png")


@dataclass
class PushResult:
    folder: Path
    repo: str
    url: str | None  # None for a dry run
    files: list[str]


def check_repo_id(repo: str) -> None:
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c in repo for c in " \\:"):
        raise ConfigError(f"--repo must look like owner/name (your user or organisation, then the model's name), "
                          f"got {repo!r}")


def build_folder(run_dir: str | Path, out: str | Path, repo: str) -> list[str]:
    """Write the upload folder for `run_dir` into `out` (which must not exist or be empty)."""
    rd, dest = Path(run_dir), Path(out)
    for name, needed in CONTENTS:
        if needed and not (rd / name).exists():
            raise RunDirError(f"{rd} is not a finished plmforge run: {name} is missing (only finished runs can be "
                              "pushed)")
    if dest.exists() and any(dest.iterdir()):
        raise RunDirError(f"{dest} already holds files; choose an empty or new directory")
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for name, _ in CONTENTS:
        src = rd / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
            files += [f"{name}/{p.name}" for p in sorted((dest / name).iterdir())]
        elif src.is_file():
            shutil.copy2(src, dest / name)
            files.append(name)
    for name in PLOTS:
        if (rd / "plots" / name).is_file():
            (dest / "plots").mkdir(exist_ok=True)
            shutil.copy2(rd / "plots" / name, dest / "plots" / name)
            files.append(f"plots/{name}")
    (dest / "README.md").write_text(model_card(rd, repo))
    files.append("README.md")
    return files


def push(run_dir: str | Path, repo: str, *, private: bool = False, dry_run: bool = False,
         out: str | Path | None = None, token: str | None = None) -> PushResult:
    check_repo_id(repo)
    if dry_run:
        folder = Path(out) if out else Path(run_dir) / "hub_upload"
        files = build_folder(run_dir, folder, repo)
        log.debug("dry run: the %d files that would be uploaded to %s are in %s", len(files), repo, folder)
        return PushResult(folder, repo, None, files)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    with tempfile.TemporaryDirectory(prefix="plmforge-push-") as tmp:
        folder = Path(tmp) / "upload"
        files = build_folder(run_dir, folder, repo)
        api = HfApi(token=token)
        try:
            api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="model",
                                       commit_message=f"plmforge run {Path(run_dir).name}")
        except LocalTokenNotFoundError:
            raise PlmforgeError("no HuggingFace token: run `hf auth login` (or set HF_TOKEN) with a token that may "
                                "write to " + repo) from None
        except HfHubHTTPError as exc:
            raise PlmforgeError(f"the Hub refused the upload to {repo}: {exc}") from None
        except OSError as exc:  # no network, DNS, proxy
            raise PlmforgeError(f"could not reach the HuggingFace Hub to upload to {repo}: {exc}; use --dry-run to "
                                "write the folder and upload it later") from None
        url = str(getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo}")
    log.info("pushed %d files to %s%s", len(files), url, " (private)" if private else "")
    return PushResult(Path(run_dir), repo, url, files)


# ---- the model card ----------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _ci(intervals: dict, k: str) -> str:
    ci = intervals.get(k) or {}
    return f"[{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}]" if ci else ""


def model_card(rd: Path, repo: str) -> str:
    cfg = yaml.safe_load((rd / "config.yaml").read_text())
    task = _read_json(rd / "task.json")
    stats = _read_json(rd / "model_stats.json") or {}
    test = _read_json(rd / "test_metrics.json")
    threshold = _read_json(rd / "threshold.json")
    mapping = _read_json(rd / "split_mapping.json") or {}
    command = (rd / "command.txt").read_text().strip() if (rd / "command.txt").is_file() else None
    backbone = task["backbone"]["source"]
    spec = task["task"]
    method = cfg["method"]["name"]
    local_backbone = Path(backbone).is_absolute() or Path(backbone).exists()
    front: dict[str, Any] = {"library_name": "plmforge",
                             "tags": ["protein", "protein-language-model", "plmforge", spec["problem_type"], method]}
    if not local_backbone:
        front["base_model"] = backbone
    if test:
        front["model-index"] = [{"name": repo.split("/")[-1], "results": [{
            "task": {"type": spec["problem_type"]},
            "dataset": {"name": str(cfg["data"].get("dataset") or cfg["data"].get("train")), "type": "custom",
                        "split": "test"},
            "metrics": [{"type": k, "value": v} for k, v in test["metrics"].items() if v is not None]}]}]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {repo.split('/')[-1]}", "",
             f"A protein property predictor ({spec['problem_type'].replace('_', ' ')}, {spec['num_labels']} "
             f"output{'s' if spec['num_labels'] != 1 else ''}) fine-tuned with [plmforge](https://pypi.org/project/"
             f"plmforge/) from the protein language model `{backbone}` with the `{method}` method.", ""]
    if local_backbone:
        lines += [f"> The backbone was a local directory (`{backbone}`): recipients need the same model there, or "
                  "change `model.name` in config.yaml to where it lives.", ""]
    lines += ["## Use", "", "```bash", "pip install plmforge",
              f"plmforge predict {repo} --input sequences.csv --output predictions.csv",
              f"plmforge predict {repo} --sequence MKTAYIAKQRQISFVKSHFSRQ", "```", "",
              "or in Python: `plmforge.predict(\"" + repo + "\", [\"MKTAYIAKQRQ...\"]).table`.", ""]
    lines += ["## Model", "", "| | |", "|---|---|", f"| backbone | `{backbone}` ({task['backbone']['family']}, "
              f"hidden size {task['backbone']['hidden_size']}) |", f"| method | `{method}` |",
              f"| head | `{cfg['head']['pooling']}` pooling |"]
    if stats:
        lines.append(f"| parameters | {stats.get('total', 0):,} in all, {stats.get('trainable', 0):,} trained "
                     f"({stats.get('trainable_percent', 0):.2f}%) — this repository holds the trained ones |")
    lines.append(f"| longest input | {task['backbone']['max_residues']} residues (longer sequences are cut) |")
    lines += ["", "## Data", ""]
    data = cfg["data"]
    source = data.get("dataset") or data.get("train")
    lines.append(f"Trained on `{source}` (sequence column `{data['sequence_column']}`, label column "
                 f"`{data['label_column']}`).")
    counts = mapping.get("counts") or {}
    if counts:
        lines.append("Samples per split: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
                     + (" (validation held out from the training file, seed "
                        f"{mapping.get('seed')})" if mapping.get("validation_carved_from_train") else "") + ".")
    fold = mapping.get("cross_validation")
    if fold:
        lines.append(f"This is the model of cross-validation fold {fold['fold']} of {fold['folds']} (its validation "
                     "split is that fold of the pooled training data).")
    if data.get("group_column"):
        lines.append(f"Splits carved by groups of `{data['group_column']}`: no group on both sides.")
    for note in task.get("data_notes") or []:
        lines.append(f"- note: {note}")
    lines += ["", "## Results on the test split", ""]
    if not test:
        lines.append("The run had no labelled test split: no test metrics.")
    else:
        intervals = test.get("intervals") or {}
        boot = test.get("bootstrap") or {}
        lines += [f"{test['n_samples']:,} test proteins; best epoch {test.get('best_epoch')} by validation "
                  f"{test.get('monitor')}." + (f" 95% intervals: percentile bootstrap over test proteins "
                                                f"({boot.get('resamples')} resamples)." if intervals else ""), "",
                  "| metric | value | 95% interval |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v)} | {_ci(intervals, k)} |" for k, v in test["metrics"].items()]
        baselines = test.get("baselines") or {}
        if baselines:
            lines += ["", "Baselines fitted on the same splits:", "", "| model | " + " | ".join(
                k for k in test["metrics"] if k != "loss") + " |", "|---|" + "---|" * (len(test["metrics"]) - 1)]
            for name, b in baselines.items():
                lines.append(f"| {name} | " + " | ".join(_fmt(b["metrics"].get(k)) for k in test["metrics"]
                                                        if k != "loss") + " |")
        if test.get("verdict"):
            lines += ["", f"**PLM vs baselines:** {test['verdict']['text']}"]
        if threshold:
            lines += ["", f"Decisions use the threshold {threshold.get('threshold'):.4g} tuned on validation "
                      f"{threshold.get('metric')} (threshold.json); `prediction_at_0.5` is also given."]
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    for section, key in (("training", "learning_rate"), ("training", "epochs"), ("training", "patience"),
                         ("training", "scheduler"), ("training", "seed"), ("training", "mixed_precision"),
                         ("training", "class_weights"), ("training", "focal_gamma"), ("batching", "mode"),
                         ("batching", "batch_size"), ("batching", "max_tokens"), ("model", "max_length")):
        value = (cfg.get(section) or {}).get(key)
        mode = cfg["batching"].get("mode")
        if (key == "batch_size" and mode == "tokens") or (key == "max_tokens" and mode != "tokens"):
            continue
        if value is not None:
            lines.append(f"| {section}.{key} | {value} |")
    if command:
        lines += ["", "The exact command (config.yaml holds the resolved settings):", "", "```bash", command, "```"]
    lines += ["", "## Limits", "",
              "The numbers above describe this test split only; proteins unlike the training data (other "
              "families, lengths or organisms) may be predicted worse. The intervals show sampling noise of the "
              "test split, not that shift.", ""]
    return "\n".join(lines)
