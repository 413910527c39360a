"""Plots of mutation scores: the saturation heatmap and the score-against-measurement scatter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plmforge.data.notation import AMINO_ACIDS
from plmforge.plots import _plt

PER_ROW = 100  # positions per panel: a long protein wraps onto panels stacked top to bottom


def heatmap(matrix: np.ndarray, positions: list[int], wild_type: str, out: Path, title: str) -> Path:
    """Positions (x) by the 20 amino acids (y), a diverging map centred on 0 (red: predicted worse than the
    wild type, blue: better), the wild-type residue of each position marked with a dot."""
    from matplotlib.colors import TwoSlopeNorm

    plt = _plt()
    finite = matrix[np.isfinite(matrix)]
    low = float(min(finite.min(), -1e-6)) if len(finite) else -1.0
    high = float(max(finite.max(), 1e-6)) if len(finite) else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high)
    panels = max(1, int(np.ceil(len(positions) / PER_ROW)))
    width = min(PER_ROW, len(positions))
    fig, axes = plt.subplots(panels, 1, figsize=(max(6.0, 0.13 * width + 2.5), 2.9 * panels + 0.6), squeeze=False)
    image = None
    for k in range(panels):
        ax = axes[k][0]
        cols = slice(k * PER_ROW, min((k + 1) * PER_ROW, len(positions)))
        block = matrix[cols].T  # (20, positions)
        image = ax.imshow(block, aspect="auto", cmap="RdBu", norm=norm, interpolation="nearest")
        pos = positions[cols]
        wt_rows = [AMINO_ACIDS.find(wild_type[p - 1]) for p in pos]
        xs = [i for i, r in enumerate(wt_rows) if r >= 0]
        ax.scatter(xs, [wt_rows[i] for i in xs], s=6, c="black", marker="o", linewidths=0)
        ax.set_yticks(range(20), list(AMINO_ACIDS), fontsize=6)
        step = max(1, len(pos) // 20)
        ticks = list(range(0, len(pos), step))
        ax.set_xticks(ticks, [f"{wild_type[pos[i] - 1]}{pos[i]}" for i in ticks], fontsize=6, rotation=90)
        ax.set_ylabel("mutant")
    axes[-1][0].set_xlabel("position (wild type and 1-based number; dots mark the wild-type residue)")
    axes[0][0].set_title(title, fontsize=9)
    fig.colorbar(image, ax=[a[0] for a in axes], fraction=0.025, pad=0.01, label="score (0 = as the wild type)")
    fig.savefig(out, dpi=110, bbox_inches="tight")  # (the axis label would be cut on short panels)
    plt.close(fig)
    return out


def scatter(scores: np.ndarray, measured: np.ndarray, out: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    ax.scatter(scores, measured, s=6, alpha=0.5, color="#3182bd", linewidths=0)
    ax.set_xlabel("zero-shot score")
    ax.set_ylabel("DMS_score (measured)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
