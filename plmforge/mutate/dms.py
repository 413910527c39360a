"""Deep-mutational-scan files and the metrics ProteinGym reports for a zero-shot score, each with a
bootstrap interval over the variants.

A DMS file in ProteinGym's layout has `mutant` (A42G, or A42G:K50R), optionally `mutated_sequence`,
`DMS_score` (higher = fitter) and `DMS_score_bin` (1 = fit). The metrics, as ProteinGym defines them:
- spearman: rank correlation of score and DMS_score;
- auc: ROC AUC of the score for DMS_score_bin;
- mcc: Matthews correlation of DMS_score_bin with the score cut at its median (>= median is predicted fit);
- ndcg: normalised discounted cumulative gain of the score's top 10 % (k = floor(N / 10) variants), the gains
  being DMS_score rescaled to 0..1;
- top_recall: of the variants above DMS_score's 90th percentile, the fraction also above the score's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plmforge.errors import DataError

DMS_METRICS = ("spearman", "auc", "mcc", "ndcg", "top_recall")


def read_dms(path: str | Path) -> pd.DataFrame:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError("no such file", file=str(p))
    try:
        frame = pd.read_csv(p, sep="\t" if p.suffix.lower() in (".tsv", ".tab") else ",")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable CSV/TSV table: {exc}", file=str(p)) from None
    if "mutant" not in frame.columns:
        raise DataError(f"no 'mutant' column (columns: {', '.join(map(str, frame.columns))})", file=str(p),
                        hint="a DMS table has a mutant column in the A42G notation (several sites: A42G:K50R)")
    if "DMS_score" in frame.columns:
        values = pd.to_numeric(frame["DMS_score"], errors="coerce")
        bad = values.isna() & frame["DMS_score"].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"DMS_score {frame['DMS_score'].iloc[row]!r} is not a number", file=str(p), row=row + 2,
                            column="DMS_score")
        frame["DMS_score"] = values
    if "DMS_score_bin" in frame.columns:
        bins = frame["DMS_score_bin"].dropna()
        if not set(np.unique(bins)) <= {0, 1}:
            raise DataError("DMS_score_bin must hold 0 and 1 only", file=str(p), column="DMS_score_bin")
    return frame


def spearman(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.std(y) == 0 or np.std(s) == 0:
        return float("nan")
    return float(spearmanr(y, s).statistic)


def auc(bins: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(bins)) < 2:
        return float("nan")
    return float(roc_auc_score(bins, s))


def mcc_at_median(bins: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    if len(np.unique(bins)) < 2:
        return float("nan")
    return float(matthews_corrcoef(bins, (s >= np.median(s)).astype(int)))


def ndcg(y: np.ndarray, s: np.ndarray, top: float = 0.1) -> float:
    """DCG of the k variants the score ranks highest (gain = DMS score rescaled to 0..1, discount
    1 / log2(rank + 1)) over the best possible DCG of k variants; k = floor(N * top)."""
    k = int(np.floor(len(y) * top))
    span = y.max() - y.min()
    if k < 1 or span == 0:
        return float("nan")
    gains = (y - y.min()) / span
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    chosen = gains[np.argsort(-s, kind="stable")[:k]]
    ideal = np.sort(gains)[::-1][:k]
    best = float((ideal * discount).sum())
    return float((chosen * discount).sum() / best) if best > 0 else float("nan")


def top_recall(y: np.ndarray, s: np.ndarray, top: float = 0.1) -> float:
    true_top = y > np.percentile(y, 100 * (1 - top))
    if not true_top.any():
        return float("nan")
    model_top = s > np.percentile(s, 100 * (1 - top))
    return float((true_top & model_top).sum() / true_top.sum())


def check_variants(table: pd.DataFrame, wild_type: str, where: str) -> list[tuple[Any, ...]]:
    """Every row's substitutions, their wild-type letters checked against `wild_type` and, where the table has
    it, `mutated_sequence` against the wild type with them; errors name the row (`where` "--mutations": the
    inline list, no rows)."""
    from plmforge.data.notation import apply, check_against, parse_variant

    variants = []
    for i, text in enumerate(table["mutant"].astype(str)):
        row_where = where if where == "--mutations" else f"{where}, row {i + 2}"
        subs = parse_variant(text, row_where)
        check_against(subs, wild_type, row_where)
        if "mutated_sequence" in table.columns and isinstance(table["mutated_sequence"].iloc[i], str):
            if table["mutated_sequence"].iloc[i].strip().upper() != apply(subs, wild_type):
                raise DataError(f"{text}: mutated_sequence is not the wild type with these substitutions",
                                file=row_where, hint="the wild type given does not belong to this DMS file")
        variants.append(subs)
    return variants


def measured(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The rows with a DMS_score (a mask), their scores, and their DMS_score_bin when every one has it."""
    keep = table["DMS_score"].notna().to_numpy()
    bins = None
    if "DMS_score_bin" in table.columns and table["DMS_score_bin"][keep].notna().all():
        bins = table["DMS_score_bin"].to_numpy()[keep].astype(int)
    return keep, table["DMS_score"].to_numpy()[keep], bins


def dms_metrics(y: np.ndarray, scores: np.ndarray, bins: np.ndarray | None) -> dict[str, float]:
    out = {"spearman": spearman(y, scores), "ndcg": ndcg(y, scores), "top_recall": top_recall(y, scores)}
    if bins is not None:
        out["auc"] = auc(bins, scores)
        out["mcc"] = mcc_at_median(bins, scores)
    return {k: out[k] for k in DMS_METRICS if k in out}


def dms_report(y: np.ndarray, scores: np.ndarray, bins: np.ndarray | None, resamples: int = 1000,
               seed: int = 0) -> dict[str, Any]:
    """The metrics and their 95% bootstrap intervals (variants resampled with replacement)."""
    from plmforge.bootstrap import intervals

    metrics = dms_metrics(y, scores, bins)
    out: dict[str, Any] = {"n_variants": len(y), "metrics": metrics}
    if resamples:
        rng = np.random.default_rng(seed)
        draws: dict[str, list[float]] = {k: [] for k in metrics}
        for _ in range(resamples):
            idx = rng.integers(0, len(y), len(y))
            for k, v in dms_metrics(y[idx], scores[idx], None if bins is None else bins[idx]).items():
                draws[k].append(v)
        out["intervals"] = {k: v.to_dict() for k, v in intervals({k: np.array(v) for k, v in draws.items()}).items()}
        out["bootstrap"] = {"resamples": resamples, "seed": seed, "level": 0.95}
    return out
