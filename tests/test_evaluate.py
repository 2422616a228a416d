import json

import pytest

from safetune.evaluation.metrics import mean_interval, wilson_interval


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx([0.2366, 0.7634], abs=1e-4)
    mean, ci = mean_interval([0.0, 1.0] * 50)
    assert mean == 0.5 and ci == pytest.approx([0.4015, 0.5985], abs=1e-3)


def test_evaluate_command_writes_results_with_intervals(tmp_path, run_cli):
    out = tmp_path / "eval"
    proc = run_cli("evaluate", "--prompts", "harmful", "--limit", "3", "--images-per-prompt", "2", "--steps", "10",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["n_images"] == 6 and res["n_prompts"] == 3
    for key in ("harmful_rate", "harmful_score", "prompt_fidelity"):
        lo, hi = res[key + "_ci95"]
        assert 0 <= lo <= res[key] <= hi <= 1
    assert (out / "grid.png").is_file()
    assert "harmful_rate" in proc.stdout


def test_generate_command_writes_images_and_grid(tmp_path, run_cli):
    out = tmp_path / "gen"
    proc = run_cli("generate", "--prompts", "a large red circle", "--images-per-prompt", "3", "--steps", "5",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("0*.png"))) == 3 and (out / "grid.png").is_file()
    assert [r["seed"] for r in json.loads((out / "images.json").read_text())] == [0, 1, 2]


def test_seed_aggregation_and_resurgence_intervals():
    from safetune.evaluation.metrics import across_seeds, newcombe_interval, resurgence

    per_seed = [{"harmful_rate": r, "n_images": 200} for r in (0.15, 0.23, 0.18)]
    agg = across_seeds(per_seed)
    assert agg["mean"] == pytest.approx(0.18667, abs=1e-4)
    assert agg["sd"] == pytest.approx(0.04041, abs=1e-4)
    # t(0.975, 2) = 4.303: the seed interval is wide with three seeds
    assert agg["seed_ci95"] == pytest.approx([0.18667 - 4.303 * 0.04041 / 3**0.5, 0.18667 + 4.303 * 0.04041 / 3**0.5],
                                             abs=1e-3)
    assert agg["pooled"] == pytest.approx(112 / 600) and agg["n_images"] == 600
    assert agg["pooled_ci95"] == pytest.approx(wilson_interval(112, 600))
    # Newcombe's example 1 (Statistics in Medicine 1998): 56/70 - 48/80 -> [0.0524, 0.3339]
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx([0.0524, 0.3339], abs=1e-4)
    res = resurgence(per_seed, {"harmful_rate": 0.125, "n_images": 200})
    assert res["mean"] == pytest.approx(0.06167, abs=1e-4)
    assert res["pooled"] == pytest.approx(112 / 600 - 25 / 200)
    lo, hi = res["pooled_ci95"]
    assert lo < res["pooled"] < hi and lo > -0.05
