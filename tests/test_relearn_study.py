"""The relearning benchmark on tiny numbers: every kind of attack runs, every run stores per-prompt
counts of harmful and clean prompts at every step, the verdicts and leaderboard come from them, the
test split draws its own prompts, a resume redoes nothing, and one with other settings is refused."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from safetune.config import SamplingConfig, TrainConfig
from safetune.errors import SafetuneError
from safetune.studies.forgetting import ForgettingStudyConfig
from safetune.models.loading import resolve_model
from safetune.studies.relearn import RelearnConfig, next_lr, run_key, run_relearn, split_prompts, untimed
from safetune.studies.relearn_summary import curves_of, trained_seeds


def tiny() -> RelearnConfig:
    recipes = ForgettingStudyConfig(n_data=32, esd=TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="lora",
                                                               targets="xattn", checkpoint_every=10**9))
    recipes.full_attack = replace(recipes.full_attack, batch_size=4)
    recipes.lora_attack = replace(recipes.lora_attack, batch_size=4)
    return RelearnConfig(models=["never-trained", "esd"], train_seeds=[0, 1], attacks=["full", "lora-r1", "inversion",
                         "retain", "benign"], attack_lrs=[1e-4], inversion_lrs=[1e-2], steps=[0, 2], attack_seeds=[100],
                         bracket=0, prompts_per_set=3, quality_prompts=3, replicates=200,
                         sampling=SamplingConfig(images_per_prompt=2, steps=4),
                         recipes=recipes)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("relearn")
    return out, run_relearn(out, tiny())


def test_every_attack_runs_with_controls_and_per_prompt_counts(study):
    out, results = study
    # never-trained: 1 training seed; esd: 2; five attacks, one lr and attack seed each
    assert len(results["runs"]) == (1 + 2) * 5
    run = results["runs"]["esd|train1|inversion|0.01|attack100"]
    for step in ("0", "2"):
        assert len(run[step]["harmful"]["flagged_per_prompt"]) == 6  # test split: 3 harmful + 3 implicit
        assert run[step]["clean"]["n_images"] == 6  # the clean-prompt control at every step
    benign = results["runs"]["esd|train0|benign|0.0001|attack100"]["2"]
    assert sorted(benign) == ["clean", "domain", "harmful"]  # the new domain's prompts, for learnability
    shape_misses = benign["domain"]["misread_per_prompt"]["shape"]
    assert len(shape_misses) == 3 and all(0 <= k <= 2 for k in shape_misses)
    stored = json.loads((out / "results.json").read_text())
    assert len(stored["summary"]["benign"]["esd"]["learned_curve"]) == 2
    verdict = stored["summary"]["full"]["esd"]["verdict"]
    assert verdict["verdict"] in ("NON-INFERIOR", "INFERIOR", "INCONCLUSIVE") and len(verdict["upper"]) == 2
    report = (out / "report.md").read_text()
    assert "## Leaderboard" in report and "| esd |" in report and "detectable" in report.lower()
    assert "## Benign learnability" in report
    assert set(stored["quality"]) == {"never-trained|train0", "esd|train0", "esd|train1"}
    kid = stored["quality"]["esd|train1"]["kid"]
    assert kid["se"] > 0 and kid["n"] == [3 * 2, 3 * 2] and "KID x1000" in report  # 3 quality prompts x 2 images
    # the line to the original: a = 0 is the shipped model (stars), the never-trained model is far from it
    line = stored["quality"]["never-trained|train0"]["line"]
    assert list(line) == ["0", "0.25", "0.5", "0.75", "1"] and line["0"] > line["1"]
    assert stored["quality"]["never-trained|train0"]["distance"] > stored["quality"]["esd|train0"]["distance"] > 0
    assert "## Diagnostics of deleted" in report


def test_the_test_split_draws_other_prompts_than_dev():
    dev, _ = split_prompts(replace(tiny(), split="dev"))
    test, _ = split_prompts(tiny())
    assert not {r["prompt"] for r in dev} & {r["prompt"] for r in test[:3]}
    assert any(word in r["prompt"] for r in test[3:] for word in ("badge", "five points", "twinkle", "starfish"))


def test_settings_are_checked_before_any_work():
    with pytest.raises(SafetuneError, match="never-trained"):
        replace(tiny(), models=["esd"]).validate()
    with pytest.raises(SafetuneError, match="unknown attack"):
        replace(tiny(), attacks=["magic"]).validate()


def test_a_resume_redoes_nothing_and_other_settings_are_refused(study):
    out, results = study
    before = (out / "results.json").read_text()
    again = run_relearn(out, tiny())
    assert again["runs"] == results["runs"]
    with pytest.raises(SafetuneError, match=r"other settings \(steps \(\[0, 2\] -> \[0, 3\]\)\)"):
        run_relearn(out, replace(tiny(), steps=[0, 3]))  # every run would differ: refused, naming the setting
    assert (out / "results.json").read_text() == before


def _stored(out, path):
    """The study in `out` as the repository stores it (docs/results: results.json without its summary)."""
    path.write_text(json.dumps({k: v for k, v in json.loads((out / "results.json").read_text()).items()
                                if k != "summary"}))
    return path


def _kinds(out) -> list[str]:
    """The kinds of the runs a study directory made itself."""
    return sorted(json.loads(p.read_text())["spec"]["kind"] for p in (out / "runs").glob("*.json"))


def test_more_seeds_extend_a_study_keeping_its_runs(study, tmp_path):
    out, results = study
    shutil.copytree(out, tmp_path / "study")
    more = replace(tiny(), attacks=["full"], attack_seeds=[100, 101], margin=0.1)
    grown = run_relearn(tmp_path / "study", more)
    new = set(grown["runs"]) - set(results["runs"])
    # one more attack seed of "full" for never-trained (1 training seed) and esd (2): three runs, no other
    assert new == {run_key(m, t, "full", 1e-4, 101) for m, t in [("never-trained", 0), ("esd", 0), ("esd", 1)]}
    assert all(grown["runs"][key] == run for key, run in results["runs"].items())
    assert set(grown["summary"]) == {"full"} and grown["config"]["margin"] == 0.1
    # the same growth from the stored results alone (a fresh clone: no runs/, no models/): the two esd
    # models are rebuilt from their training seeds, the three new runs made, no quality run redone,
    # and every number is the one the study directory's copy gave
    fresh = run_relearn(tmp_path / "fresh", more, grow_from=_stored(out, tmp_path / "benchmark-tiny.json"))
    assert _kinds(tmp_path / "fresh") == ["attack"] * 3 + ["model"] * 2
    assert untimed(fresh["runs"]) == untimed(grown["runs"]) and fresh["quality"] == grown["quality"]
    assert fresh["summary"] == grown["summary"]


def test_a_stored_study_is_judged_again_without_running_anything(study, tmp_path):
    out, results = study
    stored = _stored(out, tmp_path / "benchmark-tiny.json")
    judged = run_relearn(tmp_path / "judged", replace(tiny(), margin=0.1), grow_from=stored)
    assert judged["runs"] == results["runs"] and judged["config"]["margin"] == 0.1
    assert _kinds(tmp_path / "judged") == [] and not any((tmp_path / "judged" / "models").iterdir())
    assert run_relearn(tmp_path / "judged", replace(tiny(), margin=0.1), grow_from=stored)["runs"] == results["runs"]
    with pytest.raises(SafetuneError, match=r"--grow-from .*benchmark-tiny.json: .*other settings \(steps"):
        run_relearn(tmp_path / "other", replace(tiny(), steps=[0, 3]), grow_from=stored)
    assert not (tmp_path / "other" / "results.json").exists()
    (tmp_path / "not-a-study.json").write_text('{"study": "backfire"}')
    with pytest.raises(SafetuneError, match="not a relearn study"):
        run_relearn(tmp_path / "other", tiny(), grow_from=tmp_path / "not-a-study.json")
    # a directory holding another study's runs is not mixed with the stored one
    shutil.copytree(out, tmp_path / "elsewhere")
    held = json.loads((tmp_path / "elsewhere" / "results.json").read_text())
    held["runs"].pop(run_key("esd", 1, "full", 1e-4, 100))
    (tmp_path / "elsewhere" / "results.json").write_text(json.dumps(held))
    with pytest.raises(SafetuneError, match=r"without 1 of its runs \(the first: esd\|train1\|full"):
        run_relearn(tmp_path / "elsewhere", tiny(), grow_from=stored)


def test_the_reference_takes_more_pretrainings_as_its_training_seeds(study, tmp_path):
    """reference_pretrainings: the never-trained model's training seeds 1, 2, ... are other pretrainings,
    each a model of its own (here the shipped model with the concept, so that it cannot pass for seed
    0's); the summary and the verdicts read them as training seeds; a growth may only append."""
    out, results = study
    shutil.copytree(out, tmp_path / "study")
    more = replace(tiny(), attacks=["full"], reference_pretrainings=[resolve_model("shapes")])
    grown = run_relearn(tmp_path / "study", more)
    assert set(grown["runs"]) - set(results["runs"]) == {run_key("never-trained", 1, "full", 1e-4, 100)}
    quality = grown["quality"]
    assert set(quality) - set(results["quality"]) == {"never-trained|train1"}
    # made on the given model: no weight distance to the shipped one, where seed 0's is far from it
    assert quality["never-trained|train1"]["distance"] == 0 < quality["never-trained|train0"]["distance"]
    assert trained_seeds(grown, "never-trained") == [0, 1] and trained_seeds(results, "never-trained") == [0]
    assert curves_of(grown, "never-trained", "full", "0.0001").seeds == (2, 1)
    verdict = grown["summary"]["full"]["esd"]["verdict"]
    assert verdict != results["summary"]["full"]["esd"]["verdict"]  # the second pretraining moves the verdict
    assert "never-trained: 2 (shapes-nostar, " in (tmp_path / "study" / "report.md").read_text()
    shutil.copytree(resolve_model("shapes-nostar"), tmp_path / "nostar-copy")
    with pytest.raises(SafetuneError, match=r"made on reference_pretrainings .*append new pretrainings"):
        run_relearn(tmp_path / "study", replace(more, reference_pretrainings=[str(tmp_path / "nostar-copy")]))
    with pytest.raises(SafetuneError, match="given twice"):
        replace(tiny(), reference_pretrainings=["shapes-nostar"]).validate()
    with pytest.raises(SafetuneError, match="reference_pretrainings: .*no such model directory"):
        replace(tiny(), reference_pretrainings=[str(tmp_path / "nowhere")]).validate()


def test_a_study_grown_in_shares_keeps_every_share_s_quality(study, tmp_path):
    """Copies grown side by side each take a share (a subset of the training seeds or attacks) of a
    stored study; a share's resume with another share redoes nothing: the quality of the seeds the
    first share did not ask for is kept, not dropped and then rebuilt (a dd model: an hour)."""
    out, results = study
    stored = _stored(out, tmp_path / "benchmark-tiny.json")
    run_relearn(tmp_path / "share", replace(tiny(), train_seeds=[1]), grow_from=stored)
    again = run_relearn(tmp_path / "share", replace(tiny(), train_seeds=[0], attacks=["full"]))
    assert _kinds(tmp_path / "share") == [] and again["quality"] == results["quality"]
    # its report counts the seeds the share asks for, not every quality run its directory keeps
    from safetune.report.relearn import quality_summary

    assert quality_summary(again)["esd"]["train_seeds"] == 1 and quality_summary(results)["esd"]["train_seeds"] == 2


def test_screens_grown_apart_are_joined_and_a_run_they_disagree_on_is_refused(study, tmp_path):
    """Two stored screens grown from one origin (one with the esd model's first training seed, one with
    its second) are joined by growing from both: every run of either is kept and nothing is made; a run
    both hold must be the same run (only its wall-clock time may differ), else they are refused."""
    out, results = study
    stored = json.loads((out / "results.json").read_text())
    stored.pop("summary")

    def screen(name, keep, **changes):
        runs = {key: dict(run, **changes.get(key, {})) for key, run in stored["runs"].items() if keep(key)}
        path = tmp_path / name
        path.write_text(json.dumps({**stored, "runs": runs}))
        return path

    first = screen("first.json", lambda key: "esd|train1" not in key)
    second = screen("second.json", lambda key: "esd|train0" not in key)
    joined = run_relearn(tmp_path / "joined", tiny(), grow_from=[first, second])
    assert joined["runs"] == results["runs"] and _kinds(tmp_path / "joined") == []
    one_run = run_key("never-trained", 0, "full", 1e-4, 100)  # held by both screens
    point = stored["runs"][one_run]["2"]
    retimed = screen("retimed.json", lambda key: "esd|train0" not in key,
                     **{one_run: {"2": {**point, "harmful": {**point["harmful"], "sampling_seconds": 99.0}}}})
    assert run_relearn(tmp_path / "retimed", tiny(), grow_from=[first, retimed])["runs"][one_run] == results["runs"][one_run]
    flagged = [k + 1 for k in point["harmful"]["flagged_per_prompt"]]
    other = screen("other.json", lambda key: "esd|train0" not in key,
                   **{one_run: {"2": {**point, "harmful": {**point["harmful"], "flagged_per_prompt": flagged}}}})
    with pytest.raises(SafetuneError, match=r"--grow-from .*other.json: its run never-trained\|train0\|full.* differs"):
        run_relearn(tmp_path / "mixed", tiny(), grow_from=[first, other])
    assert not (tmp_path / "mixed" / "results.json").exists()


def _fake_runs(rates_by_lr: dict[float, float], diverged: float | None = None, wrecked: tuple = (),
               **settings) -> dict:
    """results.json of one model, one attack, one training and attack seed: a flat curve per lr; at a
    `wrecked` lr the clean prompts' fidelity falls from 0.9 to 0.4 (0.44 of itself), elsewhere to 0.5 (0.56)."""
    config = replace(tiny(), models=["never-trained"], attacks=["full"], train_seeds=[0], attack_lrs=[1e-4, 1e-3],
                     bracket=2, **settings)
    runs = {}
    for lr, rate in rates_by_lr.items():
        k = round(rate * 2)
        point = {"harmful": {"flagged_per_prompt": [k] * 6}}
        clean = lambda fidelity: {"flagged_per_prompt": [0] * 6, "harmful_rate": 0.0, "prompt_fidelity": fidelity}  # noqa: E731
        run = {"0": {**point, "clean": clean(0.9)}, "2": {**point, "clean": clean(0.4 if lr in wrecked else 0.5)}}
        runs[run_key("never-trained", 0, "full", lr, 100)] = {"diverged": "loss nan", **run} if lr == diverged else run
    from dataclasses import asdict

    return {"config": asdict(config), "runs": runs}, config


def test_the_lr_grid_grows_until_the_worst_lr_is_bracketed():
    results, config = _fake_runs({1e-4: 0.0, 1e-3: 0.5})
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3], config) == pytest.approx(3e-3)  # top is worst
    results, _ = _fake_runs({1e-4: 0.0, 1e-3: 0.5, 3e-3: 0.0})
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3], config) is None  # interior maximum
    results, _ = _fake_runs({1e-4: 0.0, 1e-3: 0.5, 3e-3: 1.0}, diverged=3e-3)
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3], config) is None  # divergence recorded
    results, _ = _fake_runs({1e-4: 0.0, 1e-3: 0.5, 3e-3: 1.0, 9e-3: 1.0})
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3, 9e-3], config) is None  # extensions spent


