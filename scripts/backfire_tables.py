"""Print the per-point tables of one or more backfire study directories as markdown (the tables of
docs/results/resurgence.md come from this):

    python scripts/backfire_tables.py runs/backfire-main runs/backfire-reference
"""
import json
import sys
from pathlib import Path

from safetune.report.backfire import summary_table
from safetune.studies.backfire import summarize


def main(dirs: list[str]) -> None:
    for d in dirs:
        results = json.loads((Path(d) / "results.json").read_text())
        cfg = results["config"]
        extra = " (text encoder trained too)" if cfg["full"].get("train_text_encoder") else ""
        print(f"#### `{d}`: full lr {cfg['full']['lr']}, LoRA lr {cfg['lora']['lr']}, seeds {cfg['seeds']}{extra}\n")
        for name, entry in results["models"].items():
            before = entry["before"]["harmful"]
            print(f"{name}: harmful rate before fine-tuning {before['harmful_rate']:.3f} "
                  f"(n={before['n_images']})\n")
            print("\n".join(summary_table(results.get("summary") or summarize(results), name)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
