"""Which column of a dataset holds what, read from the file itself: the protein sequences (by their
content), the label and the task it implies (numbers -> regression, a few whole numbers -> classes,
one symbol per residue -> a residue task, joined class lists -> multi-label), the ids, and — only by
their names — group and mask columns. The web UI offers the result as pre-selected menus; the CLI uses it
when no column option was given and stops, listing the candidates, where the file leaves a doubt."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plmforge.config import DataConfig, config_to_override_text
from plmforge.data.readers import Table, spec_parts
from plmforge.errors import DataError

log = logging.getLogger("plmforge")
ROLES = ("sequence", "label", "id", "group", "mask")
SEQUENCE_NAMES = ("sequence", "aa_seq", "seq", "protein_sequence", "aa_sequence", "protein", "peptide", "primary")
LABEL_NAMES = ("label", "labels", "target", "targets", "y", "class", "fitness", "score", "activity", "value",
               "dms_score")
ID_NAMES = ("id", "name", "gene", "entry", "protein_id", "accession", "uniprot", "identifier", "pdb", "mutant")
GROUP_NAMES = ("group", "cluster", "family", "group_id", "cluster_id")
MASK_NAMES = ("mask", "residue_mask")
STRUCTURE_COLUMNS = ("foldseek_seq", "ss8_seq", "ss3_seq")
AMINO = set("ACDEFGHIKLMNPQRSTVWYBZUOX")
NUCLEIC = set("ACGTUN")
MAX_CLASSES = 50  # more distinct whole numbers than this read as values
PEEK_ROWS = 20_000  # the rows read to decide (a whole usual dataset; the first chunk of a large one)
_INT = re.compile(r"[+-]?\d+")
_JOINED = re.compile(r"\[?\s*\d+(\s*[,;]\s*\d+)+\s*\]?|\[\s*\d+\s*\]")


@dataclass(frozen=True)
class ColumnChoice:
    role: str
    column: str | None  # None: no such column (id: row numbers; label: none; group/mask: not used)
    reason: str
    candidates: tuple[str, ...] = ()  # the columns that could fill this role, best first


@dataclass(frozen=True)
class ColumnInference:
    source: str
    columns: tuple[str, ...]
    choices: dict[str, ColumnChoice]
    problem_type: str | None
    problem_reason: str
    num_labels: int | None
    extra: tuple[str, ...] = ()  # further overrides the task needs, e.g. data.residue_classes=N,P
    ambiguous: dict[str, str] = dataclasses.field(default_factory=dict)

    def overrides(self) -> list[str]:
        """data.* overrides that apply what was decided."""
        out = [f"data.{role}_column={config_to_override_text(c.column)}" for role, c in self.choices.items()
               if c.column is not None]
        if self.problem_type:
            out.append(f"data.problem_type={self.problem_type}")
        return out + list(self.extra)

    def describe(self) -> list[str]:
        lines = [f"{role} column: {c.column!r} ({c.reason})" for role, c in self.choices.items()
                 if c.column is not None]
        if self.problem_type:
            lines.append(f"problem type: {self.problem_type} ({self.problem_reason})")
        return lines


def _values(table: Table, column: str) -> list[str]:
    out = []
    for v in table.df[column].tolist():
        if v is None or (isinstance(v, float) and v != v):
            continue
        if hasattr(v, "__len__") and not isinstance(v, str):  # a list or array cell (Parquet labels per residue,
            v = ",".join(str(x) for x in v)  # or a set of classes): commas kept, the residue check drops them
        text = str(v).strip()
        if text:
            out.append(text)
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sequence_like(values: list[str], named: bool = False) -> tuple[bool, str]:
    """Whether a column holds residue sequences (proteins, or nucleic acids to be warned about): nine in ten
    rows residue letters (a few bad rows are left for validation to name), with the variety of letters
    sequences have; a column with a usual sequence name needs only letters."""
    if not values:
        return False, "empty"
    words = [re.sub(r"\s+", "", v).upper() for v in values]
    residues = [w for w in words if w.isalpha() and (named or set(w) <= AMINO | NUCLEIC)]
    if len(residues) < (0.5 if named else 0.9) * len(words) or not residues:
        return False, "not residue letters"
    alphabet = set("".join(residues))
    mean = sum(map(len, residues)) / len(residues)
    reason = f"its values are residue sequences ({len(residues)} of {len(words)} rows read, mean length {mean:.0f})"
    if named or len(alphabet) >= 8 or (alphabet <= NUCLEIC and mean >= 8):
        return True, reason
    return False, "too few different letters for sequences"


def _named(column: str, names: tuple[str, ...]) -> int:
    """Rank of a column's name in a list of usual names (lower is better; len(names) when absent)."""
    key = re.sub(r"[^a-z0-9]", "_", str(column).lower()).strip("_")
    return names.index(key) if key in names else len(names)


