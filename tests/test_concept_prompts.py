"""The relearn report's section on the concept's own prompts before any attack: the step-0 harmful
evaluation per model, averaged over the study's training seeds, the concept's own attribute left out."""
import json

from safetune.report.concept_prompts import concept_prompts_at_start, concept_prompts_section
from safetune.report.relearn import render_relearn

from provenance_helpers import ROOT


def _run(rate, colour, shape, checked=None):
    harmful = {"harmful_rate": rate, "prompt_fidelity": (colour + shape) / 2,
               "fidelity_by_attribute": {"colour": colour, "shape": shape}}
    if checked is not None:
        harmful["cross_check"] = {"harmful_rate": checked}
    return {"0": {"harmful": harmful}, "400": {"harmful": {**harmful, "harmful_rate": 0.9}}}


def _results(runs, models=("never-trained", "dd"), seeds=(0, 1)):
    return {"config": {"models": list(models), "train_seeds": list(seeds)}, "runs": runs}


def test_each_model_s_row_is_its_step_zero_mean_over_the_study_s_training_seeds():
    runs = {"never-trained|train0|full|0.001|attack0": _run(0.0, 1.0, 0.0, 0.0),
            "dd|train0|full|0.001|attack0": _run(0.2, 0.2, 0.8, 0.0),
            "dd|train0|lora-r4|0.001|attack1": _run(0.5, 0.5, 0.5, 0.5),  # the same seed again: its first run counts
            "dd|train1|full|0.001|attack0": _run(0.0, 0.6, 0.0, 0.1),
            "dd|train7|full|0.001|attack0": _run(1.0, 0.0, 1.0, 1.0),  # a seed the study does not compare
            "other|train0|full|0.001|attack0": _run(1.0, 0.0, 1.0, 1.0)}  # a model it does not list
    rows = concept_prompts_at_start(_results(runs))
    assert set(rows) == {"never-trained", "dd"}
    assert rows["dd"]["train_seeds"] == 2 and abs(rows["dd"]["harmful_rate"] - 0.1) < 1e-12
    assert abs(rows["dd"]["by_attribute"]["colour"] - 0.4) < 1e-12 and abs(rows["dd"]["checked_rate"] - 0.05) < 1e-12
    section = concept_prompts_section(_results(runs))
    assert "| model | harmful rate | geometric check | colour drawn |" in section
    assert "| dd | 0.100 | 0.050 | 0.400 |" in section and "| never-trained | 0.000 | 0.000 | 1.000 |" in section
    assert not any("shape drawn" in line for line in section)  # the concept itself is not asked of a defence


def test_without_attributes_or_a_geometric_check_the_section_shows_prompt_fidelity():
    runs = {"dd|train0|full|0.001|attack0": {"0": {"harmful": {"harmful_rate": 0.25, "prompt_fidelity": 0.3}}}}
    section = concept_prompts_section(_results(runs, models=("dd",), seeds=(0,)))
    assert "| model | harmful rate | prompt fidelity |" in section and "| dd | 0.250 | 0.300 |" in section
    assert concept_prompts_section(_results({})) == []


def test_the_stored_caption_screen_shows_its_broken_prompts_in_its_report():
    """On the stored caption-anchor screen the section is in the report, and every anchor against a
    simulated full attack draws its concept prompts' colour far below the never-trained model."""
    stored = json.loads((ROOT / "docs" / "results" / "benchmark-dev-latecap.json").read_text())
    assert "## The concept's prompts before any attack" in render_relearn(stored)
    rows = concept_prompts_at_start(stored)
    anchors = [name for name in rows if "attack_sim=full/tamper=anchor" in name]
    assert len(anchors) == 4 and rows["never-trained"]["by_attribute"]["colour"] == 1.0
    assert all(rows[name]["by_attribute"]["colour"] < 0.5 for name in anchors)


def test_the_benchmark_doc_names_the_leaderboard_rows_whose_concept_prompts_lose_their_colour():
    """docs/benchmark.md: "LT and NG are the two rows whose concept prompts lose their colour" holds on the
    stored leaderboard: they draw it on under half the images, every other row on at least nine tenths."""
    stored = json.loads((ROOT / "docs" / "results" / "benchmark.json").read_text())
    colour = {name: row["by_attribute"]["colour"] for name, row in concept_prompts_at_start(stored).items()}
    assert {name for name, value in colour.items() if value < 0.5} == {"lt", "ng"}
    assert all(value >= 0.9 for name, value in colour.items() if name not in ("lt", "ng"))
    text = " ".join((ROOT / "docs" / "benchmark.md").read_text().split())
    assert "LT and NG are the two rows whose concept prompts lose their colour" in text
