"""Config text: YAML config files (a key given twice is refused), `section.key=value` overrides, values
brought to a config field's type with a clear error, paths in a file relative to that file, and strings
written so that they read back unchanged. Knows nothing of the config sections (plmforge/config.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from plmforge.errors import ConfigError


def coerce_value(section: str, key: str, value: Any, ftype: Any) -> Any:
    """Bring YAML/CLI values to the field's type, with a clear error on a mismatch."""
    text = str(ftype)
    where = f"{section}.{key}"
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{where} must not be empty (in YAML and in overrides, ~ or null alone mean 'nothing': "
                          f"for your home directory write a path under it, e.g. {where}=~/runs/x)")
    if text.startswith("tuple"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(str(v) for v in value)
    if text.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if text.startswith("int"):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    if text.startswith("float"):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if text.startswith("str"):
        if isinstance(value, list) and section == "data" and key in ("train", "validation", "test"):
            value = ",".join(str(v) for v in value)  # several files joined into one split (file::label)
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where} must be text, got {value!r}")
        return str(value)
    return value


def resolve_path(value: str, base_dir: Path) -> str:
    """Relative paths in a config file are relative to that file, when something exists there."""
    if "::" in value:  # file::label,file::label
        parts = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            path, sep, label = part.rpartition("::") if "::" in part else (part, "", "")
            parts.append(resolve_path(path, base_dir) + sep + label)
        return ",".join(parts)

    candidate = base_dir / value
    if not Path(value).is_absolute() and candidate.exists():
        return str(candidate.resolve())
    return value


def parse_override(text: str) -> tuple[str, str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. training.epochs=5")
    key, _, value = text.partition("=")
    if "." not in key:
        raise ConfigError(f"override {text!r} must name a section and a key, e.g. training.epochs=5")
    section, _, name = key.strip().partition(".")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return section, name, parsed


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                "keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file's mapping of sections (the file must exist and hold a mapping of mappings; no key
    may be given twice)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.load(p.read_text(), Loader=_UniqueKeyLoader) or {}  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(p)!r} is not a text file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections (section: {{key: value}})")
    for section, values in raw.items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"config file {str(p)!r}: section {section!r} must be a mapping of keys to values, "
                              f"got {values!r}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """`section.key=value` overrides on top of a raw config mapping (changed in place and returned)."""
    for text in overrides or []:
        section, key, value = parse_override(text)
        if raw.get(section) is None:
            raw[section] = {}
        raw[section][key] = value
    return raw


def config_to_override_text(text: str) -> str:
    """A string as it must be written after `key=` to be read back unchanged (quoted when YAML would
    turn it into something else: 'null', 'yes', '007', 'a: b', 'run #3', ...)."""
    import json

    try:
        same = yaml.safe_load(text) == text
    except yaml.YAMLError:
        same = False
    return text if same else json.dumps(text)
