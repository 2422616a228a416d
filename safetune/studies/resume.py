"""One rule for resuming a study: an output directory resumes only the same study (same model, same
settings) or refuses, naming what differs; it never starts over on top of results it holds.

A study may declare `growable` settings: lists of what it runs (more models, more seeds, another
lr) or how it judges what it ran (a margin). Changing them keeps every earlier run, because no
earlier run's own settings changed; the study then runs only what is new.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SafetuneError


def _differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (nested configs looked into)."""
    names = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            names += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            names.append(f"{prefix}{key} ({json.dumps(old)[:40]} -> {json.dumps(new)[:40]})")
    return names


def with_defaults(values: dict, defaults: dict) -> dict:
    """`values` (a config as a dict, nested ones too) with every setting it lacks at its default: a
    setting added to the code after a run was made counts, for that run, as its default."""
    values, defaults = json.loads(json.dumps(values)), json.loads(json.dumps(defaults))  # tuples as lists
    out = dict(values)
    for key, default in defaults.items():
        if key not in values:
            out[key] = default
        elif isinstance(values[key], dict) and isinstance(default, dict):
            out[key] = with_defaults(values[key], default)
    return out


def resume_or_refuse(path: Path, study: str, model: str, config: dict, growable: tuple[str, ...] = (),
                     defaults: dict | None = None) -> dict:
    """What an earlier run of `study` left in `path` (its JSON: "model" and "config" beside the
    results), or {} when there is none. Refuses when it was made with other settings, outside the
    `growable` config fields, naming each setting that differs; with the study's `defaults`, a
    setting the earlier run predates counts as its default."""
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SafetuneError(f"{path}: cannot be read to resume the {study} study ({exc}); "
                            "choose a new --out, or move this directory away") from None
    before, now = previous.get("config", {}), json.loads(json.dumps(config))  # the file's form: tuples as lists
    if defaults is not None:
        before, now = with_defaults(before, defaults), with_defaults(now, defaults)
    differ = _differences({"model": previous.get("model"), **{k: v for k, v in before.items() if k not in growable}},
                          {"model": model, **{k: v for k, v in now.items() if k not in growable}})
    if differ:
        raise SafetuneError(f"{path.parent}: holds a {study} study run with other settings ({'; '.join(differ[:4])}"
                            f"{'; ...' if len(differ) > 4 else ''}); resume it with the same settings (its "
                            f"{path.name} has them) or choose a new --out")
    return previous
