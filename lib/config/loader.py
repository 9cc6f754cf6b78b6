"""Load a Config: schema defaults <- YAML file <- `section.key=value` overrides.

Unknown keys, values of the wrong type and numbers outside their range
(`schema.RANGES`) are rejected with one line naming the key and where it was set, so
a typo can never be silently ignored. YAML anchors and aliases are refused before
they expand (a few hundred bytes of nested aliases can expand to gigabytes), as are
empty files, files that are not UTF-8 and files that cannot be read.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from typing import Any

import yaml

from lib.config.schema import RANGES, Config
from lib.errors import UserError, read_user_file

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


def _merge(obj: Any, updates: dict, where: str, prefix: str = "", sources: dict | None = None) -> Any:
    """Return a copy of dataclass `obj` with `updates` (nested dict) applied; `sources`
    (if given) records `where` for every dotted key set."""
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
            changes[key] = _merge(current, value, where, full + ".", sources)
        else:
            changes[key] = _check_value(full, value, hints[key], where)
            if sources is not None:
                sources[full] = where
    return dataclasses.replace(obj, **changes)


def parse_override(text: str) -> dict:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}} (value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    nested: Any = _parse_numbers(_parse_yaml(raw, f"override '{text}'") if raw.strip() else "")
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def load_config(path: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Schema defaults, then the YAML file at `path` (if any), then `overrides`."""
    cfg, sources = Config(), {}
    if path:
        data = read_yaml(path)
        if data is None:
            raise UserError(
                f"{path}: config file is empty (without --config the schema defaults are the paper-size run); "
                "give at least one key"
            )
        cfg = _merge(cfg, _parse_numbers(data), path, sources=sources)
    for text in overrides:
        cfg = _merge(cfg, parse_override(text), "command line", sources=sources)
    check_ranges(cfg, sources)
    return cfg


def check_ranges(cfg: Config, sources: dict | None = None, default_where: str = "schema default") -> None:
    """UserError naming the first number outside its `schema.RANGES` range and where
    it was set (`sources`: dotted key -> file or 'command line')."""
    for key, allowed in RANGES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            bad = "an empty list"
        else:
            bad = next((v for v in values if not allowed.admits(v)), None)
            if bad is None:
                continue
        where = (sources or {}).get(key, default_where)
        entries = " (every entry)" if isinstance(value, list) else ""
        raise UserError(f"{where}: {key} must be {allowed.describe()}{entries}, got {bad!r}")


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases while parsing, before anything
    is expanded: configs never need them, and nested aliases are a memory bomb."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise UserError(
                f"{self.name}: line {mark.line + 1}: YAML anchors and aliases (&name, *name) are not supported; "
                "write the values out"
            )
        return super().compose_node(parent, index)


def _parse_yaml(text: str, where: str) -> Any:
    loader = _NoAliasLoader(text)
    loader.name = where
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise UserError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    finally:
        loader.dispose()


def read_yaml(path: str) -> Any:
    """The data of a UTF-8 YAML file (None when it holds nothing); UserError naming
    the file when it is missing, unreadable, not UTF-8, not YAML or uses aliases."""
    raw = read_user_file(path, "config file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    return _parse_yaml(text, path)


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
    cfg = _merge(Config(), _parse_numbers(data), where)
    check_ranges(cfg, default_where=where)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str, header: str = "") -> None:
    """Write the resolved config as YAML (loadable again with load_config), atomically:
    a temporary file next to it, then a rename, so a full disk or a kill never leaves
    a truncated config.yaml behind. `header`: a comment line written first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            if header:
                f.write(header.rstrip("\n") + "\n")
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False, allow_unicode=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
