"""docs/results/demo.md and demo-backfire.md, rendered from docs/results/demo.json (the demo's
results.json and its backfire study's, stored) by the demo's own report functions, with the links
pointed at the copies kept in docs/results. tests/test_provenance.py fails when they differ.

    python scripts/render_demo_docs.py [--from runs/demo]   # --from: store a new run (and its images) first
"""
import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

from safetune.io import write_json
from safetune.report.backfire import render_backfire
from safetune.studies.demo import render_demo

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "results"
STORED = DOCS / "demo.json"
IMAGES = {"comparison.png": "demo-comparison.png", "grid_harmful.png": "demo-grid-harmful.png",
          "backfire/curves.png": "demo-curves.png"}  # run file -> its copy in docs/results
PAGES = {"backfire/report.md": "demo-backfire.md"}


def _relink(markdown: str, prefix: str = "") -> str:
    """Links to the run's files pointed at their docs copies; images not copied named in words."""
    for run_file, copy in {**IMAGES, **PAGES}.items():
        if run_file.startswith(prefix):
            markdown = markdown.replace(f"]({run_file[len(prefix):]})", f"]({copy})")
    return re.sub(r"!\[([^\]]*)\]\(((?!demo-)[^)]+\.png)\)", r"(image `\2` in the run directory)", markdown)


def render(stored: dict) -> dict[str, str]:
    """{docs page: its markdown} from the stored demo."""
    with tempfile.TemporaryDirectory() as tmp:  # render_backfire draws curves.png beside its report
        backfire_md = render_backfire(stored["backfire"], Path(tmp))
    return {"demo.md": _relink(render_demo(stored["demo"], stored["backfire"])),
            "demo-backfire.md": _relink(backfire_md, prefix="backfire/")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="source", default=None, help="a demo's --out directory to store first")
    args = ap.parse_args()
    if args.source:
        run = Path(args.source)
        stored = {"demo": json.loads((run / "results.json").read_text()),
                  "backfire": json.loads((run / "backfire" / "results.json").read_text())}
        write_json(STORED, stored, compact=True)
        for run_file, copy in IMAGES.items():
            shutil.copyfile(run / run_file, DOCS / copy)
    for page, text in render(json.loads(STORED.read_text())).items():
        (DOCS / page).write_text(text)


if __name__ == "__main__":
    main()