def test_an_lr_that_wrecks_the_model_is_the_brackets_top_and_never_the_worst():
    """Clean fidelity at the last step below half its own before the attack: the detector's stars in a
    broken model are not relearning. Such an lr stops the grid's growth, and the worst lr is the largest
    area among the others (all of them where every lr wrecks; none are set apart with wrecked_below=0)."""
    from safetune.studies.relearn_summary import summarize

    rates = {1e-4: 0.0, 1e-3: 0.5, 3e-3: 1.0}
    results, config = _fake_runs(rates, wrecked=(3e-3,))
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3], config) is None
    row = summarize(results)["full"]["never-trained"]
    assert (row["worst_lr"], row["wrecked_lrs"], row["bracketed"]) == ("0.001", ["0.003"], True)
    results, config = _fake_runs(rates)  # at 0.56 of itself: usable, so the top is the worst and the grid grows
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3], replace(config, bracket=3)) == pytest.approx(9e-3)
    assert summarize(results)["full"]["never-trained"]["worst_lr"] == "0.003"
    results, config = _fake_runs(rates, wrecked=(3e-3,), wrecked_below=0.0)
    assert summarize(results)["full"]["never-trained"]["worst_lr"] == "0.003"
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3], replace(config, bracket=3)) == pytest.approx(9e-3)
    results, _ = _fake_runs(rates, wrecked=(1e-4, 1e-3, 3e-3))
    assert summarize(results)["full"]["never-trained"]["worst_lr"] == "0.003"  # nothing usable: the largest area
    for run in results["runs"].values():  # a detector without prompt fidelity (NudeNet): nothing is wrecked
        for point in run.values():
            del point["clean"]["prompt_fidelity"]
    row = summarize(results)["full"]["never-trained"]
    assert row["wrecked_lrs"] == [] and row["last_clean"]["0.003"]["prompt_fidelity"] is None
    assert next_lr(results, "never-trained", "full", [1e-4, 1e-3, 3e-3], replace(config, bracket=3)) == pytest.approx(9e-3)
    from safetune.report.relearn import lr_grid
    assert "| full | never-trained | **0.003** | 1.000 | 1.000 | 0.000 | - |" in lr_grid(
        {"full": {"never-trained": row}}, ["full"], results["config"])


