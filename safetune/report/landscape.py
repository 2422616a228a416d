"""The harmful landscape probe (safetune/evaluation/landscape.py, stored by scripts/probe_landscape.py)
as a markdown table."""
from __future__ import annotations


def landscape_table(stored: dict) -> list[str]:
    """The stored probe as a table, one row per model and training seed (labels 'name|trainT'; a
    seed's row, not their mean: a hinge may break one seed's concept words and not another's): the
    harmful error before and after the simulated steps and their drop, under the images' captions and
    under the empty prompt."""
    steps = stored["settings"]["steps"]
    head = ["model", "training seed"] + [f"{p}: before | {p}: after {steps} steps | {p}: drop"
                                        for p in ("captions", "empty prompt")]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * 6]
    for label, model in stored["models"].items():
        name, _, seed = label.partition("|train")
        cells = [f"{model[p][k]:.3f}" for p in ("captions", "empty") for k in ("before", "after", "drop")]
        lines.append(f"| {name} | {seed or '-'} | " + " | ".join(cells) + " |")
    return lines
