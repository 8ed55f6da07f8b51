"""YAML configs validated against dataclasses, with one-line errors a user can act on.

A config section is a (possibly nested) dataclass. `load_config` accepts a YAML path or a
dict, rejects unknown keys, checks types (int/float/str/bool, Optional, lists, Literal,
nested dataclasses) and, for fields whose metadata says `{"path": True}`, that the file exists.
Shipped configs mark every path a user must fill in as a placeholder starting `/path/to/`; one
left in is refused with one line naming its key.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")
PLACEHOLDER = "/path/to/"  # how shipped configs mark the paths a user must fill in


def path_field(default: Any = None, **kw: Any) -> Any:
    """A dataclass field holding a file or folder that must exist when it is set."""
    return dataclasses.field(default=default, metadata={"path": True}, **kw)


def _refuse_placeholders(value: Any, where: str) -> None:
    if isinstance(value, str) and value.startswith(PLACEHOLDER):
        raise UserError(f"{where}: {value} is a placeholder: set it to your local file or folder")
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_placeholders(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _refuse_placeholders(v, f"{where}[{i}]")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"config {path} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping at the top level")
    return data


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {type(value).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_check(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type[T], data: Any, where: str) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise UserError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise UserError(f"{where + ': ' if where else ''}unknown key {unknown[0]!r} (known: {known})")
    for name in data:
        _refuse_placeholders(data[name], f"{where}.{name}" if where else name)
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"{key}: missing required value")
            continue
        value = _check(data[name], hints[name], key)
        if f.metadata.get("path") and value is not None and not Path(value).exists():
            raise UserError(f"{key}: file not found: {value}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except UserError as e:  # a section's own checks (`__post_init__`) name the section
        raise UserError(f"{where}: {e}" if where else str(e)) from None


def load_config(cls: type[T], source: str | os.PathLike | dict | None = None, **overrides: Any) -> T:
    """Build the dataclass `cls` from a YAML file or a dict (plus keyword overrides), validated."""
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, dict):
        data = dict(source)
    else:
        data = read_yaml(source)
    data.update(overrides)
    return _build(cls, data, "")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    from .atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
