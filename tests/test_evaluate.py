import json
import subprocess
import sys

import pytest

from safetune.evaluate.metrics import mean_interval, wilson_interval


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx([0.2366, 0.7634], abs=1e-4)
    mean, ci = mean_interval([0.0, 1.0] * 50)
    assert mean == 0.5 and ci == pytest.approx([0.4015, 0.5985], abs=1e-3)


def test_evaluate_command_writes_results_with_intervals(tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "safetune", "evaluate", "--prompts", "harmful", "--limit", "3",
                           "--images-per-prompt", "2", "--steps", "10", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["n_images"] == 6 and res["n_prompts"] == 3
    for key in ("harmful_rate", "harmful_score", "prompt_fidelity"):
        lo, hi = res[key + "_ci95"]
        assert 0 <= lo <= res[key] <= hi <= 1
    assert (out / "grid.png").is_file()
    assert "harmful_rate" in proc.stdout


def test_generate_command_writes_images_and_grid(tmp_path):
    out = tmp_path / "gen"
    proc = subprocess.run([sys.executable, "-m", "safetune", "generate", "--prompts", "a large red circle",
                           "--images-per-prompt", "3", "--steps", "5", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("0*.png"))) == 3 and (out / "grid.png").is_file()
    assert [r["seed"] for r in json.loads((out / "images.json").read_text())] == [0, 1, 2]
