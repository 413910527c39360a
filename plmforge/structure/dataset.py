"""Adding structure columns to an existing dataset.

The id-to-file rule (exact, no substring or case guessing), for a row whose id column holds X:
1. a structure file in the directory (searched recursively) whose name is X plus a structure suffix
   (.pdb, .ent, .cif, .mmcif, each optionally .gz): its single protein chain; a file with several
   protein chains needs the id written as `<stem>_<chain>`;
2. otherwise, X = `<stem>_<chain>` split at its last underscore, with a file named <stem> as in 1:
   that file's chain <chain> (the ids `plmforge structure` writes).
The row's sequence must equal the chain's sequence as read (see reader.py); rows that match no file or
chain, or whose sequences differ, are reported by row and keep empty structure columns. The input file
is never written to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from plmforge.errors import DataError
from plmforge.structure.build import (
    FOLDSEEK_COLUMN,
    ChainTokens,
    structure_tokens,
    write_csv_atomic,
)
from plmforge.structure.reader import is_structure_file, structure_stem


@dataclass
class JoinReport:
    rows: int
    matched: int
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (row, id, what is wrong)
    secondary: str = ""
    out: Path | None = None


def file_index(directory: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and is_structure_file(p):
            index.setdefault(structure_stem(p), []).append(p)
    return index


def resolve_id(ident: str, index: dict[str, list[Path]]) -> tuple[Path | None, str | None, str | None]:
    """(file, chain or None for 'the only protein chain', problem)."""
    if ident in index:
        files = index[ident]
        if len(files) > 1:
            return None, None, f"several files are named {ident}: {', '.join(p.name for p in files)}"
        return files[0], None, None
    stem, sep, chain = ident.rpartition("_")
    if sep and stem in index:
        files = index[stem]
        if len(files) > 1:
            return None, None, f"several files are named {stem}: {', '.join(p.name for p in files)}"
        return files[0], chain, None
    return None, None, (f"no structure file named {ident} (.pdb/.ent/.cif/.mmcif, optionally .gz)"
                        + (f", nor a file {stem} with chain {chain}" if sep else ""))


def add_structure_columns(dataset: str | Path, structures: str | Path, out: str | Path, id_column: str = "name",
                          sequence_column: str = "aa_seq", workers: int | None = None, secondary: str = "auto",
                          progress: bool = True) -> JoinReport:
    from plmforge.data.readers import read_file

    dataset, structures, out = Path(dataset), Path(structures), Path(out)
    if out.resolve() == dataset.resolve():
        raise DataError("the output would overwrite the input dataset", file=str(out),
                        hint="give --out a new file name")
    if not structures.is_dir():
        raise DataError("not a directory", file=str(structures), hint="--structures takes the directory of "
                        "the .pdb/.cif files")
    table = read_file(dataset, sequence_column)
    frame = table.df

    def row(i: int) -> str:
        return f"row {i + 1} (line {table.lines[i]})" if table.lines else f"row {i + 1}"

    for col in (id_column, sequence_column):
        if col not in frame.columns:
            raise DataError(f"no column {col!r}; the columns are {', '.join(map(str, frame.columns))}",
                            file=str(dataset), hint="name the id column with --id-column"
                            if col == id_column else "name the sequence column with --sequence-column")
    index = file_index(structures)
    wanted: dict[int, tuple[Path, str | None]] = {}
    report = JoinReport(len(frame), 0)
    for i, ident in enumerate(frame[id_column].astype(str)):
        path, chain, problem = resolve_id(ident.strip(), index)
        if problem:
            report.problems.append((row(i), ident, problem))
        else:
            wanted[i] = (path, chain)  # type: ignore[assignment]
    files = sorted({p for p, _ in wanted.values()})
    tokens = structure_tokens(files, workers, secondary, progress) if files else None
    ss_column = tokens.secondary.column if tokens else "ss8_seq"
    report.secondary = tokens.secondary.description if tokens else ""
    by_file: dict[str, list[ChainTokens]] = {}
    errors: dict[str, str] = {}
    for rep in tokens.reports if tokens else []:
        by_file[rep.file] = rep.chains
        if rep.error:
            errors[rep.file] = rep.error
    fold, ss = [""] * len(frame), [""] * len(frame)
    for i, (path, chain) in wanted.items():
        ident = str(frame[id_column].iloc[i])
        chains = by_file.get(str(path), [])
        if str(path) in errors:
            report.problems.append((row(i), ident, f"{path.name} could not be read: {errors[str(path)]}"))
            continue
        if chain is None:
            if len(chains) != 1:
                report.problems.append((row(i), ident, f"{path.name} has {len(chains)} protein chains "
                                        f"({', '.join(c.chain for c in chains) or 'none'}); write the id as "
                                        f"<stem>_<chain>"))
                continue
            hit = chains[0]
        else:
            hit = next((c for c in chains if c.chain == chain), None)
            if hit is None:
                report.problems.append((row(i), ident, f"{path.name} has no protein chain {chain} (protein chains: "
                                        f"{', '.join(c.chain for c in chains) or 'none'})"))
                continue
        seq = str(frame[sequence_column].iloc[i]).strip().upper()
        if seq != hit.sequence:
            report.problems.append((row(i), ident, _mismatch(seq, hit.sequence, f"{path.name} chain {hit.chain}")))
            continue
        fold[i], ss[i] = hit.foldseek, hit.secondary
        report.matched += 1
    result = frame.copy()
    result[FOLDSEEK_COLUMN] = fold
    result[ss_column] = ss
    report.out = write_csv_atomic(result, out)
    return report


def _mismatch(seq: str, structure: str, where: str) -> str:
    first = next((k for k, (a, b) in enumerate(zip(seq, structure)) if a != b), min(len(seq), len(structure)))
    return (f"sequence differs from {where}: {len(seq)} vs {len(structure)} residues, first difference at "
            f"position {first + 1} ({seq[first:first + 1] or 'end'} vs {structure[first:first + 1] or 'end'})")

