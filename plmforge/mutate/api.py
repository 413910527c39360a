"""Saturation scans and variant scoring: what `plmforge mutate scan|score` and plmforge.mutate.scan/score do.

A scan writes into its directory:
    scan.csv       every substitution at every scanned position: mutant (A42G), position, wt, mt, score, rank
    top.csv        the N best (default 20)
    heatmap.png    positions x 20 amino acids, centred on 0, wild type marked
    scan.json      model, scoring, sequence, positions, the summary line, time and sites/s (and the structure
                   tokens a structure-aware model read)
    scan_progress.npz   while running: the positions done (--resume continues from it; removed at the end)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plmforge import owned
from plmforge.errors import ConfigError, DataError, RunDirError
from plmforge.mutate import scoring as sc
from plmforge.mutate.lm import MaskedLM, MaskedLMEnsemble, load_scorer, structure_field_of
from plmforge.data.notation import (
    AMINO_ACIDS,
    Substitution,
    apply,
    one_sequence,
    parse_positions,
    variant_name,
)

log = logging.getLogger("plmforge")
CHUNK = 32  # positions scored between two saves of a scan's progress


@dataclass
class ScanResult:
    table: pd.DataFrame  # scan.csv's rows
    matrix: np.ndarray  # (positions, 20) scores, the wild type's own column 0
    positions: list[int]
    summary: str
    out_dir: Path | None = None
    seconds: float = 0.0


@dataclass
class ScoreResult:
    table: pd.DataFrame  # mutant, score (and the DMS columns when given)
    summary: str
    report: dict[str, Any] | None = None  # DMS metrics with intervals, when DMS_score was given
    written: list[Path] = field(default_factory=list)


def read_sequence(sequence: str | None = None, fasta: str | Path | None = None,
                  structure: str | Path | None = None, chain: str | None = None) -> tuple[str, str]:
    """(name, sequence) from a sequence string or a one-record FASTA file, upper-cased and checked; with
    neither, the sequence of the structure file's chain."""
    if sequence is None and fasta is None and structure is not None:
        from plmforge.mutate.structure import numbering_note, read_chain

        found = read_chain(structure, chain)
        note = numbering_note(found)
        if note:
            log.warning("%s: the wild type is the structure's chain; %s", structure, note)
        return f"{Path(structure).stem}_{found.name}", found.sequence
    if (sequence is None) == (fasta is None):
        raise ConfigError("give the wild type either as --sequence or as --fasta (one of them)")
    return one_sequence(sequence, fasta, "--sequence")


Scorer = MaskedLM | MaskedLMEnsemble


def _lm(model: str | Scorer, trust_remote_code: bool, precision: str | None, force_precision: bool) -> Scorer:
    if isinstance(model, (MaskedLM, MaskedLMEnsemble)):
        return model
    return load_scorer(model, trust_remote_code, precision=precision, force_precision=force_precision)


def _structure(model: str | Scorer, wt: str, structure: str | Path | None, chain: str | None,
               structure_tokens: str | None, trust_remote_code: bool = False) -> list[str] | None:
    """The structure symbols the model reads at every wild-type residue (None: a sequence-only model), read
    and checked before any weight is loaded (the model's family is known from its name)."""
    from plmforge.mutate.structure import structure_symbols

    name = model.name if isinstance(model, (MaskedLM, MaskedLMEnsemble)) else str(model)
    return structure_symbols(structure_field_of(model, trust_remote_code), wt, name, structure, chain,
                             structure_tokens)


def _bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="site", dynamic_ncols=True)


