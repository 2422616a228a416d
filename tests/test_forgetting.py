"""LT / NG losses: gradients, the reference mode's missing gradient, class centres, attack resume."""
import copy
from pathlib import Path

import pytest
import torch

from safetune.checkpoint import step_generator
from safetune.config import ForgettingConfig, TrainConfig
from safetune.models.conditioning import encode_text, training_scheduler
from safetune.stages.lt_ng import ForgettingLoss
from safetune.train import prepare_trainable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    from safetune.models.tiny import assemble_pipeline, build_components

    p = assemble_pipeline(build_components(seed=3))
    p.set_progress_bar_config(disable=True)
    return p


def make_loss(pipe, **kw):
    g = torch.Generator().manual_seed(0)
    clean, harm = torch.randn(8, 4, 8, 8, generator=g), torch.randn(8, 4, 8, 8, generator=g) + 1
    return ForgettingLoss(clean, encode_text(pipe, ["a red circle"] * 8), harm, encode_text(pipe, ["a star"] * 8),
                          training_scheduler(pipe), 4, ForgettingConfig(**kw))


def grads(pipe, **kw):
    unet = copy.deepcopy(pipe.unet)
    params = prepare_trainable(unet, TrainConfig(mode="lora", targets="attn"))
    with torch.no_grad():  # give B a value so that A's gradient is not zero either
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01, generator=torch.Generator().manual_seed(1))
    loss_fn = make_loss(pipe, **kw)
    loss = loss_fn(unet, 0, step_generator(0, 0))
    loss.backward()
    return torch.cat([p.grad.flatten() for p in params]), loss_fn


@pytest.mark.parametrize("variant", ["lt", "ng"])
def test_contrastive_term_sends_gradient(pipe, variant):
    # LT's +-100 shift makes the classes far apart, so the margin is set beyond it to test the hinge too
    margin = 1000.0 if variant == "lt" else 50.0
    g_on, loss_fn = grads(pipe, variant=variant, mode="contrastive", margin=margin, lambda_total=1.0)
    g_off, _ = grads(pipe, variant=variant, mode="off")
    assert g_on.abs().sum() > 0 and g_off.abs().sum() > 0
    assert (g_on - g_off).abs().max() > 1e-6 * g_off.abs().max()
    assert loss_fn.last["contrastive"] > 0 and loss_fn.last["inter"] > 0


@pytest.mark.parametrize("variant", ["lt", "ng"])
def test_reference_mode_gets_no_gradient_from_contrastive_or_harmful(pipe, variant):
    g_ref, _ = grads(pipe, variant=variant, mode="reference", lambda_total=1.0)
    g_off, _ = grads(pipe, variant=variant, mode="off", harmful_denoising_weight=0.0)
    torch.testing.assert_close(g_ref, g_off)
    g_harm, _ = grads(pipe, variant=variant, mode="off", harmful_denoising_weight=1.0)
    assert (g_harm - g_off).abs().max() > 0


def test_harm_margin_is_a_bounded_ascent(pipe):
    """Below the margin the hinge pushes the harmful error up; once above it, it sends nothing."""
    g_off, _ = grads(pipe, variant="lt", mode="off")
    g_low, loss_fn = grads(pipe, variant="lt", mode="off", harm_margin=1e-6)
    assert loss_fn.last["mse_harm_attacked"] > 1e-6
    torch.testing.assert_close(g_low, g_off, rtol=0, atol=0)
    g_high, _ = grads(pipe, variant="lt", mode="off", harm_margin=100.0, harm_margin_weight=1.0)
    assert (g_high - g_off).abs().max() > 1e-3 * g_off.abs().max()
    # a step along -gradient of the hinge alone raises the harmful error on the same batch
    unet = copy.deepcopy(pipe.unet)
    params = prepare_trainable(unet, TrainConfig(mode="full"))
    hinge = make_loss(pipe, variant="lt", harm_margin=100.0)
    before = hinge._harm_hinge(unet, step_generator(0, 0))
    before.backward()
    with torch.no_grad():
        for p in params:
            p -= 1e-3 * p.grad.sign()
    after = hinge._harm_hinge(unet, step_generator(0, 0))
    assert after.item() < before.item() - 1e-4  # hinge = margin - error: lower hinge, higher error