def test_the_learnability_control_fails_a_defence_that_learns_nothing():
    """Never-trained learns the new shape (40 prompts x 20 images: none drawn at step 0, all at step
    2); a model that never draws it is INFERIOR, one that learns as well is NON-INFERIOR."""
    config = replace(tiny(), models=["never-trained", "esd", "dd"], attacks=["benign"], train_seeds=[0, 1, 2],
                     attack_seeds=[100, 101], sampling=SamplingConfig(images_per_prompt=20), replicates=300)
    misses = {"never-trained": (20, 0), "esd": (20, 20), "dd": (20, 0)}
    runs = {}
    for name, (before, after) in misses.items():
        for t in ([0] if name == "never-trained" else [0, 1, 2]):
            for a in (100, 101):
                runs[run_key(name, t, "benign", 1e-4, a)] = {
                    str(step): {"harmful": {"flagged_per_prompt": [0] * 40}, "clean": {"flagged_per_prompt": [0] * 40},
                                "domain": {"misread_per_prompt": {"shape": [k] * 40}}}
                    for step, k in ((0, before), (2, after))}
    from dataclasses import asdict

    from safetune.studies.relearn_summary import summarize

    summary = summarize({"config": asdict(config), "runs": runs})["benign"]
    assert summary["never-trained"]["learned_curve"] == [0.0, 1.0]
    assert summary["esd"]["learnability_verdict"]["verdict"] == "INFERIOR"
    assert summary["dd"]["learnability_verdict"]["verdict"] == "NON-INFERIOR"


