"""docs/results/audit.md and the README's guard table, rendered from docs/results/audit.json (the
audit study's results.json, stored). tests/test_provenance.py fails when they differ.

    python scripts/render_audit_docs.py [--from runs/audit/results.json]   # --from: store a new run first
"""
import argparse
import json
import re
from pathlib import Path

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
        STORED.write_text(json.dumps(json.loads(Path(args.source).read_text()), indent=1) + "\n")
    result = json.loads(STORED.read_text())
    (ROOT / "docs" / "results" / "audit.md").write_text(render_audit(result))
    readme = (ROOT / "README.md").read_text()
    pattern = re.escape(BEGIN) + ".*?" + re.escape(END)
    if not re.search(pattern, readme, flags=re.S):
        raise SystemExit(f"README.md has no {BEGIN} block")
    (ROOT / "README.md").write_text(re.sub(pattern, lambda _: readme_block(result), readme, flags=re.S))


if __name__ == "__main__":
    main()
