"""How settings are declared, checked, set and shown. A setting is a field of a config dataclass,
declared with `option`: its default, its help, and what it accepts (choices, bounds). A config class
decorated with `settings` checks itself whenever it is built, so the Python API refuses exactly
what the CLI refuses; `--set a.b=VALUE` sets any field, nested ones included, cast to the field's
type: "0,1,2" for a list, "true"/"false" for a flag, "none" for an empty option.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

from .errors import SafetuneError

# an undeclared number above this is a typo (an extra zero), not a setting
TYPO_LIMIT = 1e6
SETTINGS: list[type] = []  # every config class, in the order they were declared (tests walk them all)


def option(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING,
           choices: tuple | None = None, min: float | None = None, max: float | None = None,
           above: float | None = None, below: float | None = None, **kwargs):
    """A dataclass field with its help text (shown by --help and `--show-config`) and what it accepts:
    `choices`, or bounds (`min`/`max` inclusive, `above`/`below` exclusive; for a list, of each item).
    Undeclared numbers must be finite, at most 1e6, and (integers) not negative."""
    metadata = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "below": below}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class InvalidSetting(SafetuneError):
    """A setting outside what its field accepts: `name value: problem`."""

    def __init__(self, name: str, value: Any, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"{name} {_shown(value)}: {problem}")


def settings(cls):
    """`@dataclass` for a config: building it (the API, `replace`, a stored spec read back) or setting
    one of its fields through `set_field` checks every field against its declaration."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self):
        if own is not None:
            own(self)
        check(self)

    cls.__post_init__ = __post_init__
    SETTINGS.append(dataclasses.dataclass(cls))
    return cls


def check(config, prefix: str = "") -> None:
    """Raise InvalidSetting for the first field of `config` (nested configs too) that its declaration
    refuses; named `Class.field` (nested: `Class.group.field`)."""
    where = prefix or type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check(value, f"{where}.{f.name}")
            continue
        why = refused(value, f.metadata)
        if why:
            raise InvalidSetting(f"{where}.{f.name}", value, why)


def refused(value: Any, declared: typing.Mapping) -> str | None:
    """Why `value` (a list: any of its items) is outside a field declared with `declared`, or None."""
    return next(filter(None, (problem(item, declared) for item in (value if isinstance(value, list) else [value]))),
                None)


def problem(value: Any, declared: typing.Mapping) -> str | None:
    """What is wrong with `value` for a field declared with `declared` (its option's metadata), or None."""
    choices = declared.get("choices")
    if choices and value not in choices:
        return "choose one of " + ", ".join("none" if c is None else str(c) for c in choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, high, above, below = (declared.get(k) for k in ("min", "max", "above", "below"))
    if not math.isfinite(value):
        return "must be a finite number"
    if above is not None and value <= above:
        return "must be positive" if above == 0 else f"must be above {above:g}"
    if low is None and above is None and isinstance(value, int):
        low = 0
    if low is not None and value < low:
        return {0: "must not be negative", 1: "must be at least 1"}.get(low, f"must be at least {low:g}")
    if below is not None and value >= below:
        return f"must be below {below:g}"
    high = TYPO_LIMIT if high is None else high
    if value > high:
        return f"more than {high:g}; is there an extra zero?" if value >= 10 * high else f"must be at most {high:g}"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


# ---------------------------------------------------------------- reading and setting them

def help_of(cls, name: str) -> str:
    """The help text of a field of a config dataclass."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _cast(text: str, kind: Any, written: str, given: str) -> Any:
    """`text` as a value of type `kind`; `written`: the setting's name as the user wrote it, `given`:
    the whole assignment, for errors."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", "") and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        return _cast(text, kind, written, given)
    if origin is list:
        return [_cast(part.strip(), args[0], written, given) for part in text.split(",") if part.strip()]
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
        raise SafetuneError(f"{given}: not a valid {getattr(kind, '__name__', kind)}") from None
    raise SafetuneError(f"{written}: a nested setting; set one of its fields, e.g. {written}.lr=1e-4")


def set_field(config, path: str, text: str, given: str | None = None, prefix: str = "--set "):
    """Set `config.a.b` from the text "VALUE" of `--set a.b=VALUE`, cast to the field's type and
    checked; `given`: how the user wrote it, for errors (default `--set a.b=VALUE`); `prefix`: what
    stands before a setting's name where the user wrote it."""
    given = given or f"{prefix}{path}={text}"
    target, parts = config, path.split(".")
    for depth, name in enumerate(parts):
        names = [f.name for f in dataclasses.fields(target)]
        if name not in names:
            where = ".".join(parts[:depth + 1])
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {'.'.join(parts[:depth] + close)}?" if close else ""
            raise SafetuneError(f"{prefix}{where}: no such setting{hint} (settings here: {', '.join(names)})")
        if depth == len(parts) - 1:
            value = _cast(text, _hints(type(target))[name], f"{prefix}{path}", given)
            why = refused(value, next(f for f in dataclasses.fields(target) if f.name == name).metadata)
            if why:
                raise SafetuneError(f"{given}: {why}")
            setattr(target, name, value)
            if hasattr(target, "__post_init__"):
                target.__post_init__()
        else:
            target = getattr(target, name)
            if not dataclasses.is_dataclass(target):
                raise SafetuneError(f"{prefix}{'.'.join(parts[:depth + 1])} is a value, not a group of settings")
    return config


def apply_overrides(config, assignments: list[str] | None, given: str = "--set "):
    """Apply `--set a.b=VALUE` assignments in order; returns the config. `given`: how errors show
    an assignment (the Python API: "" for `name=value`)."""
    for item in assignments or []:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise SafetuneError(f"--set {item!r}: write --set NAME=VALUE, e.g. --set seeds=0,1,2")
        set_field(config, path.strip(), text.strip(), prefix=given)
    return config


def from_dict(cls, data: dict):
    """A config dataclass (nested ones too) from its asdict() form, e.g. a run's stored spec."""
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kind, value = hints[f.name], data[f.name]
        values[f.name] = from_dict(kind, value) if dataclasses.is_dataclass(kind) and isinstance(value, dict) else value
    return cls(**values)


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
