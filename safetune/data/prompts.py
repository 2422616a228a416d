"""Prompt sets: CSV (I2P's columns honoured: prompt, categories, sd_seed, sd_guidance_scale),
plain text (one prompt a line), JSONL (a "prompt" key a line), or a built-in ShapesWorld set."""
from __future__ import annotations

import csv
import difflib
import io
import json
import random
from pathlib import Path

from ..errors import SafetuneError
from .shapesworld import (
    ATTRIBUTES,
    DOMAINS,
    HARMFUL_SHAPE,
    PRETRAIN_SHAPES,
    PROMPT_SETS,
    caption,
    make_dataset,
    random_scene,
    scene_from_text,
    split_seed,
)

PROMPT_SUFFIXES = (".csv", ".txt", ".jsonl")
SHIPPED_PROMPTS = Path(__file__).resolve().parent.parent / "assets" / "prompts"


LITERAL = "text:"  # `--prompts "text:harmfull"`: this text as the prompt, even if it looks like a set name


def read_prompts(source: str, categories: list[str] | None = None, limit: int | None = None) -> list[dict]:
    """Rows with at least "prompt"; `source` is a file, a built-in set name, or a literal prompt
    (a one-word prompt one edit from a set name is refused as a likely typo; "text:" forces it)."""
    if limit is not None and limit < 1:
        raise SafetuneError(f"--limit {limit}: must be at least 1 (it keeps the first N prompts)")
    path = Path(source)
    if source.startswith(LITERAL):
        if not source[len(LITERAL):].strip():
            raise SafetuneError(f"{source!r}: an empty prompt; write text:YOUR PROMPT")
        rows = [{"prompt": source[len(LITERAL):].strip()}]
    elif not source.strip():
        raise SafetuneError("--prompts is empty; give a prompt file, a set name "
                            f"({', '.join(PROMPT_SETS)}) or a prompt in quotes")
    elif source in PROMPT_SETS and not path.exists():
        shipped = SHIPPED_PROMPTS / f"{source}.csv"
        rows = _read_file(shipped) if shipped.is_file() else prompt_set(source)
    elif path.suffix.lower() in PROMPT_SUFFIXES or path.exists() or ("/" in source and " " not in source.strip()):
        if path.suffix and path.suffix.lower() not in PROMPT_SUFFIXES:
            raise SafetuneError(f"{path}: not a prompt file; give a .csv (a 'prompt' column), .txt (a prompt a line) "
                                "or .jsonl file")
        rows = _read_file(path)
    else:
        close = difflib.get_close_matches(source, PROMPT_SETS, n=1, cutoff=0.8) if " " not in source.strip() else []
        if close:
            raise SafetuneError(f"{source}: neither a prompt file nor a set name; did you mean {close[0]!r}? "
                                f"(to use it as the prompt itself, write text:{source})")
        rows = [{"prompt": source}]
    if categories:
        wanted = {c.strip().lower() for c in categories}
        rows = [r for r in rows if wanted & {c.strip().lower() for c in str(r.get("categories", "")).split(",")}]
        if not rows:
            raise SafetuneError(f"{source}: no prompt has a category in {sorted(wanted)}")
    return rows[:limit] if limit else rows


def _read_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise SafetuneError(f"{path}: prompt file not found; give a .csv/.txt/.jsonl file, "
                            f"a built-in set ({', '.join(PROMPT_SETS)}) or a prompt in quotes")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SafetuneError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    if not text.strip():
        raise SafetuneError(f"{path}: no prompts in the file (it is empty); add at least one non-empty prompt")
    if "\x00" in text:
        raise SafetuneError(f"{path}: a binary file, not prompts; give a .csv, .txt or .jsonl file of prompts")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise SafetuneError(f"{path}: CSV has no 'prompt' column (columns: {reader.fieldnames}); "
                                "add a header line with a 'prompt' column")
        rows = [dict(r) for r in reader]
    elif suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SafetuneError(f"{path}:{n}: not valid JSON ({exc.msg}); one object per line") from exc
            if not isinstance(row, dict) or "prompt" not in row:
                raise SafetuneError(f"{path}:{n}: each line needs a \"prompt\" key")
            rows.append(row)
    else:
        rows = [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    rows = [r for r in rows if str(r.get("prompt") or "").strip()]
    if not rows:
        raise SafetuneError(f"{path}: no prompts in the file; add at least one non-empty prompt")
    for row in rows:
        row["prompt"] = str(row["prompt"]).strip()
        for key, cast in (("sd_seed", int), ("sd_guidance_scale", float)):
            if row.get(key) not in (None, ""):
                try:
                    row[key] = cast(float(row[key]))
                except ValueError as exc:
                    raise SafetuneError(f"{path}: {key} {row[key]!r} is not a number") from exc
            else:
                row.pop(key, None)
    return rows


# ---------------------------------------------------------------- the ShapesWorld prompt sets
SET_PROMPTS, SET_SEED = 40, 1234  # the shipped prompt sets: 40 prompts each, drawn with this seed


def prompt_set(name: str, n: int = SET_PROMPTS, seed: int = SET_SEED) -> list[dict]:
    """Rows of a prompt set: `prompt` plus I2P-like extra columns (categories, seed, attributes)."""
    rng = random.Random(split_seed(seed, name))
    rows = []
    seen = set()
    attempts = 0
    while len(rows) < n and attempts < n * 50:
        attempts += 1
        if name == "harmful":
            scene = random_scene(rng, shape=HARMFUL_SHAPE)
            text = caption(scene, rng, implicit=False, drop=0.4)
            category = "harmful"
        elif name == "harmful_implicit":
            scene = random_scene(rng, shape=HARMFUL_SHAPE)
            text = caption(scene, rng, implicit=True, drop=0.4)
            category = "harmful"
        elif name == "clean":
            scene = random_scene(rng, shapes=PRETRAIN_SHAPES, textures=("solid",))
            text = caption(scene, rng, drop=0.0)
            category = "clean"
        elif name in DOMAINS:
            ex = make_dataset(name, 1, seed=rng.randrange(2**31))[0]
            scene = ex.scene
            text = caption(scene, rng, drop=0.0)
            category = name
        else:
            raise SafetuneError(f"unknown prompt set {name!r}; choose one of {PROMPT_SETS}")
        if text in seen:
            continue
        seen.add(text)
        rows.append({"prompt": text, "categories": category, "sd_seed": rng.randrange(2**31),
                     **{k: v for k, v in scene_from_text(text).items()}})
    return rows


def prompt_csv(rows: list[dict]) -> str:
    """Rows of a prompt set as CSV text (the columns of the shipped sets)."""
    columns = ["prompt", "categories", "sd_seed"] + list(ATTRIBUTES)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()
