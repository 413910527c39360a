"""What the UI shows, as plain data: markdown, pandas tables, matplotlib figures and HTML made from the
objects the CLI uses (DatasetSummary, RunProgress, prediction tables). Nothing here imports gradio, so
every view is testable without a browser."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plmforge.data.inspect import DatasetSummary
from plmforge.errors import PlmforgeError
from plmforge.events import RunProgress
from plmforge.outputs import shown_path

ROW_COLUMNS = ["split", "id", "label", "length", "sequence"]  # the dataset preview's first rows (sequence last)
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
def dataset_markdown(summary: DatasetSummary, shown: str | None = None) -> str:
    """The preview's summary; `shown`: how to name the dataset (its source otherwise)."""
    task = summary.task
    sizes = ", ".join(f"**{name}** {s.size:,}" for name, s in summary.splits.items())
    carved = [f"{name} {fraction:.0%}" for name, fraction, done in (
        ("test", getattr(summary, "test_fraction", 0.0), getattr(summary, "test_carved", False)),
        ("validation", summary.validation_fraction, summary.validation_carved)) if done]
    lines = [f"**Dataset** `{shown or summary.source}`", "",
             f"Splits: {sizes}" + (f" (carved from the training file: {', '.join(carved)} of its rows, seed "
                                    f"{summary.seed}" + ("; train still counts them" if summary.streamed else "") + ")"
                                    if carved else ""),
             "", f"Problem type **{task.problem_type}**, {task.num_labels} label(s); loss: {summary.loss}; "
                 f"metrics {', '.join(task.metrics)}; monitor **{task.monitor}** ({task.direction})."]
    if "test" not in summary.splits and not getattr(summary, "test_carved", False):
        lines.append("\nNo test split: the run will report validation metrics only. Set *test fraction* above "
                     "(e.g. 0.1) or add a test file to get test metrics, intervals and baselines.")
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
            label = str(row.get("label", ""))
            rows.append({"split": name, "id": row["id"], "label": label if len(label) <= 30 else label[:27] + "...",
                         "length": len(seq), "sequence": short_sequence(seq, 60)})
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
PHASE_WORDS = {
    "setup": "setting up: loading the model and reading the data",
    "embedding": "embedding the sequences with the frozen model (once: later runs read them from the store)",
    "training": "training",
    "validation": "scoring the validation split",
    "testing": "testing the best checkpoint on the test split",
    "baselines": "fitting baselines and bootstrap intervals on the test split",
}


def embed_line(p: RunProgress) -> str | None:
    """Sequences embedded of the total, the pace and the time left (the embedding phase)."""
    if not p.embed or p.phase != "embedding":
        return None
    rate, left = p.embed_pace()
    stored = p.embed["done"] - p.embed["computed"]
    line = f"**Embedding:** {p.embed['done']:,} of {p.embed['total']:,} sequences"
    if rate:
        line += f" ({rate:.1f} sequences/s, ETA {_duration(left)})"
    if stored:
        line += f"; {stored:,} read from the embedding store"
    return line


def progress_markdown(p: RunProgress, status: str, run_dir: Path | None, now: float | None = None,
                      clock_from: float | None = None, queued: str | None = None) -> str:
    """The status area of a run: what it is doing now in words, progress, time since Start and ETA, loss,
    parameters, best epoch, and the reason of a failure. `clock_from`: when Start was pressed (the clock
    runs from there, also while the model loads); `queued`: the run waits for a free slot."""
    now = now or time.time()
    if queued:
        return f"**Status:** queued - {queued}\n\nRun directory: `{_shown(run_dir)}`"
    elapsed = (now if status in ("running", "starting") else (p.last_time or now)) - clock_from \
        if clock_from else p.elapsed(now)
    if status == "starting":
        return (f"**Status:** starting - {PHASE_WORDS['setup']}  \n**Elapsed:** {_duration(elapsed)}  \n"
                f"**Run directory:** `{_shown(run_dir)}`")
    pct = 100 * p.fraction
    phase = PHASE_WORDS.get(p.phase or "", p.phase or "")
    lines = [f"**Status:** {status}" + (f" - {phase}" if phase and p.phase != status else "")]
    embedding = embed_line(p)
    if embedding:
        lines.append(embedding)
    if p.total_steps:
        lines.append(f"**Progress:** {pct:.0f}% (step {p.step} of {p.total_steps}, epoch {p.epoch} of "
                     f"{p.epochs or '?'})")
    eta = p.eta(now) if p.phase == "training" else (p.embed_pace()[1] if embedding else None)
    lines.append(f"**Elapsed:** {_duration(elapsed)}  **ETA:** {_duration(eta)}")
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
        lines.append(f"**Why it stopped:** {plain_error(p.error)}")
    if run_dir is not None:
        lines.append(f"**Run directory:** `{shown_path(run_dir)}`")
    return "  \n".join(lines)