def _pick(role: str, found: list[tuple[str, str]], names: tuple[str, ...]) -> tuple[ColumnChoice | None, str | None]:
    """One column of the candidates (column, reason): the only one, or the one with the usual name."""
    if not found:
        return None, None
    candidates = tuple(c for c, _ in sorted(found, key=lambda cr: _named(cr[0], names)))
    if len(found) == 1:
        return ColumnChoice(role, found[0][0], found[0][1], candidates), None
    ranked = sorted(found, key=lambda cr: _named(cr[0], names))
    if _named(ranked[0][0], names) < _named(ranked[1][0], names):  # only one has a usual name (or the best one)
        column, reason = ranked[0]
        return ColumnChoice(role, column, f"{reason}; named like a {role} column", candidates), None
    why = (f"{len(found)} columns could be the {role} column ({', '.join(candidates)}): choose one "
           f"(data.{role}_column=...)")
    return None, why


def _label_kind(values: list[str], sequences: list[str] | None) -> tuple[str, str, int | None, tuple[str, ...]] | None:
    """(problem type, reason, classes, extra overrides) for a label column, or None if it is not one."""
    if not values:
        return None
    residue = _residue_kind(values, sequences)  # before numbers: "0011010..." is one label per residue
    if residue is not None:
        return residue
    # 0.0/1.0 (a class column with a missing value read as floats, or written so) are whole numbers too
    values = [v[:-2] if v.endswith(".0") and _INT.fullmatch(v[:-2]) else v for v in values]
    if all(_INT.fullmatch(v) for v in values):
        distinct = sorted({int(v) for v in values})
        # classes are numbered from 0 (or 1) and most numbers up to the largest occur; 40..84 are values
        if len(distinct) <= MAX_CLASSES and 0 <= min(distinct) <= 1 and len(distinct) >= 0.5 * (max(distinct) + 1):
            n = max(distinct) + 1
            if len(distinct) == 1:
                return ("single_label_classification", f"whole numbers, but only one class ({distinct[0]}) in "
                        f"the {len(values)} rows read", n, ())
            return "single_label_classification", f"whole numbers: {len(distinct)} classes", n, ()
        return "regression", f"whole numbers, {len(distinct)} different values", None, ()
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = None
    if numbers is not None:
        return "regression", f"numbers from {min(numbers):.3g} to {max(numbers):.3g}", None, ()
    if all(_JOINED.fullmatch(v) or _INT.fullmatch(v) for v in values) and any(_JOINED.fullmatch(v) for v in values):
        classes = {int(x) for v in values for x in re.findall(r"\d+", v)}
        return "multi_label_classification", f"sets of class numbers: {len(classes)} classes", max(classes) + 1, ()
    return None


def _residue_kind(values: list[str], sequences: list[str] | None) -> tuple[str, str, None, tuple[str, ...]] | None:
    """A per-residue label column: on every row one symbol per residue of the sequence."""
    if sequences is None or len(sequences) != len(values):
        return None
    compact = [re.sub(r"[\s,]", "", v) for v in values]
    if not all(len(c) == len(re.sub(r"\s", "", s)) > 1 for c, s in zip(compact, sequences, strict=True)):
        return None
    symbols = sorted({ch for c in compact for ch in c})
    if all(ch.isdigit() for ch in symbols):
        return "residue_single_label_classification", "one digit per residue", None, ()
    return ("residue_single_label_classification", f"one symbol per residue ({','.join(symbols)})", None,
            (f"data.residue_classes={','.join(symbols)}",))


def _row_numbers(values: list[str]) -> bool:
    """Whole numbers, one per row, counting up: an index, not a label."""
    if not values or not all(_INT.fullmatch(v) for v in values):
        return False
    numbers = [int(v) for v in values]
    return len(set(numbers)) == len(numbers) and max(numbers) - min(numbers) == len(numbers) - 1


def _text_labels(values: list[str]) -> bool:
    distinct = set(values)
    return 1 < len(distinct) <= MAX_CLASSES and all(len(v) <= 40 for v in distinct)


