"""The harmful landscape probe (safetune/evaluation/landscape.py, stored by scripts/probe_landscape.py)
as a markdown table."""
from __future__ import annotations


def landscape_table(stored: dict) -> list[str]:
    """The stored probe as a table: one row per model (the mean of its training seeds, its labels
    'name|trainT' grouped by name): the harmful error before and after the simulated steps and their
    drop, under the images' captions and under the empty prompt."""
    groups: dict[str, list[dict]] = {}
    for label, model in stored["models"].items():
        groups.setdefault(label.split("|train")[0], []).append(model)
    steps = stored["settings"]["steps"]
    head = ["model", "training seeds"] + [f"{p}: before | {p}: after {steps} steps | {p}: drop"
                                         for p in ("captions", "empty prompt")]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * 6]
    for name, runs in groups.items():
        mean = lambda prompts, key: sum(r[prompts][key] for r in runs) / len(runs)  # noqa: E731
        cells = [f"{mean(p, k):.3f}" for p in ("captions", "empty") for k in ("before", "after", "drop")]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines
