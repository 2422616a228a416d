"""docs/results/audit.md and the README's guard table, rendered from docs/results/audit.json (the
audit study's results.json, stored). tests/test_provenance.py fails when they differ.

    python scripts/render_audit_docs.py [--from runs/audit/results.json]   # --from: store a new run first
"""
import argparse
import json
from pathlib import Path

from safetune.io import write_json
from safetune.report import replace_block
from safetune.studies.audit import render_audit, render_families

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "docs" / "results" / "audit.json"
BEGIN, END = "<!-- audit-families: rendered by scripts/render_audit_docs.py -->", "<!-- /audit-families -->"


def readme_block(result: dict) -> str:
    return f"{BEGIN}\n{render_families(result)}{END}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="source", default=None, help="a study's results.json to store first")
    args = ap.parse_args()
    if args.source:
        write_json(STORED, json.loads(Path(args.source).read_text()), compact=True)
    result = json.loads(STORED.read_text())
    (ROOT / "docs" / "results" / "audit.md").write_text(render_audit(result))
    replace_block(ROOT / "README.md", BEGIN, END, readme_block(result))


if __name__ == "__main__":
    main()