def _sequence_choice(table: Table, given: str | None, notes: list[str]) -> tuple[ColumnChoice | None, str | None]:
    columns = [str(c) for c in table.df.columns]
    if given and given in columns:
        return ColumnChoice("sequence", given, "chosen", (given,)), None
    if given:
        notes.append(f"the column {given!r} is not in this file")
    found = []
    for c in columns:
        if c.lower() in STRUCTURE_COLUMNS:
            continue
        ok, reason = _sequence_like(_values(table, c), _named(c, SEQUENCE_NAMES) < len(SEQUENCE_NAMES))
        if ok:
            found.append((c, reason))
    if not found:
        return None, "no column holds protein sequences (amino-acid letters): choose the sequence column"
    return _pick("sequence", found, SEQUENCE_NAMES)


def _id_choice(table: Table, taken: set[str], given: str | None) -> ColumnChoice:
    columns = [str(c) for c in table.df.columns]
    if given and given in columns:
        return ColumnChoice("id", given, "chosen", (given,))
    found = []
    for c in columns:
        if c in taken:
            continue
        values = [str(v) for v in table.df[c].tolist()]
        if values and len(set(values)) == len(values) and all(0 < len(v) <= 80 for v in values) and \
                not all(_number(v) for v in values) and not _sequence_like(_values(table, c))[0]:
            found.append(c)
    found.sort(key=lambda c: _named(c, ID_NAMES))
    if not found:
        why = "no column of unique names: proteins are named by their row"
        return ColumnChoice("id", None, why + (f" (the column {given!r} is not in this file)" if given else ""))
    return ColumnChoice("id", found[0], "a different name on every row", tuple(found))


def _by_name(table: Table, role: str, names: tuple[str, ...], given: str | None, taken: set[str]) -> ColumnChoice:
    columns = [str(c) for c in table.df.columns]
    if given and given in columns:
        return ColumnChoice(role, given, "chosen", (given,))
    found = [c for c in columns if c not in taken and _named(c, names) < len(names)]
    if not found:
        return ColumnChoice(role, None, f"no column named like a {role} column")
    return ColumnChoice(role, found[0], f"named like a {role} column", tuple(found))


def infer_columns(table: Table, given: Mapping[str, str | None] | None = None, *,
                  with_labels: bool = True) -> ColumnInference:
    """Every role's column in `table` (a file's first rows), with the reasons, and the task the label
    column implies. `given` are columns already chosen (e.g. a run's): kept when the table has them."""
    given = dict(given or {})
    notes: list[str] = []
    ambiguous: dict[str, str] = {}
    choices: dict[str, ColumnChoice] = {}
    seq, why = _sequence_choice(table, given.get("sequence"), notes)
    if why:
        ambiguous["sequence"] = why
    seq = seq or ColumnChoice("sequence", None, why or "not found")
    if notes:
        seq = dataclasses.replace(seq, reason=f"{seq.reason} ({notes[0]})")
    choices["sequence"] = seq
    taken = {seq.column} if seq.column else set()
    for role, names in (("group", GROUP_NAMES), ("mask", MASK_NAMES)):
        choices[role] = _by_name(table, role, names, given.get(role), taken)
        taken |= {choices[role].column} if choices[role].column else set()
    sequences = _values(table, seq.column) if seq.column else None
    label, problem, reason, num, extra = _label_choice(table, given.get("label"), taken, sequences, with_labels,
                                                       ambiguous)
    choices["label"] = label
    taken |= {label.column} if label.column else set()
    choices["id"] = _id_choice(table, taken, given.get("id"))
    ordered = {role: choices[role] for role in ROLES}
    return ColumnInference(table.source, tuple(map(str, table.df.columns)), ordered, problem, reason, num,
                           extra, ambiguous)


