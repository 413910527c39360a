"""PNG plots written into a run directory: loss curves, validation metrics, confusion matrix, ROC."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def baselines(blob: dict, metric: str, out: Path) -> None:
    """The PLM's test metrics next to the baselines', with 95% interval whiskers."""
    plt = _plt()
    models = {"PLM": (blob["metrics"], blob.get("intervals") or {})}
    models.update({name: (b["metrics"], b.get("intervals") or {}) for name, b in blob["baselines"].items()})
    names = [m for m in blob["metrics"] if m != "loss" and any(v[0].get(m) is not None for v in models.values())]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) * len(models) / 2 + 2), 4.2))
    width = 0.8 / len(models)
    colours = ["#3182bd", "#bdbdbd", "#fd8d3c", "#74c476", "#9e9ac8"]
    for k, (model, (metrics, cis)) in enumerate(models.items()):
        x = np.arange(len(names)) + (k - (len(models) - 1) / 2) * width
        vals = np.array([np.nan if metrics.get(m) is None else metrics[m] for m in names], dtype=float)
        lo = np.array([(cis.get(m) or {}).get("low") if (cis.get(m) or {}).get("low") is not None else v
                       for m, v in zip(names, vals, strict=True)], dtype=float)
        hi = np.array([(cis.get(m) or {}).get("high") if (cis.get(m) or {}).get("high") is not None else v
                       for m, v in zip(names, vals, strict=True)], dtype=float)
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.bar(x, vals, width, yerr=err, capsize=3, color=colours[k % len(colours)], label=model,
               edgecolor="black" if model == "PLM" else None, linewidth=0.6)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([f"{m}\n(judged)" if m == metric else m for m in names], fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title("Test metrics: PLM vs baselines (95% bootstrap intervals)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def loss_curves(run_dir: Path, out: Path) -> None:
    plt = _plt()
    steps, epochs = read_jsonl(run_dir / "metrics_steps.jsonl"), read_jsonl(run_dir / "metrics_epochs.jsonl")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if steps:
        per_epoch_steps = max(r["step"] for r in steps) / max(r["epoch"] for r in steps)
        ax.plot([r["step"] / per_epoch_steps for r in steps], [r["loss"] for r in steps], color="#9ecae1",
                lw=1, label="train loss (logging steps)")
    if epochs:
        x = [r["epoch"] for r in epochs]
        ax.plot(x, [r["train_loss"] for r in epochs], "o-", color="#3182bd", label="train loss (epoch mean)")
        if "val_loss" in epochs[0]:
            ax.plot(x, [r["val_loss"] for r in epochs], "s-", color="#e6550d", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def validation_metrics(run_dir: Path, out: Path) -> None:
    plt = _plt()
    epochs = read_jsonl(run_dir / "metrics_epochs.jsonl")
    if not epochs:
        return
    names = [k for k in epochs[0] if k.startswith("val_") and k != "val_loss"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = [r["epoch"] for r in epochs]
    for name in names:
        ax.plot(x, [r.get(name, np.nan) for r in epochs], "o-", ms=3, label=name[4:])
    best = [r["epoch"] for r in epochs if r.get("best_so_far")]
    if best:
        ax.axvline(best[-1], color="grey", ls="--", lw=1, label=f"best epoch ({best[-1]})")
    ax.set_xlabel("epoch")
    ax.set_title("Validation metrics")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def cv_curves(run_dirs: list[Path], monitor: str, out: Path) -> None:
    """Every fold's training and validation loss, and its validation `monitor`, per epoch in one figure
    (a colour per fold, its best epoch circled)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    best_x, best_y, best_c = [], [], []
    for n, rd in enumerate(run_dirs):
        epochs = read_jsonl(rd / "metrics_epochs.jsonl")
        if not epochs:
            continue
        colour, x = f"C{n % 10}", [r["epoch"] for r in epochs]
        left.plot(x, [r.get("train_loss", np.nan) for r in epochs], "--", color=colour, lw=1)
        left.plot(x, [r.get("val_loss", np.nan) for r in epochs], "o-", ms=3, color=colour, label=rd.name)
        right.plot(x, [r.get(f"val_{monitor}", np.nan) for r in epochs], "o-", ms=3, color=colour, label=rd.name)
        best = [r for r in epochs if r.get("best_so_far")]
        if best:
            best_x.append(best[-1]["epoch"])
            best_y.append(best[-1].get(f"val_{monitor}", np.nan))
            best_c.append(colour)
    if best_x:  # (one artist for every fold's circle)
        right.scatter(best_x, best_y, s=100, facecolors="none", edgecolors=best_c, zorder=3)
    left.set_title("Loss per fold (dashed: training, solid: validation)")
    right.set_title(f"Validation {monitor} per fold (circle: best epoch)")
    for ax, where in ((left, "upper right"), (right, "lower right")):  # (placed: "best" costs a search per draw)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc=where)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.12, top=0.92, wspace=0.18)  # (tight_layout: +40 % time)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def confusion(cm: np.ndarray, out: Path, title: str = "Test confusion matrix",
              classes: list[str] | tuple[str, ...] | None = None) -> None:
    """The confusion matrix (rows: true class, columns: predicted class); `classes`: the classes' names
    (data.residue_classes' symbols) in class order for the ticks, else their numbers."""
    plt = _plt()
    fig = confusion_figure(cm, title, classes)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def confusion_figure(cm: np.ndarray, title: str = "Test confusion matrix",
                     classes: list[str] | tuple[str, ...] | None = None):
    """The figure `confusion` saves (a matplotlib Figure, its matrix in `fig.axes[0]`)."""
    plt = _plt()
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * k, 1.0 + 0.6 * k) if k > 4 else (4.5, 4))
    im = ax.imshow(cm, cmap="Blues")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=9)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    if classes is not None:
        names = [str(c) for c in classes][:k] + [str(j) for j in range(len(classes), k)]
        ax.set_xticklabels(names)
        ax.set_yticklabels(names)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _curve(x: np.ndarray, y: np.ndarray, label: str, labels: tuple[str, str, str], chance: tuple, out: Path,
           legend: str) -> None:
    """One binary-classifier curve with its chance line (ROC and precision-recall share this)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot(x, y, color="#3182bd", label=label)
    ax.plot(*chance, ls="--", color="grey", lw=1, label="chance")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2])
    ax.legend(loc=legend)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _of(title: str, positive: str | None) -> str:
    """A binary curve's title naming its positive class (class 1) when it has a name."""
    return f"{title} (class {positive})" if positive is not None else title


