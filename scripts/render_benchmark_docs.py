"""docs/results/benchmark.md and the README's leaderboard, rendered from docs/results/benchmark.json
(a relearn study's results.json, stored) by the study's own summary and report functions.
tests/test_provenance.py fails when they differ.

    python scripts/render_benchmark_docs.py [--from runs/relearn/results.json]   # --from: store a run first
"""
import argparse
import json
from pathlib import Path

from safetune.report import replace_block
from safetune.report.relearn import leaderboard, quality_summary, render_relearn
from safetune.studies.relearn import summarize

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "docs" / "results" / "benchmark.json"
BEGIN, END = "<!-- benchmark: rendered by scripts/render_benchmark_docs.py -->", "<!-- /benchmark -->"


def with_summary(results: dict) -> dict:
    """The stored run with its summary recomputed from its runs (never trusted from the file)."""
    results = dict(results)
    results["summary"] = summarize(results)
    return results


def readme_block(results: dict) -> str:
    cfg = results["config"]
    attacks = [a for a in cfg["attacks"] if a in results["summary"]]
    return BEGIN + "\n" + "\n".join(leaderboard(results["summary"], cfg["models"], attacks,
                                                                  quality_summary(results))) + "\n" + END


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="source", default=None, help="a relearn study's results.json to store first")
    args = ap.parse_args()
    if args.source:
        stored = json.loads(Path(args.source).read_text())
        stored.pop("summary", None)  # derived: recomputed on every render
        STORED.write_text(json.dumps(stored, indent=1) + "\n")
    results = with_summary(json.loads(STORED.read_text()))
    (ROOT / "docs" / "results" / "benchmark.md").write_text(render_relearn(results))
    replace_block(ROOT / "README.md", BEGIN, END, readme_block(results))


if __name__ == "__main__":
    main()