def test_attack_simulation_is_first_order_and_descends(pipe):
    """k simulated attack steps of size 0 change nothing; real steps lower the harmful error that the
    hinge then sees, and the hinge's gradient at the attacked weights reaches the real ones."""
    kw = dict(variant="ng", mode="off", harm_margin=100.0)
    g_plain, plain = grads(pipe, **kw)
    g_zero, zero = grads(pipe, **kw, attack_sim_steps=2, attack_sim_lr=0.0)
    assert zero.last["mse_harm_attacked"] == pytest.approx(plain.last["mse_harm_attacked"], rel=1e-6)
    torch.testing.assert_close(g_zero, g_plain)
    g_sim, sim = grads(pipe, **kw, attack_sim_steps=2, attack_sim_lr=1e-3)
    assert sim.last["mse_harm_attacked"] < plain.last["mse_harm_attacked"]
    assert (g_sim - g_plain).abs().max() > 1e-3 * g_plain.abs().max()
    # the attacker's own optimiser (Adam's moments over the 2 steps) reaches LT/NG's hinge too
    _, adam = grads(pipe, **kw, attack_sim_steps=2, attack_sim_lr=1e-3, attack_sim_optimizer="adam")
    assert adam.last["mse_harm_attacked"] < plain.last["mse_harm_attacked"]
    assert adam.last["mse_harm_attacked"] != sim.last["mse_harm_attacked"]


def test_class_centres_are_running_means(pipe):
    loss_fn = make_loss(pipe, variant="ng", centre_momentum=0.75)
    z = {}
    real = loss_fn._update_centre

    def spy(cls, batch):
        z.setdefault(cls, []).append(batch.detach().mean(0))
        return real(cls, batch)

    loss_fn._update_centre = spy
    unet = copy.deepcopy(pipe.unet)
    for step in range(2):
        loss_fn(unet, step, step_generator(0, step))
    for cls in ("clean", "harm"):
        torch.testing.assert_close(loss_fn.centres[cls], 0.75 * z[cls][0] + 0.25 * z[cls][1])
    assert not loss_fn.centres["clean"].requires_grad


def test_fixed_noise_repeats_per_image(pipe):
    """Fixed noise: an image gets the same noise whenever it is drawn (whatever the step); changing
    noise differs between draws; the two classes never share noise."""
    fixed, changing = make_loss(pipe, noise="fixed"), make_loss(pipe, noise="changing")
    draws = [fixed._draw("clean", torch.Generator().manual_seed(s)) for s in range(40)]
    first = {}
    for x0, noise, _, _ in draws:
        for k in range(len(x0)):
            key = x0[k].sum().item()
            if key in first:
                torch.testing.assert_close(noise[k], first[key])
            first[key] = noise[k]
    assert len(first) < sum(len(d[0]) for d in draws)  # some image was drawn twice
    a = changing._draw("clean", torch.Generator().manual_seed(0))[1]
    b = changing._draw("clean", torch.Generator().manual_seed(1))[1]
    assert not torch.equal(a, b)
    harm = fixed._draw("harm", torch.Generator().manual_seed(0))[1]
    assert not any(torch.equal(harm[0], n) for n in first.values())


def test_attack_schedule_resumes_in_the_middle(pipe, tmp_path):
    """Malicious fine-tuning killed between two scheduled evaluations resumes to the same snapshots."""
    from safetune.stages import finetune

    images = torch.rand(8, 3, 32, 32) * 2 - 1
    texts = ["a star"] * 8
    config = TrainConfig(steps=6, lr=1e-3, batch_size=4, mode="full", checkpoint_every=1, save_at=[0, 2, 6])

    def run(ckpt, kill_at=None):
        p = copy.deepcopy(pipe)
        snaps = {}

        def on_save(step, unet):
            snaps[step] = unet.conv_out.weight.detach().clone()
            if step == kill_at:
                raise KeyboardInterrupt

        try:
            finetune(p, images, texts, config, checkpoint_dir=ckpt, on_save=on_save)
        except KeyboardInterrupt:
            return snaps, False
        return snaps, True

    straight, _ = run(tmp_path / "a")
    first, done = run(tmp_path / "b", kill_at=2)
    assert not done and set(first) == {0, 2}
    second, done = run(tmp_path / "b")
    assert done and set(second) == {2, 6}  # step 2's evaluation is redone (the kill came before its checkpoint)
    for step in (2, 6):
        torch.testing.assert_close(second[step], straight[step], rtol=0, atol=1e-6)
    torch.testing.assert_close(first[0], straight[0])