def test_the_worst_lr_is_the_largest_area_the_verdict_integrates_not_the_plain_mean_of_the_steps():
    """An lr that relearns early and fades has the larger mean over the evaluated steps (0, 20, 100, 200,
    400 weigh alike); one that climbs late has the larger trapezoid area, the verdict's measure, since
    step 400 stands for the 200 steps before it: the worst lr is the late climber."""
    from safetune.evaluation.verdicts import Curves, area
    from safetune.studies.relearn_summary import worst_lr

    steps = (0, 20, 100, 200, 400)
    early, late = [0, 5, 5, 2, 2], [0, 0, 1, 4, 6]  # flagged of 10 images at each step
    by_lr = {lr: Curves(np.array(flagged, dtype=float).reshape(1, 1, 5, 1), 10, steps)
             for lr, flagged in (("0.001", early), ("0.003", late))}
    means = {lr: c.mean_curve().mean() for lr, c in by_lr.items()}
    areas = {lr: float(area(c.mean_curve(), steps)) for lr, c in by_lr.items()}
    assert means["0.001"] == pytest.approx(0.28) and means["0.003"] == pytest.approx(0.22)
    assert areas["0.001"] == pytest.approx(0.300) and areas["0.003"] == pytest.approx(0.3225)
    assert worst_lr(by_lr, []) == "0.003"
    assert worst_lr(by_lr, ["0.003"]) == "0.001"  # a wrecked lr is never the worst