def _fingerprint(model_name: str, sequence: str, scoring: str, positions: list[int],
                 structure: list[str] | None) -> str:
    # (3Di letters in either case are one structure)
    text = json.dumps([model_name, sequence, scoring, positions] + ([[t.upper() for t in structure]] if structure
                                                                     else []))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def scan(model: str | Scorer, sequence: str | None = None, fasta: str | Path | None = None, *,
         positions: str | None = None, scoring: str = "masked_marginal", out: str | Path | None = None,
         top: int = 20, max_tokens: int | None = None, overwrite: bool = False, resume: bool = False,
         progress: bool = True, trust_remote_code: bool = False, precision: str | None = None,
         force_precision: bool = False, structure: str | Path | None = None, chain: str | None = None,
         structure_tokens: str | None = None) -> ScanResult:
    """Score every single substitution at the chosen positions (default: all) of one protein; a structure-
    aware model (SaProt, ProSST) reads the structure (`structure` file and `chain`, or `structure_tokens`)."""
    if scoring not in sc.SCORINGS:
        raise ConfigError(f"--scoring {scoring!r}: choose from {', '.join(sc.SCORINGS)}")
    if top < 1:
        raise ConfigError("--top must be at least 1")
    name, wt = read_sequence(sequence, fasta, structure, chain)
    symbols = _structure(model, wt, structure, chain, structure_tokens, trust_remote_code)
    chosen = parse_positions(positions, len(wt))
    skipped = [p for p in chosen if wt[p - 1] not in AMINO_ACIDS]
    chosen = [p for p in chosen if wt[p - 1] in AMINO_ACIDS]
    if not chosen:
        raise DataError("no position to scan: every chosen position holds a letter other than the 20 amino acids")
    out_dir = Path(out).expanduser() if out is not None else None
    model_name = model.name if isinstance(model, (MaskedLM, MaskedLMEnsemble)) else str(model)
    key = _fingerprint(model_name, wt, scoring, chosen, symbols)
    done: dict[int, np.ndarray] = {}
    if out_dir is not None:  # the destination is checked before any compute
        if resume:
            done = _progress(out_dir, key)
        else:
            owned.check_output_dir(out_dir, "mutate", overwrite=overwrite, inputs=[fasta, structure],
                                   how="pass --overwrite (or --resume to continue an interrupted scan)")
    lm = _lm(model, trust_remote_code, precision, force_precision)  # refusals (head, precision) before writing
    if out_dir is not None and not resume:
        owned.replace_dir(out_dir, "mutate", inputs=[fasta, structure])
    todo = [p for p in chosen if p not in done]
    per_site = 1 if scoring != "pll" else 19 * len(wt)
    bar = _bar(len(todo) * per_site + (len(wt) if scoring == "pll" and todo else 0), progress,
               f"{scoring} {name}")
    t0 = time.time()
    wt_pll = None
    for start in range(0, len(todo), CHUNK):
        part = todo[start:start + CHUNK]
        if scoring == "pll":
            if wt_pll is None:
                wt_pll = sc.pseudo_log_likelihoods(lm, [wt], max_tokens=max_tokens, progress=bar,
                                                   structure=symbols)[0]
            variants = [(Substitution(p, wt[p - 1], a),) for p in part for a in AMINO_ACIDS if a != wt[p - 1]]
            mutants = [apply(v, wt) for v in variants]
            values = sc.pseudo_log_likelihoods(lm, mutants, max_tokens=max_tokens, progress=bar,
                                               structure=symbols) - wt_pll
            rows = np.zeros((len(part), 20))
            for v, value in zip(variants, values, strict=True):
                rows[part.index(v[0].position), AMINO_ACIDS.index(v[0].mt)] = value
        else:
            rows = sc.marginal_matrix(lm, wt, part, scoring, max_tokens=max_tokens, progress=bar, structure=symbols)
        done.update({p: rows[k] for k, p in enumerate(part)})
        if out_dir is not None:
            _save_progress(out_dir, key, done)
    if bar is not None:
        bar.close()
    seconds = time.time() - t0
    matrix = np.stack([done[p] for p in chosen])
    table = scan_table(matrix, chosen, wt)
    best = table.iloc[0]
    beneficial = int((table["score"] > 0).sum())
    summary = (f"{name}: {len(table)} substitutions at {len(chosen)} positions scored by {scoring} with {model_name}"
               f"{f' ({len(skipped)} positions without a standard residue left out)' if skipped else ''}; best "
               f"{best['mutant']} ({best['score']:.3f}); {beneficial} score above the wild type"
               + (f"; {len(todo) / seconds:.1f} sites/s" if todo and seconds > 0 else ""))
    result = ScanResult(table, matrix, chosen, summary, out_dir, seconds)
    if out_dir is not None:
        _write_scan(result, out_dir, wt, name, model_name, scoring, top, key, len(todo), symbols)
    return result