def test_attack_simulation_without_a_harm_margin_is_refused(pipe):
    from safetune.errors import SafetuneError

    with pytest.raises(SafetuneError, match="harm_margin=M"):
        make_loss(pipe, attack_sim_steps=2)


@pytest.mark.slow  # 57 s: every model x attack x seed; the default suite grows, resumes and merges a smaller one
def test_forgetting_study_attacks_each_model_with_seeds_and_reports_steps_to_relearn(tmp_path):
    """A miniature study: every model gets an evaluation at every attack step for every attack, lr and
    seed; safe training changes the weights the attack starts from; the report is written."""
    from safetune.config import SamplingConfig
    from safetune.studies.forgetting import ForgettingStudyConfig, run_forgetting

    tiny = TrainConfig(steps=3, lr=1e-3, batch_size=4, mode="full", checkpoint_every=10**9)
    config = ForgettingStudyConfig(
        models=["esd", "dd:noise=0.5", "lt"], reference="shapes", attacks=["full", "lora"], attack_lrs=[1e-4],
        attack_seeds=[0, 1], attack_steps=[0, 2], n_data=16, prompts_per_set=2, benign_domains=["sparkle"],
        sampling=SamplingConfig(images_per_prompt=1, steps=4), safe_train=tiny, distill_train=tiny,
        benign=TrainConfig(steps=2, batch_size=4, mode="lora", checkpoint_every=10**9),
        full_attack=TrainConfig(batch_size=4, mode="full", checkpoint_every=10**9),
        lora_attack=TrainConfig(batch_size=4, mode="lora", checkpoint_every=10**9),
        esd=TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="lora", targets="xattn"), skip_unsafe=False)
    results = run_forgetting(tmp_path, config)
    for name in config.models:
        for attack in ("full", "lora"):
            seeds = results["models"][name]["attacks"][attack]["0.0001"]
            assert sorted(seeds) == ["seed0", "seed1"]
            for curve in seeds.values():
                assert sorted(curve) == ["0", "2"] and "clean" in curve["0"]
        summary = results["summary"][name]["full"]
        assert summary["worst_lr"] == "0.0001" and len(summary["steps_to_relearn_per_seed"]) == 2
    before = {n: results["models"][n]["before"]["clean"]["fid"] for n in config.models}
    assert len(set(before.values())) == 3  # each model's own training happened before the attack
    assert "sparkle" in results["models"]["dd:noise=0.5"]["benign"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "models" / "dd_noise0.5").is_dir()
    report = (tmp_path / "report.md").read_text()
    assert "Steps to relearn" in report
    assert_tables_well_formed(report)
    check_merge_of_split_runs(results, tmp_path)


def tiny_forgetting():
    """Two models, one attack, one lr and seed, two steps: seconds."""
    from safetune.config import SamplingConfig
    from safetune.studies.forgetting import ForgettingStudyConfig

    tiny = TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="full", checkpoint_every=10**9)
    return ForgettingStudyConfig(
        models=["never-trained", "esd"], reference="shapes", attacks=["full"], attack_lrs=[1e-4], attack_seeds=[0],
        attack_steps=[0, 2], n_data=8, prompts_per_set=2, benign_domains=[],
        sampling=SamplingConfig(images_per_prompt=1, steps=3), safe_train=tiny, distill_train=tiny,
        full_attack=TrainConfig(batch_size=4, mode="full", checkpoint_every=10**9),
        esd=TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="lora", targets="xattn"), skip_unsafe=False)


def test_a_forgetting_study_grows_in_place_and_refuses_other_settings(tmp_path):
    """More attack seeds: only the new runs are made, the earlier ones kept as they were; another
    attack_steps (every run would differ) is refused, naming it, and nothing changes."""
    from dataclasses import replace

    from safetune.errors import SafetuneError
    from safetune.studies.forgetting import run_forgetting

    first = run_forgetting(tmp_path, tiny_forgetting())
    runs_before = len(list((tmp_path / "runs").iterdir()))
    grown = run_forgetting(tmp_path, replace(tiny_forgetting(), attack_seeds=[0, 1]))
    assert len(list((tmp_path / "runs").iterdir())) == runs_before + 2  # seed 1 of each model, nothing else
    for name in ("never-trained", "esd"):
        slot = grown["models"][name]["attacks"]["full"]["0.0001"]
        assert sorted(slot) == ["seed0", "seed1"] and slot["seed0"] == first["models"][name]["attacks"]["full"]["0.0001"]["seed0"]
    before = (tmp_path / "results.json").read_text()
    with pytest.raises(SafetuneError, match=r"attack_steps \(\[0, 2\] -> \[0, 3\]\)"):
        run_forgetting(tmp_path, replace(tiny_forgetting(), attack_seeds=[0, 1], attack_steps=[0, 3]))
    assert (tmp_path / "results.json").read_text() == before
    (tmp_path / "merge").mkdir()
    check_merge_of_split_runs(grown, tmp_path / "merge")  # the full matrix's merge check, on this smaller study


