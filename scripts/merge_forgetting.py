"""Merge forgetting studies run in separate directories (one model each, so that two can run side by
side on one thread each) into one report with the never-trained reference beside every model:

    python scripts/merge_forgetting.py runs/defence runs/defence-nt runs/defence-dd runs/defence-esd

The first argument is the output directory (created, or one this script wrote before); the others are
study directories. Their settings must agree except for the models (and how each was built), the
attacks, their learning rates and seeds, and the benign domains; a model found in several directories
must be the same model (the same harmful rate before any attack) and each of its attack learning rates
must come from one directory only.
"""
import copy
import json
import sys
from pathlib import Path

from safetune.io import write_json
from safetune.report import write_report
from safetune.report.forgetting import render_forgetting
from safetune.studies.forgetting import summarize

MAY_DIFFER = ("models", "attacks", "attack_lrs", "attack_seeds", "benign_domains")
# How each directory built its own models (not how they were attacked or measured): may differ, and
# the merged config keeps each model's under "model_settings".
MODEL_SETTINGS = ("esd", "concepts", "safe_train", "forgetting", "distill_train", "distill")


def same(a, b) -> bool:
    """Equal settings; a field that only one side has (added to safetune after the other run, with
    the default that run had) does not count."""
    if isinstance(a, dict) and isinstance(b, dict):
        return all(same(a[k], b[k]) for k in a.keys() & b.keys())
    return a == b


def merge_model(into: dict, entry: dict, where: str) -> None:
    """Add one directory's attacks of a model to those already merged (new learning rates only)."""
    def before(e):
        harmful = e.get("before", {}).get("harmful", {})
        return harmful.get("harmful_rate"), harmful.get("harmful_score")

    if before(into) != before(entry):
        sys.exit(f"{where}: not the same model as in an earlier directory (its harmful rate before any attack "
                 "differs); give it another name")
    for attack, by_lr in entry.get("attacks", {}).items():
        known = into.setdefault("attacks", {}).setdefault(attack, {})
        twice = set(by_lr) & set(known)
        if twice:
            sys.exit(f"{where}: {attack} attack at lr {sorted(twice)} already comes from an earlier directory")
        known.update(by_lr)
    for key, value in entry.items():
        into.setdefault(key, value)


def merge(dirs: list[Path]) -> dict:
    runs = [json.loads((d / "results.json").read_text()) for d in dirs]
    merged = {"study": "forgetting", "model": runs[0]["model"], "config": dict(runs[0]["config"]), "models": {},
              "merged_from": [str(d) for d in dirs]}
    for d, run in zip(dirs, runs):
        differ = [k for k in run["config"] if k not in MAY_DIFFER + MODEL_SETTINGS
                  and not same(run["config"][k], runs[0]["config"].get(k))]
        if differ:
            sys.exit(f"{d}: settings {differ} differ from {dirs[0]}'s; merge only runs of the same protocol")
        for name, entry in run["models"].items():
            merged.setdefault("model_settings", {}).setdefault(
                name, {k: run["config"].get(k) for k in MODEL_SETTINGS})
            if name in merged["models"]:
                merge_model(merged["models"][name], entry, f"{d}: {name}")
            else:
                merged["models"][name] = copy.deepcopy(entry)
    merged["config"]["models"] = list(merged["models"])
    for key in MAY_DIFFER[1:]:  # the union, in first-seen order (sorted for numbers)
        values = list(dict.fromkeys(v for run in runs for v in run["config"][key]))
        merged["config"][key] = sorted(values) if key.startswith("attack_") else values
    merged["summary"] = summarize(merged)
    return merged


def built_differently(merged: dict) -> str:
    """A report section naming the model-building settings that differ between the merged directories."""
    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    per_model = {name: dict(flat(settings)) for name, settings in merged.get("model_settings", {}).items()}
    keys = sorted({k for flat_settings in per_model.values() for k in flat_settings})
    differ = [k for k in keys if len({repr(f.get(k)) for f in per_model.values()}) > 1]
    if not differ:
        return ""
    lines = ["", "## How the merged models were built (settings that differ between their directories)", "",
             "| model | " + " | ".join(differ) + " |", "|---|" + "---|" * len(differ)]
    lines += [f"| {name} | " + " | ".join(str(f.get(k)) for k in differ) + " |" for name, f in per_model.items()]
    return "\n".join(lines) + "\n"


def main(out: str, dirs: list[str]) -> None:
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "merged.json").exists():
        sys.exit(f"{out_dir} exists and was not written by this script; choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = merge([Path(d) for d in dirs])
    write_json(out_dir / "merged.json", merged)
    write_report(out_dir, render_forgetting(merged, out_dir) + built_differently(merged))
    print(f"wrote {out_dir / 'report.md'}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
