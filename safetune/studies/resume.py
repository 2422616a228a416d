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


def resume_or_refuse(path: Path, study: str, model: str, config: dict, growable: tuple[str, ...] = ()) -> dict:
    """What an earlier run of `study` left in `path` (its JSON: "model" and "config" beside the
    results), or {} when there is none. Refuses when it was made with other settings, outside the
    `growable` config fields, naming each setting that differs."""
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SafetuneError(f"{path}: cannot be read to resume the {study} study ({exc}); "
                            "choose a new --out, or move this directory away") from None
    now = json.loads(json.dumps(config))  # the form the file holds (tuples as lists)
    before = {k: v for k, v in previous.get("config", {}).items() if k not in growable}
    differ = _differences({"model": previous.get("model"), **before},
                          {"model": model, **{k: v for k, v in now.items() if k not in growable}})
    if differ:
        raise SafetuneError(f"{path.parent}: holds a {study} study run with other settings ({'; '.join(differ[:4])}"
                            f"{'; ...' if len(differ) > 4 else ''}); resume it with the same settings (its "
                            f"{path.name} has them) or choose a new --out")
    return previous