def _label_choice(table: Table, given: str | None, taken: set[str], sequences: list[str] | None, with_labels: bool,
                  ambiguous: dict[str, str]):
    columns = [str(c) for c in table.df.columns]
    seq_values = sequences if sequences is not None else None
    if not with_labels:
        return ColumnChoice("label", None, "not needed"), None, "", None, ()
    if given and given in columns:
        kind = _label_kind(_values(table, given), _aligned(table, given, seq_values))
        if kind is None:
            return ColumnChoice("label", given, "chosen", (given,)), None, "", None, ()
        return ColumnChoice("label", given, "chosen", (given,)), kind[0], kind[1], kind[2], kind[3]
    named = sorted((c for c in columns if c not in taken and _named(c, LABEL_NAMES) < len(LABEL_NAMES)),
                   key=lambda c: _named(c, LABEL_NAMES))
    if named:  # a column called label (target, fitness, ...) is the label; validation names any bad value
        kind = _label_kind(_values(table, named[0]), _aligned(table, named[0], seq_values))
        words = _values(table, named[0])
        if kind is None and words and all(w.isalpha() for w in words) and _text_labels(words) and \
                (seq_values is None or max(map(len, words)) < 0.5 * min(map(len, seq_values or ["x"]))):
            # kept as the label (a given problem type lets validation name the rows); no task is inferred
            ambiguous["label"] = (f"the column {named[0]!r} holds words as classes; plmforge reads classes as "
                                  "numbers 0, 1, 2, ...: replace the words by numbers (and keep their meaning in a "
                                  "note)")
        reason = f"named like a label column; {kind[1]}" if kind else "named like a label column"
        choice = ColumnChoice("label", named[0], reason, tuple(named))
        return (choice, *kind[:1], kind[1], kind[2], kind[3]) if kind else (choice, None, "", None, ())
    found, text = [], []
    for c in columns:
        if c in taken or c.lower() in STRUCTURE_COLUMNS:
            continue
        values = _values(table, c)
        if _named(c, ID_NAMES) < len(ID_NAMES) or _row_numbers(values):
            continue  # ids and row numbers are never labels
        kind = _label_kind(values, _aligned(table, c, seq_values))
        if kind is not None:
            found.append((c, kind))
        elif _text_labels(values) and _named(c, ID_NAMES) == len(ID_NAMES):
            text.append(c)
    if not found:
        why = "no column of numbers, classes or per-residue labels"
        if text:
            why = (f"the column {text[0]!r} holds words as classes; plmforge reads classes as numbers 0, 1, 2, ...: "
                   "replace the words by numbers (and keep their meaning in a note)")
        ambiguous["label"] = why
        return ColumnChoice("label", None, why), None, "", None, ()
    choice, why = _pick("label", [(c, k[1]) for c, k in found], LABEL_NAMES)
    if why:
        ambiguous["label"] = why
        return ColumnChoice("label", None, why, tuple(c for c, _ in found)), None, "", None, ()
    kind = dict(found)[choice.column]
    return choice, kind[0], kind[1], kind[2], kind[3]


def _aligned(table: Table, column: str, sequences: list[str] | None) -> list[str] | None:
    """The sequences of the rows that have a value in `column` (for per-residue labels)."""
    if sequences is None:
        return None
    values = _values(table, column)
    return sequences if len(values) == len(sequences) else None


def peek_table(path: str | Path, rows: int = PEEK_ROWS) -> Table:
    """The header and first rows of a dataset file of any supported format (the first chunk of a large file:
    enough rows that a file sorted by its label shows every class)."""
    from plmforge.data.stream import iter_chunks

    chunks = iter_chunks(path, "sequence", rows=rows)
    try:
        table = next(chunks)
    except StopIteration:
        raise DataError("no records (the file has a header but no rows)", file=str(path),
                        hint="add sequences to the file") from None
    finally:
        getattr(chunks, "close", lambda: None)()
    return table


def nonprotein_warning(sequences: Sequence[str]) -> str | None:
    """A warning when sequences are probably not proteins: nucleic-acid letters only, or mostly X."""
    seqs = [re.sub(r"\s+", "", str(s)).upper() for s in sequences if str(s).strip()]
    if not seqs:
        return None
    nucleic = sum(1 for s in seqs if len(s) >= 8 and set(s) <= NUCLEIC)
    if nucleic >= max(1, 0.5 * len(seqs)):
        return (f"probably DNA/RNA, not protein: {nucleic} of {len(seqs)} sequences use only the letters "
                "A, C, G, T, U and N")
    unknown = sum(s.count("X") for s in seqs) / max(sum(map(len, seqs)), 1)
    if unknown > 0.5:
        return f"mostly unknown residues: {unknown:.0%} of the letters are X"
    return None


def named_columns(table: Table, names: Mapping[str, str | None], option: str = "data.{role}_column") -> dict[str, str]:
    """Columns the user named, as the file spells them (matched without regard to case); a name the file
    lacks is an error, never replaced by a guess."""
    columns = [str(c) for c in table.df.columns]
    out = {}
    for role, name in names.items():
        if not name:
            continue
        if name in columns:
            out[role] = name
            continue
        folded = [c for c in columns if c.lower() == str(name).lower()]
        if len(folded) == 1:
            out[role] = folded[0]
            continue
        raise DataError(f"no {role} column {name!r} in this file; the columns are: {', '.join(columns)}",
                        file=table.source, hint=f"name one of them with {option.format(role=role)}")
    return out