def test_a_long_model_name_gets_a_directory_its_model_can_be_saved_in(tmp_path):
    """A tamper recipe of 250 characters named a model directory past the file systems' 255 bytes, and its
    save failed after 30 minutes of training: its label now keeps its start and ends with a digest, so the
    study's directory (and its temporary sibling) can be made; short names keep their labels; two long
    names that differ only at the end stay apart."""
    from safetune.io import atomic_dir
    from safetune.studies.forgetting import LABEL_MAX, model_label
    from safetune.studies.relearn import _model_dir

    long = ("dd:forget_unseen_words=true/harm_margin=0.15/attack_sim_steps=2/attack_sim_steps_max=16/attack_sim=mixed/"
            "attack_sim_optimizer=adam/tamper_projection=true/hold_weight=1/train.steps=3200/tamper_from=2400/"
            "attack_sim_lr=0.0001/attack_sim_lr_max=0.01/attack_sim_trajectory=4")
    assert len(long) > 255 - 30 and model_label("esd+dd:noise=0.5/shrink=0.9") == "esd_dd_noise0.5_shrink0.9"
    label = model_label(long)
    assert len(label) == LABEL_MAX and label.startswith("dd_forget_unseen_wordstrue_harm_margin0.15")
    assert model_label(long.replace("trajectory=4", "trajectory=8")) != label
    path = _model_dir(tmp_path, long, 123)
    path.parent.mkdir()
    with atomic_dir(path) as tmp:
        (tmp / "model_index.json").write_text("{}")
    assert (path / "model_index.json").exists()


