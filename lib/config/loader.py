"""Load a Config: schema defaults <- YAML file <- `section.key=value` overrides.

Unknown keys and values of the wrong type are rejected with one line naming the key,
so a typo can never be silently ignored.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from typing import Any

import yaml

from lib.config.schema import Config
from lib.errors import UserError

_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _check_value(key: str, value: Any, expected: type, where: str) -> Any:
    """Return `value` converted to `expected` where that is lossless, else raise."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list and isinstance(value, tuple):
        return list(value)
    if expected is bool and not isinstance(value, bool):
        raise UserError(f"{where}: '{key}' must be true or false, got {value!r}")
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(
            f"{where}: '{key}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _merge(obj: Any, updates: dict, where: str, prefix: str = "") -> Any:
    """Return a copy of dataclass `obj` with `updates` (nested dict) applied."""
    if not isinstance(updates, dict):
        raise UserError(f"{where}: '{prefix.rstrip('.') or 'config'}' must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in updates.items():
        full = prefix + str(key)
        if key not in names:
            raise UserError(
                f"{where}: unknown key '{full}' (valid here: {', '.join(sorted(names))})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, where, full + ".")
        else:
            changes[key] = _check_value(full, value, hints[key], where)
    return dataclasses.replace(obj, **changes)


def parse_override(text: str) -> dict:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}} (value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    nested: Any = _parse_numbers(yaml.safe_load(raw) if raw.strip() else "")
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def load_config(path: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Schema defaults, then the YAML file at `path` (if any), then `overrides`."""
    cfg = Config()
    if path:
        if not os.path.isfile(path):
            raise UserError(f"{path}: config file not found")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        cfg = _merge(cfg, _parse_numbers(data), path)
    for text in overrides:
        cfg = _merge(cfg, parse_override(text), "command line")
    return cfg


def _parse_numbers(data: Any) -> Any:
    """YAML 1.1 reads '1e-4' (no dot) as a string; turn such strings into floats."""
    if isinstance(data, dict):
        return {k: _parse_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_parse_numbers(v) for v in data]
    if isinstance(data, str) and _SCIENTIFIC.match(data):
        return float(data)
    return data


def config_from_dict(data: dict, where: str) -> Config:
    """A Config from a nested dict (e.g. one stored in a checkpoint), checked like a
    YAML file; `where` names the source in error messages."""
    return _merge(Config(), _parse_numbers(data), where)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str) -> None:
    """Write the resolved config as YAML (loadable again with load_config)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
