"""Writes the generated reference pages of the documentation site from the code itself, so that they cannot
drift: docs/reference/cli.md (every command's --help, from the parser) and docs/reference/config.md (every
config key with its type, default, choices and the comment beside it in plmforge/config.py, and each
method's options). tests/test_docs.py regenerates them and fails when the committed pages differ.

    .venv/bin/python docs/gen_reference.py          # rewrite the pages
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
import typing
from pathlib import Path

DOCS = Path(__file__).resolve().parent
COLUMNS = "100"  # argparse wraps help to the terminal width: fixed, so the page is the same everywhere


def cli_page() -> str:
    os.environ["COLUMNS"] = COLUMNS
    from plmforge.cli import build_parser
    from plmforge.cli_tools import commands

    parser = build_parser()
    parser.prog = "plmforge"
    out = ["# Command line", "",
           "Generated from plmforge's own argument parser (`docs/gen_reference.py`); every command ends with an "
           "example. `plmforge COMMAND --help` prints the same text.", "",
           "```text", _help(parser), "```", ""]
    for path, sub in commands(parser):
        out += [f"## plmforge {' '.join(path)}", "", "```text", _help(sub), "```", ""]
    return "\n".join(out)


def _help(parser: argparse.ArgumentParser) -> str:
    text = parser.format_help().rstrip()
    return re.sub(r"[ \t]+\n", "\n", text)


def config_page() -> str:
    from plmforge import config
    from plmforge.methods import METHODS

    out = ["# Configuration keys", "",
           "Generated from the config classes in `plmforge/config.py` and the methods' option classes "
           "(`docs/gen_reference.py`): every key of a run's `config.yaml`, its type, its default and, where the "
           "choice is closed, its choices. Set a key in a YAML file or on the command line as "
           "`section.key=value`; the resolved config is saved in every run directory.", ""]
    for section, cls in config._SECTION_TYPES.items():
        if section == "method":
            continue
        out += _section(section, cls)
    out += ["## method", "", "`method.name` picks the fine-tuning method; its options are written flat beside it "
            "(`method.rank=16`). Default method: `freeze`.", ""]
    for name, spec in METHODS.items():
        out += _section(f"method (name: {name})", spec.options, prefix="method", level="###")
    return "\n".join(out)


def _section(title: str, cls: type, prefix: str | None = None, level: str = "##") -> list[str]:
    prefix = prefix or title
    doc = inspect.getdoc(cls) or ""
    comments = _comments(cls)
    hints = typing.get_type_hints(cls)
    choices = getattr(cls, "CHOICES", {})
    rows = [f"{level} {title}", ""]
    if doc and not doc.startswith(cls.__name__ + "("):
        rows += [" ".join(doc.split()), ""]
    rows += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        meaning = comments.get(f.name, "")
        if f.name in choices:
            meaning = (meaning + "; " if meaning else "") + "one of " + ", ".join(f"`{c}`" for c in choices[f.name])
        rows.append(f"| `{prefix}.{f.name}` | {_type(hints.get(f.name))} | {_value(default)} | "
                    f"{meaning.replace('|', '/')} |")
    return rows + [""]


def _type(hint: object) -> str:
    text = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = re.sub(r"\bNoneType\b", "None", text)
    return f"`{text}`".replace("|", "or")


def _value(value: object) -> str:
    if isinstance(value, str) and value == "(required)":
        return value
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`" if value else '`""`'


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in the source of the class or of the class that declares it (a base): the one on
    its line, after any comment lines just above it."""
    out: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        out.update(_own_comments(klass))
    return out


def _own_comments(cls: type) -> dict[str, str]:
    lines = inspect.getsource(cls).splitlines()
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"\s+(\w+)\s*:\s*[^=]+?(?:=.*?)?(?:#\s*(.*))?$", line)
        if m and not stripped.startswith(("def ", "return", "if ", "raise")) and ":" in stripped.split("=")[0]:
            text = " ".join(above + ([m.group(2).strip()] if m.group(2) else []))
            if text:
                out[m.group(1)] = text
        above = []
    return out


PAGES = {"reference/cli.md": cli_page, "reference/config.md": config_page}


def main() -> None:
    for name, make in PAGES.items():
        path = DOCS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make() + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