def resolve_columns(cfg: DataConfig) -> tuple[DataConfig, list[str]]:
    """The data config with unset columns (and problem type) filled from the training file, and what was
    chosen, in words. Catalogue and hub datasets keep the usual names (aa_seq, label)."""
    if cfg.mutant_column is not None:  # the mutant column stands for the sequence (read against the wild type)
        cfg = dataclasses.replace(cfg, sequence_column=cfg.mutant_column)
    if cfg.sequence_column is not None and cfg.label_column is not None and cfg.problem_type is not None:
        return cfg, []
    path = _training_file(cfg)
    labelled_by_file = cfg.train is not None and any(label is not None for _, label in spec_parts(cfg.train))
    if labelled_by_file and cfg.label_column is None:  # `pos.fasta::1,neg.fasta::0`: the files give the labels
        cfg = dataclasses.replace(cfg, label_column="label")
    if path is None:
        return dataclasses.replace(cfg, sequence_column=cfg.sequence_column or "aa_seq",
                                   label_column=cfg.label_column or "label"), []
    table = peek_table(path)
    named = named_columns(table, {"sequence": cfg.sequence_column,
                                  "label": None if labelled_by_file else cfg.label_column})
    cfg = dataclasses.replace(cfg, **{f"{role}_column": name for role, name in named.items()})
    inf = infer_columns(table, {"sequence": cfg.sequence_column, "label": cfg.label_column, "id": cfg.id_column,
                                "group": cfg.group_column, "mask": cfg.mask_column})
    for role in ("sequence", "label"):
        if getattr(cfg, f"{role}_column") is None and inf.choices[role].column is None:
            raise DataError(inf.ambiguous.get(role, f"no {role} column found"), file=str(path),
                            hint=f"name it with data.{role}_column=COLUMN (the columns are: "
                                 f"{', '.join(inf.columns)})")
    if cfg.problem_type is None and inf.problem_type is None and "label" in inf.ambiguous and \
            inf.choices["label"].column is not None:  # e.g. words as classes: no task can be read from them
        raise DataError(inf.ambiguous["label"], file=str(path),
                        hint="or set data.problem_type if the column is meant otherwise")
    changes: dict[str, object] = {}
    said = []
    for role in ("sequence", "label", "id"):
        key = f"{role}_column"
        choice = inf.choices[role]
        if getattr(cfg, key) is None and choice.column is not None:
            changes[key] = choice.column
            said.append(f"{role} column {choice.column!r}: {choice.reason}")
    if cfg.problem_type is None and inf.problem_type is not None:
        changes["problem_type"] = inf.problem_type
        said.append(f"problem type inferred: {inf.problem_type} ({inf.problem_reason})")
        for extra in inf.extra:
            key, value = extra.removeprefix("data.").split("=", 1)
            if getattr(cfg, key) is None:
                changes[key] = tuple(value.split(","))
    for line in said:
        log.info("column inferred from %s: %s", Path(path).name, line)
    return dataclasses.replace(cfg, **changes), said


def columns_for_table(table: Table, cfg: DataConfig, with_labels: bool) -> DataConfig:
    """`cfg` with unset sequence/label columns found in `table` (for callers that read a table directly)."""
    if cfg.sequence_column is not None and (cfg.label_column is not None or not with_labels):
        return cfg
    inf = infer_columns(table, {"sequence": cfg.sequence_column, "label": cfg.label_column}, with_labels=with_labels)
    for role in ("sequence", "label") if with_labels else ("sequence",):
        if getattr(cfg, f"{role}_column") is None and inf.choices[role].column is None:
            raise DataError(inf.ambiguous.get(role, f"no {role} column found"), file=table.source,
                            hint=f"name it with data.{role}_column=COLUMN (the columns are: {', '.join(inf.columns)})")
    return dataclasses.replace(cfg, sequence_column=cfg.sequence_column or inf.choices["sequence"].column,
                               label_column=cfg.label_column or inf.choices["label"].column)


def _training_file(cfg: DataConfig) -> Path | None:
    """The local file whose header names the columns: the first table file among the splits (None for
    catalogue and hub datasets, and when every split is a FASTA file, which has no column names)."""
    from plmforge.data.catalogue import lookup
    from plmforge.data.readers import file_format, find_split_files

    files: list[Path] = []
    if cfg.train is not None:
        files = [Path(part) for spec in (cfg.train, cfg.validation, cfg.test) if spec
                 for part, _ in spec_parts(spec)]
    elif cfg.dataset is not None and lookup(cfg.dataset) is None:
        path = Path(cfg.dataset).expanduser()
        if path.is_file():
            files = [path]
        elif path.is_dir():
            try:
                found = find_split_files(path)
            except DataError:  # e.g. a FLIP layout: read with the usual names
                return None
            files = [found[k] for k in ("train", "validation", "test") if k in found]
    for path in files:
        try:
            if file_format(path) != "fasta":
                return path
        except DataError:
            return path  # an unsupported type: reading it names the problem
    return None
