"""A miniature backfire study: every (model, domain, way, seed) is fine-tuned and evaluated; at step 0
each way is exactly the model before fine-tuning (a new LoRA starts at zero; dW_safe is added at
inference for modular); seeds are aggregated; the report and its figure are written."""
from dataclasses import replace

import pytest

from safetune.config import SamplingConfig, TrainConfig
from safetune.studies.backfire import BackfireConfig, run_backfire


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("backfire")
    tiny = dict(batch_size=4, checkpoint_every=10**9)
    config = BackfireConfig(
        domains=["clean", "sparkle"], seeds=[0, 1], save_at=[0, 2], n_data=16, prompts_per_set=3,
        sampling=SamplingConfig(images_per_prompt=2, steps=2),
        align=TrainConfig(steps=3, lr=1e-3, mode="lora", targets="xattn", **tiny),
        full=TrainConfig(lr=1e-4, mode="full", **tiny), lora=TrainConfig(lr=1e-3, mode="lora", **tiny))
    return out, run_backfire(out, config)


def test_every_run_is_evaluated_and_step_0_is_the_model_before(study):
    out, results = study
    for name, ways in (("esd-x", ("full", "lora-on-top", "modular")), ("never-trained", ("full", "lora"))):
        entry = results["models"][name]
        for domain in ("clean", "sparkle"):
            for way in ways:
                seeds = entry["runs"][domain][way]
                assert sorted(seeds) == ["seed0", "seed1"]
                for curve in seeds.values():
                    assert sorted(curve) == ["0", "2"]
                    assert curve["0"]["harmful"]["harmful_score"] == pytest.approx(
                        entry["before"]["harmful"]["harmful_score"], abs=1e-6)
                    assert {"harmful", "clean", domain, "harmful_implicit"} <= set(curve["2"])


def test_seeds_are_aggregated_with_resurgence(study):
    _, results = study
    row = results["summary"]["esd-x"]["sparkle"]["lora-on-top"]["2"]
    assert row["harmful_rate"]["n_seeds"] == 2 and row["harmful_rate"]["n_images"] == 12
    per_seed = [c["2"]["harmful"]["harmful_rate"] for c in results["models"]["esd-x"]["runs"]["sparkle"]["lora-on-top"].values()]
    assert row["harmful_rate"]["mean"] == pytest.approx(sum(per_seed) / 2)
    before = results["models"]["esd-x"]["before"]["harmful"]["harmful_rate"]
    assert row["resurgence"]["mean"] == pytest.approx(sum(per_seed) / 2 - before)
    lo, hi = row["resurgence"]["pooled_ci95"]
    assert lo <= row["resurgence"]["pooled"] <= hi
    assert "domain_fidelity" in row and "clean_harmful_rate" in row


def test_report_and_figure_are_written(study):
    out, _ = study
    text = (out / "report.md").read_text()
    assert "resurgence" in text and "never-trained" in text and "lora-on-top" in text
    assert (out / "curves.png").is_file() and (out / "report.html").is_file()
    assert any(out.glob("grids/*harmful.png"))


def test_a_way_carries_its_own_recipe(tmp_path):
    """'modular:lr=1e-4/lora_rank=16' trains with those settings (steps still from save_at); what a
    way cannot set, and unknown settings, are refused before any work; the run is keyed by the name."""
    from safetune.errors import SafetuneError

    config = BackfireConfig(save_at=[0, 5])
    recipe = config.train_config("modular:lr=1e-4/lora_rank=16", seed=2)
    assert (recipe.lr, recipe.lora_rank, recipe.steps, recipe.seed, recipe.mode) == (1e-4, 16, 5, 2, "lora")
    assert config.train_config("full:lr=3e-4", 0).lr == 3e-4 and config.train_config("full", 0).mode == "full"
    for way, message in (("modular:steps=9", "steps come from save_at"), ("modular:rnak=4", "rnak"),
                         ("moduler", "unknown way")):
        with pytest.raises(SafetuneError, match=message):
            BackfireConfig(ways=[way], reference="").validate()
    tiny = dict(batch_size=4, checkpoint_every=10**9)
    small = BackfireConfig(domains=["sparkle"], ways=["modular:lr=1e-4/lora_rank=2"], seeds=[0], save_at=[0, 1],
                           reference="", n_data=8, prompts_per_set=2, sampling=SamplingConfig(images_per_prompt=1, steps=2),
                           align=TrainConfig(steps=1, lr=1e-3, mode="lora", targets="xattn", **tiny),
                           lora=TrainConfig(lr=1e-3, mode="lora", **tiny))
    results = run_backfire(tmp_path, small)
    assert list(results["models"]["esd-x"]["runs"]["sparkle"]) == ["modular:lr=1e-4/lora_rank=2"]
    assert "its recipe here: lr=1e-4, lora_rank=2" in (tmp_path / "report.md").read_text()
    # another recipe grows the study: the first run is kept as it was, only the new one is made
    grown = run_backfire(tmp_path, replace(small, ways=small.ways + ["modular:lr=3e-4/lora_rank=2"]))
    runs = grown["models"]["esd-x"]["runs"]["sparkle"]
    assert list(runs) == ["modular:lr=1e-4/lora_rank=2", "modular:lr=3e-4/lora_rank=2"]
    assert runs["modular:lr=1e-4/lora_rank=2"] == results["models"]["esd-x"]["runs"]["sparkle"][
        "modular:lr=1e-4/lora_rank=2"]
    with pytest.raises(SafetuneError, match=r"save_at \(\[0, 1\] -> \[0, 2\]\)"):
        run_backfire(tmp_path, replace(small, save_at=[0, 2]))  # every run would differ: refused


def test_the_recipes_table_says_what_each_recipe_shows(study):
    """One row per (domain, way): the way's recipe, each step's mean (range), and a 'shows' cell that
    follows the rule (a pooled lower bound above 0: comes back)."""
    from safetune.report.backfire import recipes_table

    _, results = study
    lines = recipes_table(results)
    rows = [line for line in lines if line.startswith("| clean") or line.startswith("| sparkle")]
    assert len(rows) == 2 * 3  # two domains x three ways of esd-x
    assert any("| lora-on-top, lr 0.001, rank 4 |" in row for row in rows)
    for row in rows:
        assert row.rstrip(" |").endswith(("comes back**", "stays at or below", "not shown either way")), row