def scan_table(matrix: np.ndarray, positions: list[int], wt: str) -> pd.DataFrame:
    rows = []
    for k, p in enumerate(positions):
        for j, a in enumerate(AMINO_ACIDS):
            if a != wt[p - 1]:
                rows.append((f"{wt[p - 1]}{p}{a}", p, wt[p - 1], a, float(matrix[k, j])))
    table = pd.DataFrame(rows, columns=["mutant", "position", "wt", "mt", "score"])
    table = table.sort_values(["score", "position", "mt"], ascending=[False, True, True], kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)


def _progress(out_dir: Path, key: str) -> dict[int, np.ndarray]:
    f = out_dir / "scan_progress.npz"
    if not f.is_file():
        if (out_dir / "scan.csv").is_file():
            raise RunDirError(f"{out_dir} holds a finished scan; nothing to resume (--overwrite to redo it)")
        raise RunDirError(f"{out_dir} has no interrupted scan to resume ({f.name} is missing); start it without "
                          "--resume")
    with np.load(f) as data:
        if str(data["key"]) != key:
            raise RunDirError(f"{out_dir} holds an interrupted scan of another model, sequence, structure, scoring or "
                              "positions; resume with the same arguments, or start a new scan elsewhere")
        return {int(p): row for p, row in zip(data["positions"], data["rows"], strict=True)}


def _save_progress(out_dir: Path, key: str, done: dict[int, np.ndarray]) -> None:
    tmp = out_dir / ".scan_progress.npz.partial"
    positions = sorted(done)
    with tmp.open("wb") as fh:
        np.savez(fh, key=np.array(key), positions=np.array(positions), rows=np.stack([done[p] for p in positions]))
    os.replace(tmp, out_dir / "scan_progress.npz")


def _write_scan(result: ScanResult, out_dir: Path, wt: str, name: str, model_name: str, scoring: str, top: int,
                key: str, computed: int, structure: list[str] | None) -> None:
    from plmforge.mutate.plots import heatmap

    for file_name, frame in (("scan.csv", result.table), ("top.csv", result.table.head(top))):
        _write_csv(frame, out_dir / file_name)
    heatmap(result.matrix, result.positions, wt, out_dir / "heatmap.png",
            f"{name}: {scoring} scores from {model_name} (log-probability ratio to the wild type)")
    blob = {"model": model_name, "scoring": scoring, "name": name, "sequence": wt, "positions": result.positions,
            "substitutions": len(result.table), "summary": result.summary, "seconds": round(result.seconds, 2),
            "sites_computed": computed, "key": key}
    if structure is not None:  # what the structure-aware model read at each residue
        blob["structure_tokens"] = "".join(structure) if all(len(t) == 1 for t in structure) else ",".join(structure)
    (out_dir / "scan.json").write_text(json.dumps(blob, indent=1))
    (out_dir / "scan_progress.npz").unlink(missing_ok=True)


def _variants_from(mutations: str | Path | list[str], wt: str) -> tuple[pd.DataFrame, str]:
    """The variants to score as a table with a `mutant` column (and DMS columns from a DMS file)."""
    from plmforge.mutate.dms import read_dms

    if isinstance(mutations, list | tuple):
        return pd.DataFrame({"mutant": [str(m) for m in mutations]}), "--mutations"
    text = str(mutations)
    path = Path(text).expanduser()
    if path.is_file():
        return read_dms(path), str(path)
    if path.suffix.lower() in (".csv", ".tsv", ".txt") or os.sep in text:
        raise DataError("no such file", file=text, hint="give a DMS file, or the variants themselves: A42G,K50R:A42G")
    return pd.DataFrame({"mutant": [m.strip() for m in text.split(",") if m.strip()]}), "--mutations"


