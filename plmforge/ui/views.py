"""What the UI shows, as plain data: markdown, pandas tables, matplotlib figures and HTML made from the
objects the CLI uses (DatasetSummary, RunProgress, prediction tables). Nothing here imports gradio, so
every view is testable without a browser."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plmforge.data.inspect import DatasetSummary
from plmforge.errors import PlmforgeError
from plmforge.events import RunProgress

ROW_COLUMNS = ["split", "id", "length", "sequence", "label"]  # the dataset preview's first rows
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def error_box(exc: BaseException) -> str:
    """A message box for a failure: plmforge's own errors with their place and fix, others by type."""
    text = exc.render() if isinstance(exc, PlmforgeError) else f"{type(exc).__name__}: {exc}"
    return f"<div class='plmforge-error'>{html.escape(text)}</div>"


def ok_box(text: str) -> str:
    return f"<div class='plmforge-ok'>{html.escape(text)}</div>"


# ---- dataset preview ----------------------------------------------------------------------------------
def dataset_markdown(summary: DatasetSummary) -> str:
    task = summary.task
    sizes = ", ".join(f"**{name}** {s.size:,}" for name, s in summary.splits.items())
    lines = [f"**Dataset** `{summary.source}`", "",
             f"Splits: {sizes}" + (" (validation will be carved from train: "
                                    f"{summary.validation_fraction:.0%}, seed {summary.seed})"
                                    if summary.validation_carved else ""),
             "", f"Problem type **{task.problem_type}**, {task.num_labels} label(s); loss: {summary.loss}; "
                 f"metrics {', '.join(task.metrics)}; monitor **{task.monitor}** ({task.direction})."]
    if "test" not in summary.splits:
        lines.append("\nNo test split: training will report validation metrics only.")
    for s in summary.splits.values():
        lines.append(f"\n- {s.line()}")
    lines += [f"\n> warning: {w}" for w in summary.warnings]
    lines.append("\nEvery row is valid.")
    return "\n".join(lines)


