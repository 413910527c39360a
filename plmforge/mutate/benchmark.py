"""`plmforge mutate benchmark`: one model's zero-shot scores on every assay of a ProteinGym-style directory, with
the per-assay metrics and their averages written as ProteinGym writes its own tables.

Input: a directory of DMS files (`mutant`, `mutated_sequence`, `DMS_score`, `DMS_score_bin`; ProteinGym's
`DMS_ProteinGym_substitutions/` as downloaded) and, optionally, its reference file (`DMS_substitutions.csv`
with `DMS_id`, `DMS_filename`, `target_seq`; read from the directory or its parent when present). Without a
reference, every `*.csv` is an assay named by its file, and its wild type is the first variant's
`mutated_sequence` with the substitutions undone (and checked against every other row).

SaProt models read each assay's structure from --structures DIR (ProteinGym's AlphaFold2 structures): the
reference's `pdb_file` covering `pdb_range` of the wild type (several files joined by `|` for long proteins),
or without a reference `<DMS_id>.pdb`/`.cif`. As ProteinGym scores SaProt, each variant is scored with the
sequence and 3Di letters of the structure chunk holding its first substitution.

Output directory (made by plmforge; --resume keeps the assays already scored):
    scores/<DMS_id>.csv                mutant, score, DMS_score, DMS_score_bin per variant
    metrics_by_assay.csv               DMS_id, n_variants, spearman, auc, mcc, ndcg, top_recall
    <Metric>_DMS_level.csv             ProteinGym's layout: DMS_id and one column named by the model
    summary.json, summary.csv          every metric averaged over the assays (and by coarse_selection_type when
                                       the reference has it), the model, scoring and assay count
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from plmforge import owned
from plmforge.errors import ConfigError, DataError
from plmforge.mutate import scoring as sc
from plmforge.mutate.dms import DMS_METRICS, check_variants, dms_metrics, measured, read_dms
from plmforge.data.notation import parse_variant

log = logging.getLogger("plmforge")
PROTEINGYM_NAMES = {"spearman": "Spearman", "auc": "AUC", "mcc": "MCC", "ndcg": "NDCG", "top_recall": "Top_recall"}


@dataclass
class Assay:
    dms_id: str
    path: Path
    wild_type: str
    selection: str | None = None  # ProteinGym's coarse_selection_type, when the reference gives it
    pdb_file: str | None = None  # the reference's structure file name and the wild type's range it covers
    pdb_range: str | None = None


@dataclass
class BenchmarkResult:
    by_assay: pd.DataFrame
    summary: dict[str, Any]
    text: str
    out_dir: Path


def find_assays(directory: str | Path, reference: str | Path | None = None) -> list[Assay]:
    """The assays of a ProteinGym-style directory (see the module's doc), checked before any scoring."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError("no such directory", file=str(root), hint="give the folder of DMS files (--proteingym DIR)")
    folder = root / "DMS_ProteinGym_substitutions" if (root / "DMS_ProteinGym_substitutions").is_dir() else root
    ref = Path(reference).expanduser() if reference else next(
        (p for p in (root / "DMS_substitutions.csv", root.parent / "DMS_substitutions.csv") if p.is_file()), None)
    if ref is not None:
        return _from_reference(ref, folder)
    files = sorted(p for p in folder.glob("*.csv") if p.name != "DMS_substitutions.csv")
    if not files:
        raise DataError("no DMS files (*.csv) here", file=str(folder),
                        hint="a ProteinGym assay is a CSV with mutant, mutated_sequence and DMS_score columns")
    return [Assay(p.stem, p, _wild_type_of(p)) for p in files]


def _from_reference(ref: Path, folder: Path) -> list[Assay]:
    table = pd.read_csv(ref)
    missing = [c for c in ("DMS_id", "target_seq") if c not in table.columns]
    if missing:
        raise DataError(f"the reference file lacks {', '.join(missing)}", file=str(ref),
                        hint="ProteinGym's DMS_substitutions.csv has DMS_id, DMS_filename and target_seq")
    out = []
    for i, row in table.iterrows():
        name = str(row.get("DMS_filename") or f"{row['DMS_id']}.csv")
        path = folder / name
        if not path.is_file():
            raise DataError(f"assay {row['DMS_id']}: its file {name} is not in {folder}", file=str(ref), row=int(i) + 2,
                            hint="download the assays next to the reference, or give --reference for this folder")
        selection, pdb, span = (row.get(k) for k in ("coarse_selection_type", "pdb_file", "pdb_range"))
        out.append(Assay(str(row["DMS_id"]), path, str(row["target_seq"]).strip().upper(),
                         *(None if v is None or pd.isna(v) else str(v) for v in (selection, pdb, span))))
    return out


def _wild_type_of(path: Path) -> str:
    frame = read_dms(path)
    if "mutated_sequence" not in frame.columns or frame.empty:
        raise DataError("without a reference file the wild type is read from mutated_sequence, which is missing",
                        file=str(path), hint="add ProteinGym's DMS_substitutions.csv (target_seq) to the folder")
    first = parse_variant(str(frame["mutant"].iloc[0]), f"{path}, row 2")
    seq = list(str(frame["mutated_sequence"].iloc[0]).strip().upper())
    for s in first:
        seq[s.position - 1] = s.wt
    return "".join(seq)


def benchmark(model: Any, proteingym: str | Path, out: str | Path, *, reference: str | Path | None = None,
              scoring: str = "masked_marginal", overwrite: bool = False, resume: bool = False,
              max_tokens: int | None = None, progress: bool = True, trust_remote_code: bool = False,
              precision: str | None = None, force_precision: bool = False,
              structures: str | Path | None = None) -> BenchmarkResult:
    """Score every assay with one model (loaded once) and write the per-assay and averaged metrics; a SaProt
    model reads each assay's structure from `structures`."""
    from plmforge.mutate.api import _lm, _write_csv
    from plmforge.mutate.lm import structure_field_of

    if scoring not in sc.SCORINGS:
        raise ConfigError(f"--scoring {scoring!r}: choose from {', '.join(sc.SCORINGS)}")
    assays = find_assays(proteingym, reference)
    field = structure_field_of(model, trust_remote_code)
    symbols = {a.dms_id: assay_symbols(a, field, structures) for a in assays}  # all read before any scoring
    out_dir = Path(out).expanduser()
    if not resume:
        owned.check_output_dir(out_dir, "mutate_benchmark", overwrite=overwrite, inputs=[proteingym, reference],
                               how="pass --overwrite (or --resume to continue an interrupted benchmark)")
    elif not owned.made_as(out_dir, "mutate_benchmark"):
        raise DataError("cannot resume: this is not a benchmark directory plmforge made", file=str(out_dir),
                        hint="start it without --resume")
    lm = _lm(model, trust_remote_code, precision, force_precision)
    if not resume:
        owned.replace_dir(out_dir, "mutate_benchmark", inputs=[proteingym, reference])
    (out_dir / "scores").mkdir(exist_ok=True)
    from tqdm.auto import tqdm

    rows = []
    t0 = time.time()
    for assay in tqdm(assays, desc=f"{lm.name} on {len(assays)} assays", unit="assay", disable=not progress):
        target = out_dir / "scores" / f"{assay.dms_id}.csv"
        if resume and target.is_file():
            table = pd.read_csv(target)
        else:
            table = _score_assay(lm, assay, scoring, max_tokens, symbols[assay.dms_id])
            _write_csv(table, target)
        rows.append(_assay_row(assay, table))
    by_assay = pd.DataFrame(rows)
    summary = _summary(by_assay, lm.name, scoring, time.time() - t0)
    _write(out_dir, by_assay, summary, lm.name)
    averages = ", ".join(f"{k} {v:.3f}" for k, v in summary["average"].items() if v is not None)
    text = f"{lm.name} ({scoring}) on {len(assays)} assays: average {averages}; written to {out_dir}"
    return BenchmarkResult(by_assay, summary, text, out_dir)


Chunk = tuple[int, int, list[str]]  # 1-based first and last residue of the wild type a structure covers, its 3Di


def assay_symbols(assay: Assay, field: str | None, structures: str | Path | None) -> list[Chunk] | None:
    """The structure an assay's variants are scored with, for a structure-aware model (None: sequence only):
    one chunk per structure file. ProteinGym splits a long protein's structure into several files (pdb_file
    and pdb_range joined by `|`, e.g. BRCA2_HUMAN); each chunk's variants are scored with that chunk's
    sequence and 3Di letters alone, as ProteinGym's SaProt scoring does."""
    from plmforge.mutate.structure import FOLDSEEK, foldseek_letters

    if field is None:
        if structures is not None:
            raise ConfigError("--structures is for structure-aware (SaProt) models; this model reads sequences only")
        return None
    if field != FOLDSEEK:
        raise ConfigError("ProSST reads structure tokens from its own quantizer, which plmforge does not run, so it "
                          "cannot be benchmarked from structure files; score an assay with plmforge mutate score "
                          "--structure-tokens")
    if structures is None:
        raise ConfigError("SaProt models read each assay's structure: give --structures, the folder of ProteinGym's "
                          "AlphaFold2 structures")
    root = Path(structures).expanduser()
    files = assay.pdb_file.split("|") if assay.pdb_file else [None]
    spans = assay.pdb_range.split("|") if assay.pdb_range else [f"1-{len(assay.wild_type)}"]
    if len(files) != len(spans):
        raise DataError(f"assay {assay.dms_id}: {len(files)} structure files but {len(spans)} pdb_range parts",
                        file=str(root), hint="pdb_file and pdb_range list one range per file, joined by |")
    chunks = []
    for name, span in zip(files, spans, strict=True):
        names = [name] if name else [f"{assay.dms_id}{s}" for s in (".pdb", ".cif", ".mmcif")]
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            raise DataError(f"assay {assay.dms_id}: no structure file {' or '.join(names)}", file=str(root),
                            hint="give --structures the folder of ProteinGym's AlphaFold2 structures")
        parts = span.strip().split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not \
                1 <= int(parts[0]) <= int(parts[1]) <= len(assay.wild_type):
            raise DataError(f"assay {assay.dms_id}: pdb_range {span!r} is not start-end within the wild type's "
                            f"{len(assay.wild_type)} residues", file=str(path))
        start, end = int(parts[0]), int(parts[1])
        letters = foldseek_letters(path, None, assay.wild_type[start - 1:end])  # (its chain checked against it)
        chunks.append((start, end, list(letters)))
    return chunks


def _score_assay(lm: Any, assay: Assay, scoring: str, max_tokens: int | None,
                 chunks: list[Chunk] | None) -> pd.DataFrame:
    frame = read_dms(assay.path)
    if "DMS_score" not in frame.columns:
        raise DataError("no DMS_score column: a benchmark needs measured scores", file=str(assay.path))
    variants = check_variants(frame, assay.wild_type, str(assay.path))
    if chunks is None:
        values = sc.score_variants(lm, assay.wild_type, variants, scoring, max_tokens=max_tokens)
    else:
        values = _score_chunks(lm, assay, variants, chunks, scoring, max_tokens)
    table = pd.DataFrame({"mutant": frame["mutant"].astype(str), "score": values, "DMS_score": frame["DMS_score"]})
    if "DMS_score_bin" in frame.columns:
        table["DMS_score_bin"] = frame["DMS_score_bin"]
    return table


def _score_chunks(lm: Any, assay: Assay, variants: list, chunks: list[Chunk], scoring: str,
                  max_tokens: int | None) -> Any:
    """Each variant scored within the structure chunk that holds its first substitution, with positions
    counted from the chunk's start."""
    import numpy as np

    from plmforge.data.notation import Substitution, variant_name

    values = np.empty(len(variants))
    taken = np.zeros(len(variants), dtype=bool)
    for start, end, letters in chunks:
        rows = [i for i, v in enumerate(variants) if not taken[i] and start <= v[0].position <= end]
        outside = next((variants[i] for i in rows if any(not start <= s.position <= end for s in variants[i])), None)
        if outside is not None:
            raise DataError(f"assay {assay.dms_id}: variant {variant_name(outside)} spans two structure files "
                            f"(pdb_range {start}-{end} holds only its first substitution)", file=str(assay.path))
        shifted = [tuple(Substitution(s.position - start + 1, s.wt, s.mt) for s in variants[i]) for i in rows]
        if rows:
            values[rows] = sc.score_variants(lm, assay.wild_type[start - 1:end], shifted, scoring,
                                             max_tokens=max_tokens, structure=letters)
            taken[rows] = True
    if not taken.all():
        missing = variants[int(np.flatnonzero(~taken)[0])]
        raise DataError(f"assay {assay.dms_id}: variant {variant_name(missing)} lies outside every pdb_range",
                        file=str(assay.path), hint="the structure files must cover the mutated positions")
    return values


def _assay_row(assay: Assay, table: pd.DataFrame) -> dict[str, Any]:
    keep, y, bins = measured(table)
    metrics = dms_metrics(y, table["score"].to_numpy()[keep], bins)
    return {"DMS_id": assay.dms_id, "n_variants": int(keep.sum()), "coarse_selection_type": assay.selection,
            **{k: metrics.get(k) for k in DMS_METRICS}}


def _mean(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def _summary(by_assay: pd.DataFrame, model: str, scoring: str, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "scoring": scoring, "assays": len(by_assay),
                           "variants": int(by_assay["n_variants"].sum()), "seconds": round(seconds, 1),
                           "average": {k: _mean(by_assay[k]) for k in DMS_METRICS},
                           "average_kind": "unweighted mean over assays (ProteinGym averages per assay too)"}
    if by_assay["coarse_selection_type"].notna().any():
        out["by_selection_type"] = {str(kind): {k: _mean(part[k]) for k in DMS_METRICS}
                                    for kind, part in by_assay.groupby("coarse_selection_type")}
    return out


def _write(out_dir: Path, by_assay: pd.DataFrame, summary: dict[str, Any], model: str) -> None:
    from plmforge.mutate.api import _write_csv

    _write_csv(by_assay, out_dir / "metrics_by_assay.csv")
    for key, name in PROTEINGYM_NAMES.items():
        _write_csv(by_assay[["DMS_id", key]].rename(columns={key: model}), out_dir / f"{name}_DMS_level.csv")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    _write_csv(pd.DataFrame([{"model": model, "scoring": summary["scoring"], "assays": summary["assays"],
                              **{PROTEINGYM_NAMES[k]: v for k, v in summary["average"].items()}}]),
               out_dir / "summary.csv")
