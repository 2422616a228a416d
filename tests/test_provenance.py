"""Numbers in the docs are rendered from result files stored in the repository: a table that differs
from what its stored data renders fails here (scripts/render_audit_docs.py renders them)."""
import importlib.util
import json
from pathlib import Path

from safetune.studies.audit import render_audit

ROOT = Path(__file__).resolve().parent.parent


def _renderer():
    spec = importlib.util.spec_from_file_location("render_audit_docs", ROOT / "scripts" / "render_audit_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_audit_report_and_readme_table_are_what_the_stored_results_render():
    stored = json.loads((ROOT / "docs" / "results" / "audit.json").read_text())
    assert (ROOT / "docs" / "results" / "audit.md").read_text() == render_audit(stored)
    assert _renderer().readme_block(stored) in (ROOT / "README.md").read_text()
    families = stored["families"]
    assert families["all malicious"]["n"] >= 20 and families["benign"]["n"] >= 20
