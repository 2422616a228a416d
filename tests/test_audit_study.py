"""The red-team study end to end on small numbers (every family and verdict once): slow, run with -m slow."""
import json

import pytest

from safetune.cli import main
from safetune.studies.audit import MALICIOUS


@pytest.mark.slow
def test_reduced_audit_study_audits_every_family_and_resumes_only_the_same(tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["study", "audit", "--reduced", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert set(MALICIOUS) | {"benign", "related", "all malicious"} == set(result["families"])
    verdicts = {r["id"]: r["verdict"] for r in result["rows"] if r["split"] == "test"}
    for weights_only in ("scaled-0", "split-0", "cancelling-0"):
        assert verdicts[weights_only] == "FAIL"  # the composition points along -dW_safe
    assert all(v != "PASS" for k, v in verdicts.items() if not k.startswith(("benign", "related")))
    assert main(["study", "audit", "--reduced", "--out", str(out)]) == 0  # resumed: nothing redone
    assert main(["study", "audit", "--reduced", "--set", "per_family=2", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err