def score(model: str | Scorer, mutations: str | Path | list[str], sequence: str | None = None,
          fasta: str | Path | None = None, *, scoring: str = "masked_marginal", out: str | Path | None = None,
          overwrite: bool = False, resamples: int = 1000, max_tokens: int | None = None, progress: bool = True,
          trust_remote_code: bool = False, precision: str | None = None, force_precision: bool = False,
          structure: str | Path | None = None, chain: str | None = None,
          structure_tokens: str | None = None) -> ScoreResult:
    """Score single and multiple substitutions of one wild type; with DMS_score given, ProteinGym's metrics
    with bootstrap intervals and a scatter plot. A structure-aware model reads the wild type's structure."""
    if scoring not in sc.SCORINGS:
        raise ConfigError(f"--scoring {scoring!r}: choose from {', '.join(sc.SCORINGS)}")
    name, wt = read_sequence(sequence, fasta, structure, chain)
    symbols = _structure(model, wt, structure, chain, structure_tokens, trust_remote_code)
    table, where = _variants_from(mutations, wt)
    if table.empty:
        raise DataError("no variants to score", file=where)
    from plmforge.mutate.dms import check_variants

    variants = check_variants(table, wt, where)
    written_targets: list[Path] = []
    target = Path(out).expanduser() if out is not None else None
    has_dms = "DMS_score" in table.columns and table["DMS_score"].notna().any()
    if target is not None:
        sources = [fasta, structure, where if where != "--mutations" else None]
        owned.check_output_file(target, overwrite=overwrite, inputs=sources, flag="--out",
                                companions=_companions(target) if has_dms else [])
    lm = _lm(model, trust_remote_code, precision, force_precision)
    n_sites = len({s.position for v in variants for s in v}) if scoring != "pll" else \
        sum(len(apply(v, wt)) for v in variants) + len(wt)
    bar = _bar(n_sites, progress, f"{scoring} {name}")
    values = sc.score_variants(lm, wt, variants, scoring, max_tokens=max_tokens, progress=bar, structure=symbols)
    if bar is not None:
        bar.close()
    result_table = pd.DataFrame({"mutant": [variant_name(v) for v in variants], "score": values})
    for column in ("DMS_score", "DMS_score_bin"):
        if column in table.columns:
            result_table[column] = table[column].to_numpy()
    summary = f"{name}: {len(variants)} variants scored by {scoring} with {lm.name}"
    if target is not None:
        _write_csv(result_table, target)
        written_targets.append(target)
    report = None
    if has_dms:
        report, shown = _dms_outputs(result_table, values, resamples, target, lm.name, scoring, name)
        summary += shown
        if target is not None:
            written_targets += _companions(target)
    return ScoreResult(result_table, summary, report, written_targets)


def _companions(target: Path) -> list[Path]:
    """The metrics and scatter files written next to a scores CSV with measured DMS scores."""
    return [target.with_name(target.stem + "_metrics.json"), target.with_name(target.stem + "_scatter.png")]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Written beside the target and renamed over it: an error leaves an earlier file as it was."""
    tmp = path.with_name(f".{path.name}.partial")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)


def _dms_outputs(table: pd.DataFrame, values: np.ndarray, resamples: int, target: Path | None, model_name: str,
                 scoring: str, name: str) -> tuple[dict[str, Any], str]:
    """ProteinGym's metrics (with intervals) on the variants that have a DMS_score, their summary text, and
    with `target` the metrics JSON and the scatter plot beside it."""
    from plmforge.mutate.dms import dms_report, measured

    keep, y, bins = measured(table)
    report = dms_report(y, values[keep], bins, resamples)
    report.update({"model": model_name, "scoring": scoring})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in report["metrics"].items() if not np.isnan(v))
    if target is not None:
        from plmforge.mutate.plots import scatter

        metrics_file, scatter_file = _companions(target)
        metrics_file.write_text(json.dumps(report, indent=1))
        scatter(values[keep], y, scatter_file, f"{name}: {scoring} ({model_name}) vs measured; "
                f"Spearman {report['metrics']['spearman']:.3f}")
    return report, f"; against DMS_score ({int(keep.sum())} variants): {shown}"