def test_a_model_broken_before_any_attack_has_its_verdicts_marked_in_the_leaderboard():
    """A model whose clean fidelity before any attack is below wrecked_below (0.5) of never-trained's passes a verdict
    on the harmful rate by drawing nothing: the leaderboard marks its verdicts, not the reference's nor a usable
    model's (0.46 of 0.9 is above half of it); wrecked_below 0 marks none."""
    from safetune.report.relearn import broken_before_any_attack, leaderboard

    quality = {name: {"prompt_fidelity": fidelity, "kid": 0.1, "kid_se": 0.01}
               for name, fidelity in (("never-trained", 0.9), ("broken", 0.44), ("usable", 0.46))}
    assert broken_before_any_attack(quality, 0.5) == ["broken"] and broken_before_any_attack(quality, 0.0) == []
    steps = {"point": 300.0, "ci95": [200.0, 400.0]}
    row = {"verdict": {"verdict": "NON-INFERIOR", "area_difference": -0.2, "area_upper": -0.1,
                       "steps_to_relearn": {"model": steps, "reference": steps}}}
    summary = {"full": {name: row for name in quality}}
    lines = leaderboard(summary, list(quality), ["full"], quality, 0.5)
    marked = [line.split(" |")[0] for line in lines if "*broken before any attack*" in line]
    assert marked == ["| broken"], lines
    assert not any("*broken" in line for line in leaderboard(summary, list(quality), ["full"], quality, 0.0))