def roc(y_true: np.ndarray, probs: np.ndarray, out: Path, positive: str | None = None) -> None:
    """ROC curve of class 1 (binary tasks); `positive`: its name (e.g. its residue_classes symbol)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(np.unique(y_true)) < 2:
        return
    fpr, tpr, _ = roc_curve(y_true, probs[:, 1])
    _curve(fpr, tpr, f"AUROC {roc_auc_score(y_true, probs[:, 1]):.3f}",
           ("false positive rate", "true positive rate", _of("Test ROC curve", positive)), ([0, 1], [0, 1]), out,
           "lower right")


def precision_recall(y_true: np.ndarray, probs: np.ndarray, out: Path, positive: str | None = None) -> None:
    """Precision-recall curve of class 1 (binary tasks); chance is the positive rate; `positive` as for `roc`."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y_true, probs[:, 1])
    rate = float(np.mean(y_true == 1))
    _curve(recall, precision, f"AUPRC {average_precision_score(y_true, probs[:, 1]):.3f}",
           ("recall", "precision", _of("Test precision-recall curve", positive)), ([0, 1], [rate, rate]), out,
           "upper right")


def scatter(y_true: np.ndarray, y_pred: np.ndarray, out: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.scatter(y_true, y_pred, s=8, alpha=0.6)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1)
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title("Test predictions")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def cv_folds(folds: list[dict], mean: dict, sd: dict, out: Path, ensemble: dict | None = None) -> None:
    """Per metric: every fold's value (dots) and the mean with +- one standard deviation, validation and
    test side by side; the fold models' ensemble on test (a diamond with its 95% interval) when there is one."""
    plt = _plt()
    parts = [p for p in ("validation", "test") if any(k != "loss" for k in mean[p])]
    names = sorted({k for p in parts for k in mean[p] if k != "loss"})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) * len(parts) + 2), 4.2))
    width = 0.8 / max(len(parts), 1)
    colours = {"validation": "#3182bd", "test": "#fd8d3c"}
    for k, part in enumerate(parts):  # (one scatter and one error-bar artist per part: drawing is most of the cost)
        x0 = np.arange(len(names)) + (k - (len(parts) - 1) / 2) * width
        xs, ys, mx, my, sds = [], [], [], [], []
        for j, name in enumerate(names):
            values = [f[part].get(name) for f in folds if f[part].get(name) is not None]
            if not values or mean[part].get(name) is None:
                continue
            xs += list(x0[j] + np.linspace(-0.1, 0.1, len(values)) * width)
            ys += values
            mx.append(x0[j])
            my.append(mean[part][name])
            sds.append(sd[part].get(name) or 0)
        ax.scatter(xs, ys, s=14, color=colours[part], alpha=0.7, zorder=3, label=f"{part} (folds)")
        if mx:
            ax.errorbar(mx, my, yerr=sds, fmt="_", markersize=16, capsize=5, color="black", zorder=4, ls="none")
        if part == "test" and ensemble:
            cis = ensemble.get("intervals") or {}
            ex, ey, low, high = [], [], [], []
            for j, name in enumerate(names):
                v = ensemble["metrics"].get(name)
                if v is None:
                    continue
                ci = cis.get(name) or {}
                lo, hi = ci.get("low", v), ci.get("high", v)
                ex.append(x0[j] + 0.3 * width)
                ey.append(v)
                low.append(max(v - (lo if lo is not None else v), 0))
                high.append(max((hi if hi is not None else v) - v, 0))
            ax.errorbar(ex, ey, yerr=[low, high], fmt="D", markersize=5, capsize=3, color="#31a354", zorder=5,
                        ls="none", label="test ensemble (95% CI)")
    ax.errorbar([], [], yerr=[], fmt="_", color="black", label="mean +- sd")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_title(f"Cross-validation: {len(folds)} folds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def sweep(rows: list[dict], params: list[tuple[str, list | None, bool]], monitor: str, direction: str,
          out: Path) -> None:
    """Left: every trial's validation value (pruned trials at their last report) and the best so far.
    Right: the value against each swept parameter (`params`: key, choices of a categorical one, log scale)."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    plt = _plt()
    fig, axes = plt.subplots(1, len(params) + 1, figsize=(4.2 * (len(params) + 1), 3.8), squeeze=False)
    ax = axes[0][0]
    styles = {"complete": dict(color="#3182bd", marker="o"), "pruned": dict(color="#969696", marker="x"),
              "fail": dict(color="#de2d26", marker="v")}
    for state, style in styles.items():
        pts = [(r["trial"], r["value"]) for r in rows if r["state"] == state and r["value"] is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), label=state, s=28, **style)
    best, line = None, []
    for r in rows:
        if r["state"] == "complete" and r["value"] is not None:
            better = best is None or (r["value"] > best if direction == "max" else r["value"] < best)
            best = r["value"] if better else best
        line.append(best if best is not None else np.nan)
    ax.step([r["trial"] for r in rows], line, where="post", color="black", lw=1, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {monitor} (best epoch)")
    ax.set_title("Sweep")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for k, (name, choices, log_scale) in enumerate(params, start=1):
        ax = axes[0][k]
        cats = [str(c) for c in choices] if choices is not None else None
        for state, style in styles.items():
            pts = [(r[name], r["value"]) for r in rows if r["state"] == state and r["value"] is not None
                   and r.get(name) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter([cats.index(str(x)) for x in xs] if cats else xs, ys, s=28, **style)
        if cats:
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels(cats, fontsize=8, rotation=20)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        elif log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10))
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif all(isinstance(r.get(name), int) for r in rows if r.get(name) is not None):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
