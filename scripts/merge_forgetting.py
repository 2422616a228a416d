"""Merge forgetting studies run in separate directories (one model each, so that two can run side by
side on one thread each) into one report with the never-trained reference beside every model:

    python scripts/merge_forgetting.py runs/defence runs/defence-nt runs/defence-dd runs/defence-esd

The first argument is the output directory (created, or one this script wrote before); the others are
study directories. Their settings must agree except for the models and the attack seeds.
"""
import json
import sys
from pathlib import Path

from safetune.io import write_json
from safetune.report import write_report
from safetune.report.forgetting import render_forgetting
from safetune.studies.forgetting import summarize

MAY_DIFFER = ("models", "attack_seeds")


def merge(dirs: list[Path]) -> dict:
    runs = [json.loads((d / "results.json").read_text()) for d in dirs]
    merged = {"study": "forgetting", "model": runs[0]["model"], "config": dict(runs[0]["config"]), "models": {},
              "merged_from": [str(d) for d in dirs]}
    for d, run in zip(dirs, runs):
        differ = [k for k in run["config"] if k not in MAY_DIFFER and run["config"][k] != runs[0]["config"].get(k)]
        if differ:
            sys.exit(f"{d}: settings {differ} differ from {dirs[0]}'s; merge only runs of the same protocol")
        clash = set(run["models"]) & set(merged["models"])
        if clash:
            sys.exit(f"{d}: model(s) {sorted(clash)} already come from an earlier directory")
        merged["models"].update(run["models"])
    merged["config"]["models"] = list(merged["models"])
    merged["config"]["attack_seeds"] = sorted({s for run in runs for s in run["config"]["attack_seeds"]})
    merged["summary"] = summarize(merged)
    return merged


def main(out: str, dirs: list[str]) -> None:
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "merged.json").exists():
        sys.exit(f"{out_dir} exists and was not written by this script; choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = merge([Path(d) for d in dirs])
    write_json(out_dir / "merged.json", merged)
    write_report(out_dir, render_forgetting(merged, out_dir))
    print(f"wrote {out_dir / 'report.md'}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
