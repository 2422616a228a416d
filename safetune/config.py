"""Settings live in dataclasses (each field with its default and help); the CLI and the Python API
read them from there. `--set a.b=VALUE` sets any field of a command's config, nested ones included,
cast to the field's type: "0,1,2" for a list, "true"/"false" for a flag, "none" for an empty option.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

from .errors import SafetuneError


def option(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING, **kwargs):
    """A dataclass field with its help text (shown by --help and `safetune <command> --show-config`)."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def help_of(cls, name: str) -> str:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _cast(text: str, kind: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", "") and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        return _cast(text, kind, where)
    if origin is list:
        return [_cast(part.strip(), args[0], where) for part in text.split(",") if part.strip()]
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if kind is str:
            return text
    except ValueError:
        raise SafetuneError(f"--set {where}={text}: not a valid {getattr(kind, '__name__', kind)}") from None
    raise SafetuneError(f"--set {where}: a nested setting; set one of its fields, e.g. {where}.lr=1e-4")


def set_field(config, path: str, text: str):
    """Set `config.a.b` from the text "VALUE" of `--set a.b=VALUE`, cast to the field's type."""
    target, parts = config, path.split(".")
    for depth, name in enumerate(parts):
        names = [f.name for f in dataclasses.fields(target)]
        if name not in names:
            where = ".".join(parts[:depth + 1])
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {'.'.join(parts[:depth] + close)}?" if close else ""
            raise SafetuneError(f"--set {where}: no such setting{hint} (settings here: {', '.join(names)})")
        if depth == len(parts) - 1:
            value = _cast(text, _hints(type(target))[name], path)
            setattr(target, name, value)
            if hasattr(target, "__post_init__"):
                target.__post_init__()
        else:
            target = getattr(target, name)
            if not dataclasses.is_dataclass(target):
                raise SafetuneError(f"--set {'.'.join(parts[:depth + 1])} is a value, not a group of settings")
    return config


def apply_overrides(config, assignments: list[str] | None):
    """Apply `--set a.b=VALUE` assignments in order; returns the config."""
    for item in assignments or []:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise SafetuneError(f"--set {item!r}: write --set NAME=VALUE, e.g. --set seeds=0,1,2")
        set_field(config, path.strip(), text.strip())
    return config


def describe(config, prefix: str = "") -> list[str]:
    """Every setting of `config` as "name = value  help", nested groups flattened with dots."""
    lines = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            lines += describe(value, f"{prefix}{f.name}.")
            continue
        help_text = f.metadata.get("help", "")
        lines.append(f"{prefix}{f.name} = {value!r}" + (f"    # {help_text}" if help_text else ""))
    return lines
