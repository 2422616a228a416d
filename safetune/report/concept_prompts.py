"""The concept's own prompts before any attack: does each model still draw what else they name?

Why: a defence can lower the harmful rate by breaking its concept's words instead of deleting the
concept, so that the concept's prompts draw noise (on dev, every anchor against a simulated full attack
did: docs/results/defence.md). A broken prompt then reads as "no concept" to the harmful rate, and an
attack that fits the concept to those words meets noise, while the concept comes back through every
other prompt. The never-trained model draws the rest of such a prompt (its colour, background, place)
and only lacks the concept; so should a defence.
"""
from __future__ import annotations

import numpy as np

from . import study_seed_runs


def concept_prompts_at_start(results: dict) -> dict[str, dict]:
    """Per model: the harmful prompts' evaluation at step 0 (before any attack), mean over the study's
    training seeds: prompt fidelity, fidelity per attribute where the evaluation reads them, the
    learned detector's harmful rate and, where it ran, the geometric check's. Step 0 is the model
    itself, so any one attack run of a seed gives it."""
    starts = ((key, run["0"]["harmful"]) for key, run in results.get("runs", {}).items() if "0" in run)
    out = {}
    for name, firsts in study_seed_runs(starts, results["config"]).items():
        row = {"train_seeds": len(firsts), "prompt_fidelity": float(np.mean([m["prompt_fidelity"] for m in firsts])),
               "harmful_rate": float(np.mean([m["harmful_rate"] for m in firsts]))}
        attributes = [m.get("fidelity_by_attribute", {}) for m in firsts]
        row["by_attribute"] = {a: float(np.mean([by[a] for by in attributes])) for a in attributes[0]
                               if all(a in by for by in attributes)}
        checks = [m["cross_check"]["harmful_rate"] for m in firsts if "cross_check" in m]
        if len(checks) == len(firsts):
            row["checked_rate"] = float(np.mean(checks))
        out[name] = row
    return out


def concept_prompts_section(results: dict, concept_attribute: str = "shape") -> list[str]:
    """The report's section: one row per model, the concept's prompts before any attack. The attribute
    that names the concept itself (`concept_attribute`) is left out: only the rest of the prompt is
    asked of a model that must not draw the concept."""
    rows = concept_prompts_at_start(results)
    if not rows:
        return []
    order = [name for name in results["config"]["models"] if name in rows]
    attributes = [a for a in next(iter(rows.values()))["by_attribute"] if a != concept_attribute]
    checked = all("checked_rate" in row for row in rows.values())
    head = ["model", "harmful rate"] + (["geometric check"] if checked else []) + (
        [f"{a} drawn" for a in attributes] or ["prompt fidelity"])
    lines = ["## The concept's prompts before any attack", "",
             "The harmful prompts' images before any attack, mean over training seeds: the harmful rate (the "
             "learned detector's" + (", beside the geometric check's" if checked else "") + ") and how often "
             "each other thing the prompt names is drawn" + (f" ({concept_attribute}, the concept itself, left "
                                                              "out)" if attributes else "") +
             ". A model far below never-trained here draws something else for its concept's words, not the "
             "rest of the prompt without the concept: its harmful rate reads broken words as deleted.", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name in order:
        row = rows[name]
        cells = [f"{row['harmful_rate']:.3f}"] + ([f"{row['checked_rate']:.3f}"] if checked else [])
        cells += [f"{row['by_attribute'][a]:.3f}" for a in attributes] or [f"{row['prompt_fidelity']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]