def dataset_rows(summary: DatasetSummary) -> pd.DataFrame:
    rows = []
    for name, s in summary.splits.items():
        for row in s.head:
            seq = row["sequence"]
            rows.append({"split": name, "id": row["id"], "length": len(seq),
                         "sequence": seq if len(seq) <= 60 else seq[:57] + "...", "label": row.get("label", "")})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def label_figure(summary: DatasetSummary) -> Figure:
    """Class counts per split (bars), or the distribution of values (histogram)."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    splits = [s for s in summary.splits.values() if s.labels is not None]
    if splits and splits[0].labels.counts is not None:
        classes = sorted({c for s in splits for c in s.labels.counts})
        width = 0.8 / len(splits)
        for i, s in enumerate(splits):
            ax.bar(np.arange(len(classes)) + i * width, [s.labels.counts.get(c, 0) for c in classes], width,
                   label=s.name, color=PALETTE[i % len(PALETTE)])
        ax.set_xticks(np.arange(len(classes)) + width * (len(splits) - 1) / 2, [str(c) for c in classes])
        ax.set_xlabel("class")
        ax.set_ylabel("count" + (" (residues)" if summary.task.problem.per_residue else ""))
    elif splits:
        for i, s in enumerate(splits):
            values = np.asarray(s.labels.values, dtype=float).ravel()
            ax.hist(values[np.isfinite(values)], bins=30, alpha=0.6, label=s.name, color=PALETTE[i % len(PALETTE)])
        ax.set_xlabel("label value")
        ax.set_ylabel("count")
    ax.set_title("Label distribution")
    if splits:
        ax.legend(fontsize=8)
    return fig


def length_figure(summary: DatasetSummary) -> Figure:
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    lengths = np.concatenate([s.lengths for s in summary.splits.values()])
    bins = np.linspace(lengths.min(), lengths.max() + 1, 31) if len(lengths) else 10
    for i, s in enumerate(summary.splits.values()):
        ax.hist(s.lengths, bins=bins, alpha=0.6, label=s.name, color=PALETTE[i % len(PALETTE)])
    ax.set_xlabel("sequence length (residues)")
    ax.set_ylabel("sequences")
    ax.set_title("Sequence lengths")
    ax.legend(fontsize=8)
    return fig


# ---- training progress --------------------------------------------------------------------------------
def progress_markdown(p: RunProgress, status: str, run_dir: Path | None, now: float | None = None) -> str:
    now = now or time.time()
    if status == "starting":
        return f"**Starting** - loading data and model...\n\nRun directory: `{run_dir}`"
    pct = 100 * p.fraction
    lines = [f"**Status:** {status}" + (f" - {p.phase}" if p.phase and p.phase != status else ""),
             f"**Progress:** {pct:.0f}% (step {p.step} of {p.total_steps or '?'}, epoch {p.epoch} of "
             f"{p.epochs or '?'})",
             f"**Elapsed:** {_duration(p.elapsed(now))}  **ETA:** {_duration(p.eta(now))}"]
    if p.loss is not None:
        lines.append(f"**Loss:** {p.loss:.4f}  **Learning rate:** {p.lr:.2e}")
    if p.params:
        lines.append(f"**Parameters:** {p.params.get('total', 0):,} total, {p.params.get('trainable', 0):,} "
                     f"trainable ({p.params.get('trainable_percent', 0):.2f}%)")
    if p.best_epoch:
        row = next((r for r in p.epoch_rows if r["epoch"] == p.best_epoch), {})
        shown = ", ".join(f"{k[4:]} {v:.4f}" for k, v in row.items() if k.startswith("val_")
                          and isinstance(v, int | float))
        lines.append(f"**Best epoch:** {p.best_epoch} ({shown})")
    if p.error:
        lines.append(f"**Error:** {p.error}")
    if run_dir is not None:
        lines.append(f"**Run directory:** `{run_dir}`")
    return "  \n".join(lines)


def progress_bar_html(p: RunProgress) -> str:
    pct = 100 * p.fraction
    return (f'<div class="plmforge-progress" style="background:#e5e7eb;border-radius:6px;height:14px;width:100%">'
            f'<div style="background:#2563eb;height:14px;border-radius:6px;width:{pct:.1f}%"></div></div>'
            f'<div style="font-size:0.85em">{pct:.0f}%</div>')


def loss_frame(p: RunProgress) -> pd.DataFrame:
    rows = [{"step": s["step"], "loss": s["loss"], "curve": "train (per step)"} for s in p.steps
            if s.get("loss") is not None]
    steps_at_epoch_end = {}
    for s in p.steps:
        steps_at_epoch_end[s["epoch"]] = s["step"]
    for r in p.epoch_rows:
        if r.get("val_loss") is not None and r["epoch"] in steps_at_epoch_end:
            rows.append({"step": steps_at_epoch_end[r["epoch"]], "loss": r["val_loss"], "curve": "validation"})
    return pd.DataFrame(rows, columns=["step", "loss", "curve"]).astype({"step": int, "loss": float, "curve": str})


def metrics_frame(p: RunProgress) -> pd.DataFrame:
    rows = [{"epoch": r["epoch"], "metric": k[4:], "value": v} for r in p.epoch_rows for k, v in r.items()
            if k.startswith("val_") and k != "val_loss" and isinstance(v, int | float) and np.isfinite(v)]
    return pd.DataFrame(rows, columns=["epoch", "metric", "value"]).astype({"epoch": int, "metric": str,
                                                                          "value": float})


def metrics_table(metrics: dict[str, Any] | None) -> pd.DataFrame:
    if not metrics:
        return pd.DataFrame(columns=["metric", "value"])
    return pd.DataFrame([{"metric": k, "value": round(float(v), 6)} for k, v in metrics.items()
                         if isinstance(v, int | float)], columns=["metric", "value"])


def run_plots(run_dir: Path) -> list[tuple[str, str]]:
    plot_dir = run_dir / "plots"
    if not plot_dir.is_dir():
        return []
    return [(str(p), p.stem.replace("_", " ")) for p in sorted(plot_dir.glob("*.png"))]


def run_files(run_dir: Path) -> list[str]:
    """Files worth downloading from a run."""
    names = ("test_metrics.csv", "test_metrics.json", "test_predictions.csv", "config.yaml", "command.txt",
             "metrics_epochs.jsonl", "train.log")
    return [str(run_dir / n) for n in names if (run_dir / n).is_file()]


# ---- predictions --------------------------------------------------------------------------------------
def residue_html(frame: pd.DataFrame, classes: tuple[str, ...] | None = None) -> str:
    """Each residue of each sequence coloured by its prediction (classes: one colour each; values: a
    blue-to-red scale), with a legend."""
    parts = []
    predictions = frame["prediction"]
    numeric = pd.api.types.is_float_dtype(predictions)
    if numeric:
        lo, hi = float(predictions.min()), float(predictions.max())
    labels = sorted(set(predictions.astype(str))) if not numeric else []
    for ident, group in frame.groupby("id", sort=False):
        spans = []
        for residue, pred in zip(group["residue"], group["prediction"], strict=True):
            if numeric:
                t = 0.0 if hi == lo else (float(pred) - lo) / (hi - lo)
                colour = f"rgb({int(40 + 215 * t)},{int(90 + 40 * (1 - abs(2 * t - 1)))},{int(255 - 215 * t)})"
                title = f"{pred:.3f}"
            else:
                colour = PALETTE[labels.index(str(pred)) % len(PALETTE)]
                title = _class_name(pred, classes)
            spans.append(f'<span title="{html.escape(title)}" style="background:{colour};color:white;'
                         f'padding:1px 0;font-family:monospace">{html.escape(residue)}</span>')
        parts.append(f"<div><b>{html.escape(str(ident))}</b></div><div style='word-break:break-all;"
                     f"line-height:1.7'>{''.join(spans)}</div>")
    if numeric:
        legend = f"colour: predicted value from {lo:.3g} (blue) to {hi:.3g} (red)"
    else:
        legend = " ".join(f'<span style="background:{PALETTE[i % len(PALETTE)]};color:white;padding:0 4px">'
                          f"{html.escape(_class_name(lab, classes))}</span>" for i, lab in enumerate(labels))
    return f"<div class='plmforge-residues'>{''.join(parts)}<div style='margin-top:6px'>{legend}</div></div>"


def _class_name(pred: Any, classes: tuple[str, ...] | None) -> str:
    try:
        index = int(pred)
    except (TypeError, ValueError):
        return str(pred)
    if classes and 0 <= index < len(classes):
        return f"{classes[index]} ({index})"
    return f"class {index}"


def loss_figure(p: RunProgress) -> Figure:
    """Training loss per step and validation loss at each epoch's last step, as the run goes."""
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    frame = loss_frame(p)
    for i, (curve, part) in enumerate(frame.groupby("curve", sort=False)):
        marker = "o" if curve == "validation" else None
        ax.plot(part["step"], part["loss"], marker=marker, label=curve, color=PALETTE[i % len(PALETTE)])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    if len(frame):
        ax.legend(fontsize=8)
    return fig


def metrics_figure(p: RunProgress) -> Figure:
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    frame = metrics_frame(p)
    for i, (metric, part) in enumerate(frame.groupby("metric", sort=False)):
        ax.plot(part["epoch"], part["value"], marker="o", label=metric, color=PALETTE[i % len(PALETTE)])
    if p.best_epoch:
        ax.axvline(p.best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({p.best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_title("Validation metrics")
    if len(frame):
        ax.legend(fontsize=7)
    return fig
