"""The training form, read from the config dataclasses: every field of every section (and every method's
own options) becomes a `Field` with its kind, default, allowed values and help text, so a new option,
method, head or problem type appears in the UI without UI code. Form values go back to `section.key=value`
overrides, the same ones the CLI takes; `TrainingRequest` turns them into the validated config, the
preview command and the argument list that starts training. Nothing here imports gradio."""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
import sys
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from plmforge import config as cfgmod
from plmforge.config import RunConfig, config_to_override_text, config_to_overrides, load_config
from plmforge.data.readers import TABLE_SUFFIXES, is_table_file
from plmforge.methods import METHODS

# sections shown in the training form, in order, with the fields the form sets in other ways
SECTIONS = {
    "data": ("dataset", "train", "validation", "test"),  # the dataset picker
    "model": ("name",),  # the model picker
    "head": (),
    "batching": (),
    "training": (),
    "output": ("dir", "overwrite"),  # the run name under the runs directory
}
SECTION_TITLES = {"data": "Data options", "model": "Model options", "head": "Head", "batching": "Batching",
                  "training": "Training", "output": "Outputs"}
# fields the three steps of the Train tab show in place (step 1: columns, task and splits; step 3: the usual
# training knobs); every other field of every section goes under Advanced
COLUMN_KEYS = {"sequence": "data.sequence_column", "label": "data.label_column", "id": "data.id_column",
               "group": "data.group_column", "mask": "data.mask_column"}
DATA_ESSENTIALS = (*COLUMN_KEYS.values(), "data.problem_type", "data.num_labels", "data.validation_fraction",
                   "data.test_fraction")
TRAIN_ESSENTIALS = ("training.epochs", "training.learning_rate", "batching.batch_size")


@dataclass(frozen=True)
class Field:
    key: str  # section.name, e.g. training.learning_rate (method options: method.rank)
    label: str
    kind: str  # bool | int | float | text | choice | multi | list
    default: Any
    optional: bool  # None is allowed (left empty: the default / automatic value)
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]