def assert_tables_well_formed(markdown: str) -> None:
    """Every row of every markdown table has as many cells as its header."""
    width = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = line.strip().strip("|").count("|") + 1
        width = width or cells
        assert cells == width, line


def check_merge_of_split_runs(results: dict, tmp_path) -> None:
    """scripts/merge_forgetting.py: two directories holding one part of the models each give the
    same summary as the one study, and runs of another protocol are refused."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("merge_forgetting", ROOT / "scripts" / "merge_forgetting.py")
    merge_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge_script)
    names = list(results["models"])
    parts = []
    for i, keep in enumerate((names[:1], names[1:])):
        part = {**results, "models": {n: results["models"][n] for n in keep}}
        (tmp_path / f"part{i}").mkdir()
        (tmp_path / f"part{i}" / "results.json").write_text(json.dumps(part))
        parts.append(tmp_path / f"part{i}")
    merge_script.main(str(tmp_path / "merged"), [str(p) for p in parts])
    merged = json.loads((tmp_path / "merged" / "merged.json").read_text())
    assert json.dumps(merged["summary"], sort_keys=True) == json.dumps(results["summary"], sort_keys=True)
    assert_tables_well_formed((tmp_path / "merged" / "report.md").read_text())
    with pytest.raises(SystemExit, match="already comes from an earlier directory"):
        merge_script.merge([parts[0], parts[0]])  # the same attacks twice
    later = json.loads((parts[0] / "results.json").read_text())
    name = names[0]
    later["models"][name]["attacks"] = {"full": {"0.001": later["models"][name]["attacks"]["full"]["0.0001"]}}
    later["config"]["attack_lrs"] = [1e-3]
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "results.json").write_text(json.dumps(later))
    both = merge_script.merge([parts[0], tmp_path / "later"])  # a second pass at another lr joins the first
    assert sorted(both["models"][name]["attacks"]["full"]) == ["0.0001", "0.001"]
    assert both["config"]["attack_lrs"] == [1e-4, 1e-3]
    assert both["model_settings"][name]["distill_train"] == later["config"]["distill_train"]
    later["config"]["attack_steps"] = [0, 5]
    (tmp_path / "later" / "results.json").write_text(json.dumps(later))
    with pytest.raises(SystemExit, match="attack_steps"):
        merge_script.merge([parts[0], tmp_path / "later"])


def test_steps_to_relearn_interpolates_and_says_never():
    from safetune.studies.forgetting import steps_to_relearn

    assert steps_to_relearn({0: 0.1, 20: 0.3, 100: 0.7}, 0.5) == pytest.approx(60.0)
    assert steps_to_relearn({0: 0.6, 20: 0.9}, 0.5) == 0.0
    assert steps_to_relearn({0: 0.0, 400: 0.49}, 0.5) is None


def test_versus_reference_tells_below_from_noise_from_above():
    """yes: every mean at or below the reference's; within noise: above by 1 image in 600; no: above
    beyond the pooled interval, naming the step."""
    from safetune.report.forgetting import versus_reference

    def curve(rates):
        return {"per_lr": {"1e-4": {str(s): {"mean": r, "pooled": r, "n_images": 600} for s, r in rates.items()}},
                "worst_lr": "1e-4"}

    ref = curve({0: 0.0, 20: 0.05, 100: 0.10})
    summary = {"never-trained": {"full": ref},
               "below": {"full": curve({0: 0.0, 20: 0.04, 100: 0.10})},
               "noise": {"full": curve({0: 1 / 600, 20: 0.05, 100: 0.10})},
               "above": {"full": curve({0: 0.0, 20: 0.20, 100: 0.30})}}
    assert versus_reference(summary, "below", "full") == "yes"
    assert versus_reference(summary, "noise", "full") == "within noise"
    assert versus_reference(summary, "above", "full") == "no (step 20: 0.20 vs 0.05)"
    assert versus_reference(summary, "never-trained", "full") == "-"
    assert versus_reference(summary, "below", "lora") == "-"
