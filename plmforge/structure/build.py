"""Structure files -> one row per protein chain: id, file, chain, amino-acid sequence, 3Di and
secondary-structure strings; files are processed in parallel worker processes, and every file or
chain left out is reported with the reason."""

from __future__ import annotations

import glob
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from plmforge.errors import DataError
from plmforge.structure.reader import StructureFileError, is_structure_file, read_structure, structure_stem
from plmforge.structure.tokens import (
    SecondaryStructure,
    choose_secondary_structure,
    foldseek_tokens,
    mkdssp_states,
    pydssp_states,
)

log = logging.getLogger("plmforge")
SEQUENCE_COLUMN = "aa_seq"
FOLDSEEK_COLUMN = "foldseek_seq"


@dataclass
class ChainTokens:
    id: str  # <file stem>_<chain>
    file: str
    chain: str
    sequence: str
    foldseek: str
    secondary: str
    notes: list[str] = field(default_factory=list)


@dataclass
class FileReport:
    file: str
    chains: list[ChainTokens] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (chain or '', reason)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the file as a whole could not be read, or gave no protein chain
    failed: list[str] = field(default_factory=list)  # chains whose tokens could not be computed
    seconds: float = 0.0


@dataclass
class StructureResult:
    reports: list[FileReport]
    secondary: SecondaryStructure
    seconds: float

    @property
    def chains(self) -> list[ChainTokens]:
        return [c for r in self.reports for c in r.chains]

    def failures(self) -> int:
        """Inputs that failed: unreadable files, files without a protein chain, chains not computed."""
        return sum(1 for r in self.reports if r.error) + sum(len(r.failed) for r in self.reports if not r.error)

    def skipped(self) -> list[tuple[str, str, str]]:
        """(file, chain or '', reason) for every broken file and every chain left out."""
        out = [(r.file, "", r.error) for r in self.reports if r.error]
        out += [(r.file, chain, why) for r in self.reports for chain, why in r.skipped]
        return out

    def table(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        return pd.DataFrame({"id": [c.id for c in self.chains], "file": [c.file for c in self.chains],
                             "chain": [c.chain for c in self.chains],
                             SEQUENCE_COLUMN: [c.sequence for c in self.chains],
                             FOLDSEEK_COLUMN: [c.foldseek for c in self.chains],
                             self.secondary.column: [c.secondary for c in self.chains]})

    def write(self, out: str | Path) -> Path:
        return write_csv_atomic(self.table(), Path(out))


def write_csv_atomic(frame, out: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write to a temporary file beside `out`, then rename: an interrupted write never leaves half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out)
    return out


def collect_paths(specs: list[str | Path]) -> list[Path]:
    """Files, directories (searched recursively) and glob patterns -> structure files, in a stable order.
    A path that names nothing is an error (never silently ignored)."""
    found: list[Path] = []
    for spec in map(str, specs):
        p = Path(spec)
        if p.is_dir():
            hits = sorted(q for q in p.rglob("*") if q.is_file() and is_structure_file(q))
            if not hits:
                raise DataError("the directory has no .pdb/.ent/.cif/.mmcif file (optionally .gz)", file=spec)
        elif p.is_file():
            hits = [p]
        else:
            hits = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file())
            if not hits:
                raise DataError("no such file, directory or matching pattern", file=spec)
        found += [h for h in hits if h not in found]
    return found


def process_file(path: Path, secondary: SecondaryStructure) -> FileReport:
    """One file: read, tokenise every protein chain; a broken file becomes a report, never an exception."""
    t0 = time.perf_counter()
    report = FileReport(str(path))
    try:
        read = read_structure(path)
        report.notes += read.notes
        report.skipped += read.skipped
        stem = structure_stem(path)
        if read.chains and secondary.tool == "mkdssp":
            ss, unassigned = mkdssp_states(path, read.chains)
        else:
            ss, unassigned = {}, {}
            for chain in read.chains:
                ss[chain.name], unassigned[chain.name] = pydssp_states(chain)
        for chain in read.chains:
            notes = list(chain.notes)
            if chain.sequence and unassigned.get(chain.name) == len(chain.sequence):
                report.skipped.append((chain.name, f"{secondary.tool} assigned no secondary-structure state to any "
                                                   "of its residues: not computed, so not written"))
                report.failed.append(chain.name)
                continue
            if unassigned.get(chain.name):
                notes.append(f"{unassigned[chain.name]} residues without a secondary-structure state (written as L)")
            cid = f"{stem}_{chain.name}" if chain.name.strip() else stem
            report.chains.append(ChainTokens(cid, str(path), chain.name, chain.sequence, foldseek_tokens(chain),
                                             ss[chain.name], notes))
        if not report.chains and not report.error:
            reasons = "; ".join(f"chain {c}: {why}" for c, why in report.skipped) or "none found"
            report.error = f"no protein chain written ({reasons})"
    except StructureFileError as exc:
        report.error = str(exc)
        report.chains = []
    except Exception as exc:  # noqa: BLE001  a file the libraries choke on must not stop the other files
        report.error = f"{type(exc).__name__}: {exc}"
        report.chains = []
    report.seconds = time.perf_counter() - t0
    return report


def structure_tokens(paths: list[str | Path], workers: int | None = None, secondary: str = "auto",
                     progress: bool = True) -> StructureResult:
    """Every protein chain of every structure file under `paths` (files, directories, globs) with its
    3Di and secondary-structure strings. `workers`: processes (default: the CPU count, at most 8)."""
    from tqdm.auto import tqdm

    files = collect_paths(paths)
    ss = choose_secondary_structure(secondary)
    log.info("secondary structure: %s", ss.description)
    workers = max(1, min(workers or min(os.cpu_count() or 1, 8), len(files)))
    t0 = time.perf_counter()
    reports: dict[Path, FileReport] = {}
    bar = tqdm(total=len(files), desc="structures", unit="file", disable=not progress, mininterval=0.5)
    if workers == 1:
        for f in files:
            reports[f] = process_file(f, ss)
            bar.update()
    else:
        # fork on Linux: no re-import of the caller's script (spawn would need an `if __name__` guard there)
        with ProcessPoolExecutor(workers, mp_context=get_context("fork" if sys.platform == "linux" else "spawn")) as pool:
            futures = {pool.submit(process_file, f, ss): f for f in files}
            for fut in as_completed(futures):
                reports[futures[fut]] = fut.result()
                bar.update()
    bar.close()
    result = StructureResult([reports[f] for f in files], ss, time.perf_counter() - t0)
    _drop_duplicate_ids(result)
    return result


def _drop_duplicate_ids(result: StructureResult) -> None:
    """Two files with the same stem (1abc.pdb and 1abc.cif) would give the same ids: the first file
    listed keeps them, the later chain is reported."""
    seen: dict[str, str] = {}
    for report in result.reports:
        kept = []
        for c in report.chains:
            if c.id in seen:
                report.skipped.append((c.chain, f"id {c.id} was already written from {seen[c.id]}"))
            else:
                seen[c.id] = report.file
                kept.append(c)
        report.chains = kept