def _shown(run_dir: Path | None) -> str:
    return "(not created yet)" if run_dir is None else shown_path(run_dir)


def plain_error(text: str) -> str:
    """A failure as a person reads it: without the Python exception class in front."""
    return re.sub(r"^[A-Z][A-Za-z]*(Error|Exception|Interrupt): ", "", text.strip())


def progress_fraction(p: RunProgress) -> float:
    if p.phase == "embedding" and p.embed and p.embed["total"]:
        return p.embed["done"] / p.embed["total"]
    return p.fraction


def progress_bar_html(p: RunProgress) -> str:
    pct = 100 * progress_fraction(p)
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


# ---- results in view ----------------------------------------------------------------------------------
def warning_box(text: str) -> str:
    return f"<div class='plmforge-warning'>{html.escape(text)}</div>"


def _ci(intervals: dict | None, key: str) -> tuple[float | None, float | None]:
    ci = (intervals or {}).get(key) or {}
    return ci.get("low"), ci.get("high")


def _num(v: Any) -> float | None:
    return None if v is None or not isinstance(v, int | float) else round(float(v), 4)


def results_table(blob: dict[str, Any] | None) -> pd.DataFrame:
    """Test metrics with their 95% intervals, next to each baseline's value of the same metric."""
    columns = ["metric", "value", "95% CI low", "95% CI high"]
    if not blob or not isinstance(blob.get("metrics"), dict):
        return pd.DataFrame(columns=columns)
    baselines = blob.get("baselines") or {}
    columns += [f"baseline: {name}" for name in baselines]
    rows = []
    for key, value in blob["metrics"].items():
        if not isinstance(value, int | float) and value is not None:
            continue
        low, high = _ci(blob.get("intervals"), key)
        row = {"metric": key, "value": _num(value), "95% CI low": _num(low), "95% CI high": _num(high)}
        for name, b in baselines.items():
            row[f"baseline: {name}"] = _num((b.get("metrics") or {}).get(key))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def results_sentence(blob: dict[str, Any] | None, has_test: bool = True) -> str:
    """The verdict in words: the judged metric with its interval, and how it compares with the best
    baseline; or why there are no test metrics and how to get them."""
    if not blob or not isinstance(blob.get("metrics"), dict):
        if has_test:
            return ""
        return ("**No test metrics:** this run had no test split (data.test_fraction=0, or a split directory "
                "without a test file). Set *Test fraction* in step 1, add a test file, or use the Evaluate tab "
                "with a labelled file.")
    n = blob.get("n_samples")
    verdict = blob.get("verdict") or {}
    metric = verdict.get("metric") or next((m for m in blob["metrics"] if m != "loss"), None) or \
        next(iter(blob["metrics"]), None)
    value = blob["metrics"].get(metric) if metric else None
    low, high = _ci(blob.get("intervals"), metric or "")
    text = f"**On {n} held-out test proteins**" if n else "**On the test split**"
    if isinstance(value, int | float):
        text += f", {metric} = {value:.3f}"
        if low is not None:
            text += f" (95% interval {low:.3f} to {high:.3f})"
    text += "."
    if verdict:
        words = {"better": "better than", "worse": "worse than", "not distinguishable": "not distinguishable from",
                 "undefined": "not comparable with"}
        diff = verdict.get("difference_interval") or {}
        text += (f" Compared with the best baseline ({verdict.get('best_baseline')}), the model is "
                 f"**{words.get(verdict.get('outcome'), verdict.get('outcome'))}** it: the difference in {metric} "
                 f"lies between {diff.get('low', float('nan')):+.3f} and {diff.get('high', float('nan')):+.3f} "
                 "(paired bootstrap, 95%).")
    return text