def _base_types(hint: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return hint, False


@cache
def _comments(cls: type) -> dict[str, str]:
    """`name: type = default  # help` comments of a dataclass (the one place options are explained)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+):[^\n#]*#\s*(.+)$", source, re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


def dataclass_fields(cls: type, section: str, skip: tuple[str, ...] = ()) -> list[Field]:
    hints = typing.get_type_hints(cls)
    choices = getattr(cls, "CHOICES", {})
    helps = _comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        base, optional = _base_types(hints[f.name])
        allowed = tuple(choices[f.name]) if f.name in choices else ()
        if base is bool:
            kind = "bool"
        elif base is int:
            kind = "int"
        elif base is float:
            kind = "float"
        elif typing.get_origin(base) is tuple:
            kind = "multi" if allowed else "list"
        elif base is str:
            kind = "choice" if allowed else "text"
        else:
            continue  # not a form value (e.g. the method's option object)
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(Field(f"{section}.{f.name}", f.name.replace("_", " "), kind, default, optional, allowed,
                         helps.get(f.name, "")))
    return out


def section_fields() -> dict[str, list[Field]]:
    """The form's sections (besides model, dataset and method pickers) and their fields."""
    hints = typing.get_type_hints(RunConfig)
    return {name: dataclass_fields(hints[name], name, skip) for name, skip in SECTIONS.items()}


def field_of(key: str) -> Field:
    """The form field of a config key, e.g. training.epochs."""
    section = key.split(".", 1)[0]
    found = [f for f in section_fields().get(section, []) if f.key == key]
    if not found:
        raise KeyError(key)
    return found[0]


def advanced_fields() -> dict[str, list[Field]]:
    """Every section's fields that the steps do not show in place (the Advanced part of the form)."""
    shown = set(DATA_ESSENTIALS) | set(TRAIN_ESSENTIALS)
    out = {name: [f for f in fields_ if f.key not in shown] for name, fields_ in section_fields().items()}
    return {name: fields_ for name, fields_ in out.items() if fields_}


def method_fields() -> dict[str, list[Field]]:
    """Each registered method's own options (only the chosen method's are shown and sent)."""
    return {name: dataclass_fields(spec.options, "method") for name, spec in METHODS.items()}


# ---- values -> overrides ------------------------------------------------------------------------------
def format_value(field: Field, value: Any) -> str | None:
    """The override text for a form value; None when the field is left at its default. An emptied
    optional field whose default is a value (e.g. patience 5) means "none": null."""
    empty = value is None or (isinstance(value, str) and not value.strip()) or (
        field.kind in ("multi", "list") and isinstance(value, list | tuple) and not value)
    if empty:
        return "null" if field.optional and field.default is not None else None
    if field.kind == "bool":
        value = value.strip().lower() in ("true", "on", "yes", "1") if isinstance(value, str) else bool(value)
        return None if value == field.default else str(value).lower()
    if field.kind == "int":
        number = float(value)
        if not number.is_integer():
            raise cfgmod.ConfigError(f"{field.key} must be a whole number, got {value!r}")
        value = int(number)
    elif field.kind == "float":
        value = float(value)
    elif field.kind in ("multi", "list"):
        items = value if isinstance(value, list | tuple) else [v.strip() for v in str(value).split(",")]
        items = tuple(v for v in items if v)
        if not items:
            return None
        default = tuple(field.default) if field.default is not None else None
        return None if items == default else ",".join(items)
    elif isinstance(value, str):
        value = value.strip()
    if value == field.default:
        return None
    # overrides are read as YAML, where 'null', 'yes', '007' or 'a #b' would become something else
    return config_to_override_text(value) if isinstance(value, str) else str(value)


def overrides_from_values(values: dict[str, Any], method: str) -> list[str]:
    """`section.key=value` for every form value that differs from its default. `values` is keyed by
    Field.key, and method options by `method:<name>.<option>` (each method has its own inputs)."""
    out = [f"method.name={method}"]
    for fields_ in section_fields().values():
        for f in fields_:
            text = format_value(f, values.get(f.key))
            if text is not None:
                out.append(f"{f.key}={text}")
    for f in method_fields().get(method, []):
        text = format_value(f, values.get(method_key(method, f)))
        if text is not None:
            out.append(f"{f.key}={text}")
    return out


def method_key(method: str, field: Field) -> str:
    return f"method:{method}.{field.name}"


@dataclass(frozen=True)
class TrainingRequest:
    """A validated training config from the form, and the ways to run it."""

    config: RunConfig
    overrides: tuple[str, ...]  # canonical: exactly what rebuilds `config` from defaults

    @classmethod
    def build(cls, overrides: list[str]) -> TrainingRequest:
        config = load_config(None, overrides)  # ConfigError names the key and the allowed values
        return cls(config, tuple(config_to_overrides(config)))

    @property
    def command(self) -> str:
        """What to type in a shell: runs as shown and gives the same config."""
        return shlex.join(["plmforge", "train", *self.overrides])

    def argv(self, python: str | None = None) -> list[str]:
        """The argument list the UI starts training with (no shell involved)."""
        return [python or sys.executable, "-m", "plmforge.cli", "train", *self.overrides]

    @property
    def run_dir(self) -> Path:
        return Path(self.config.output.dir)


# ---- model and dataset pickers ------------------------------------------------------------------------
def model_choices() -> list[tuple[str, str]]:
    """(label, zoo name) for every entry that trains here, with its size and note."""
    from plmforge.models.zoo import ZOO

    out = []
    for name, e in ZOO.items():
        if e.trainable_here:
            note = f" - {e.note}" if e.note else ""
            out.append((f"{name} ({e.params}, {e.family}){note}", name))
    return out


def catalogue_choices() -> list[tuple[str, str]]:
    """(label, name): bundled examples first, then the hub benchmarks."""
    from plmforge.data.catalogue import catalogue

    entries = sorted(catalogue().values(), key=lambda e: (not e.bundled, e.name))
    return [(f"{e.name} ({e.problem_type}{', bundled' if e.bundled else ''})", e.name) for e in entries]


DATASET_SOURCES = ("catalogue", "upload", "local path", "hub id")
DATA_SUFFIXES = TABLE_SUFFIXES  # the readers' formats, also compressed


def dataset_override(source: str, catalogue_name: str | None, uploads: list[str] | None, path: str | None,
                     hub_id: str | None, upload_dir: Path) -> str:
    """The data.dataset value for the picker's state. Uploaded files are copied under `upload_dir` (one
    file: used as the training file; several: a split directory, named train/validation/test.<ext>)."""
    import hashlib
    import shutil

    if source == "catalogue":
        if not catalogue_name:
            raise cfgmod.ConfigError("pick a dataset from the catalogue")
        return catalogue_name
    if source == "upload":
        files = [Path(u) for u in uploads or []]
        if not files:
            raise cfgmod.ConfigError("upload a dataset file (CSV, TSV, JSONL, Parquet or FASTA) first")
        bad = [f.name for f in files if not is_table_file(f)]
        if bad:
            raise cfgmod.ConfigError(f"{bad[0]} is not a dataset file: upload {', '.join(DATA_SUFFIXES)} files")
        if len(files) > 1:  # a split directory: every file must say which split it is
            from plmforge.data.readers import SPLIT_NAMES

            names = {n for group in SPLIT_NAMES.values() for n in group}
            stray = [f.name for f in files if f.name.lower().split(".")[0] not in names]
            if stray:
                raise cfgmod.ConfigError(
                    f"{stray[0]} is not named after a split: with several files, name them train.<ext>, "
                    "validation.<ext> and test.<ext> (or upload one file and validation is carved from it); "
                    "remove the files you do not want with the x next to them")
        digest = hashlib.sha256()
        for f in sorted(files, key=lambda f: f.name):
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
        target = upload_dir / digest.hexdigest()[:16]
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, target / f.name)
        return str((target / files[0].name) if len(files) == 1 else target)
    if source == "local path":
        text = (path or "").strip()
        if not text:
            raise cfgmod.ConfigError("type the path of a dataset file or split directory")
        resolved = Path(text).expanduser().resolve()
        if not resolved.exists():
            raise cfgmod.ConfigError(f"{resolved} does not exist: check the path (it is read on the machine "
                                     "running plmforge ui)")
        return str(resolved)
    if source == "hub id":
        text = (hub_id or "").strip()
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", text):
            raise cfgmod.ConfigError(f"{text!r} is not a HuggingFace dataset id (owner/name)")
        return text
    raise cfgmod.ConfigError(f"unknown dataset source {source!r}; one of {', '.join(DATASET_SOURCES)}")