def read_test_blob(run_dir: Path) -> dict[str, Any] | None:
    import json

    path = run_dir / "test_metrics.json"
    try:
        blob = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return blob if isinstance(blob, dict) else None


# ---- columns of a file --------------------------------------------------------------------------------
def columns_markdown(inference: Any, warning: str | None = None) -> str:
    """What was chosen for each column and why, what could not be decided, and the task it implies."""
    lines = [f"**Columns of** `{Path(inference.source).name}`: {', '.join(map(str, inference.columns))}", ""]
    for role, choice in inference.choices.items():
        if choice.column is not None:
            lines.append(f"- **{role}**: `{choice.column}` - {choice.reason}")
        elif role in ("sequence", "label"):
            lines.append(f"- **{role}**: not found - {choice.reason}")
    for role, why in inference.ambiguous.items():
        lines.append(f"- **{role}: please choose** - {why}")
    if inference.problem_type:
        lines.append(f"- **task**: {inference.problem_type.replace('_', ' ')} - {inference.problem_reason}")
    lines.append("\nChange any choice in the menus above; Preview checks every row with it.")
    return "\n".join(lines)


# ---- predictions --------------------------------------------------------------------------------------
def short_sequence(seq: str, keep: int = 24) -> str:
    return seq if len(seq) <= keep else f"{seq[:keep]}... ({len(seq)} aa)"


def prediction_view(frame: pd.DataFrame, rows: int = 200) -> pd.DataFrame:
    """A prediction table as people read it: id and prediction (and its class symbol) first, then scores,
    the sequence last and shortened (the CSV keeps it whole)."""
    frame = frame.head(rows).copy()
    first = [c for c in ("id", "position", "residue_index", "residue", "prediction", "predicted_class")
             if c in frame.columns]
    last = [c for c in ("sequence", "predicted_labels") if c in frame.columns]
    middle = [c for c in frame.columns if c not in first and c not in last]
    frame = frame[first + middle + last]
    if "sequence" in frame.columns:
        frame["sequence"] = frame["sequence"].astype(str).map(short_sequence)
    for c in frame.columns:
        if pd.api.types.is_float_dtype(frame[c]):
            frame[c] = frame[c].astype("float64").round(4)  # float32 noise off the screen
    return frame


def whole_rows(frame: pd.DataFrame, rows: int = 200) -> list[str]:
    """The rows prediction_view shows, in its order, as one line each with the sequence unshortened."""
    view = prediction_view(frame, rows)
    whole = frame.head(rows)
    out = []
    for i in range(len(view)):
        cells = [f"{c}: {view.iloc[i][c]}" for c in view.columns if c != "sequence"]
        if "sequence" in whole.columns:
            cells.append(f"sequence: {whole.iloc[i]['sequence']}")
        out.append(" | ".join(cells))
    return out


def prediction_card(frame: pd.DataFrame) -> str:
    """One sequence's prediction in large type: the class (with its probability) or the value."""
    if frame.empty or "prediction" not in frame.columns or "residue" in frame.columns:
        return ""
    row = frame.iloc[0]
    value = row["prediction"]
    probs = {c[5:]: row[c] for c in frame.columns if c.startswith("prob_")}
    if probs and str(value) in probs:
        detail = f"probability {float(probs[str(value)]):.3f}"
    elif probs:
        detail = ", ".join(f"{k}: {float(v):.3f}" for k, v in probs.items())
    else:
        detail = "predicted value"
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return (f"<div class='plmforge-card'><div style='font-size:0.9em'>{html.escape(str(row.get('id', '')))}"
            f"</div><div style='font-size:2em;font-weight:600'>{html.escape(shown)}</div>"
            f"<div>{html.escape(detail)}</div></div>")


def failure_reason(log_text: str) -> str | None:
    """The message a failed command printed (its `error:` / `data error:` line and the fix after it)."""
    lines = [ln.rstrip() for ln in log_text.splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^(data )?error: ", lines[i]):
            tail = [ln.strip() for ln in lines[i + 1:i + 3] if ln.strip().startswith("fix:")]
            return " ".join([re.sub(r"^(data )?error: ", "", lines[i]), *tail])
    return None