# ---- what the dataset's file says ---------------------------------------------------------------------
@dataclass(frozen=True)
class FileLook:
    """The columns of a dataset's (training) file as plmforge.data.columns infers them, and a warning when
    its sequences are probably not proteins."""

    inference: Any  # plmforge.data.columns.ColumnInference
    warning: str | None


def first_file(location: str) -> Path | None:
    """The file whose header names the columns: the file itself, or a split directory's training file;
    None for what is not local (a hub id)."""
    from plmforge.data.catalogue import lookup
    from plmforge.data.readers import find_split_files

    entry = lookup(location)
    path = Path(entry.location if entry else location).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        files = find_split_files(path)
        return files.get("train") or next(iter(files.values()), None)
    return None


def look_at_file(path: Path, given: dict[str, str | None] | None = None, with_labels: bool = True) -> FileLook:
    """Read the header and first rows of `path` and infer its columns (`given`: columns already chosen,
    e.g. a run's, kept when the file has them)."""
    from plmforge.data.columns import infer_columns, nonprotein_warning, peek_table

    table = peek_table(path)
    inference = infer_columns(table, given, with_labels=with_labels)
    column = inference.choices["sequence"].column
    warning = None
    if column is not None and column in table.df.columns:
        warning = nonprotein_warning([str(v) for v in table.df[column].tolist()])
    return FileLook(inference, warning)
