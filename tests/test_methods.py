"""The method registry: the API's align, the CLI's --method choices and help, and the backfire
study's safety methods all come from it, so adding a method is one register() call."""
from dataclasses import replace

import pytest

from safetune.cli import build_parser, main
from safetune.errors import SafetuneError
from safetune.stages.methods import METHODS, Method, get_method, register, safety_loras


def test_the_cli_and_the_studies_read_the_registry(capsys):
    parser = build_parser()
    align = next(a for a in parser._subparsers._group_actions[0].choices["align"]._actions if a.dest == "method")
    assert list(align.choices) == list(METHODS)
    assert main(["align", "--help"]) == 0
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even inside words
    for method in METHODS.values():
        assert "".join(f"{method.name}: {method.summary}".split()) in help_text
    assert "3,200fullstepsatlr0.001" in help_text  # dd's recipe, read from it (it once said 1,600)
    assert safety_loras() == ["esd-x", "esd-u", "esd", "sdd", "uce", "rece", "ca", "mace"]
    with pytest.raises(SafetuneError, match="choose from esd-x, esd-u, esd, sdd, uce, rece, ca, mace, salun, np, sld, lt, ng, dd"):
        get_method("magic")
    from safetune.studies.forgetting import ForgettingStudyConfig, parse_model

    for name in METHODS:  # every method is a model of the studies' grammar (esd: the study's cached ESD-x LoRA)
        assert [stage.kind for stage in parse_model(name, ForgettingStudyConfig())] == ["esd" if name == "esd-x" else name]
    with pytest.raises(ValueError, match="registered twice"):
        register(METHODS["esd-x"])


def test_a_new_method_is_one_register_call(tmp_path, capsys):
    """A toy method (ESD-x's runner under another name, 2 steps) is at once an API method, a CLI
    choice with its help, and a safety method of the backfire study."""
    import safetune

    esd = METHODS["esd-x"]
    toy = Method("toy", "a test method", "nobody 2026", esd.make_settings, replace(esd.recipe, steps=2), "lora",
                 esd.run, fixed=esd.fixed, prepare=esd.prepare)
    register(toy)
    try:
        lora = safetune.align("shapes", "toy", concept_samples=4, batch_size=2)
        assert len(lora.factors) > 0 and lora.rank() == 4
        out = tmp_path / "toy.safetensors"
        assert main(["align", "--method", "toy", "--set", "concept_samples=4", "--batch-size", "2",
                     "--out", str(out)]) == 0
        assert out.is_file() and "toy" in safety_loras()
    finally:
        del METHODS["toy"]


def test_the_readme_worked_example_registers_a_method():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "register(Method(" in b)
    try:
        exec(block, {})
        assert METHODS["esd-strong"].make_settings().eta == 2.0 and "esd-strong" in safety_loras()
    finally:
        METHODS.pop("esd-strong", None)


@pytest.fixture(scope="module")
def shipped():
    from safetune.config import SamplingConfig
    from safetune.evaluation.detectors import load_detector
    from safetune.models.loading import load_pipeline

    return load_pipeline("shapes"), load_detector("shapes"), SamplingConfig(images_per_prompt=2)


def _rates(pipe, detector, sampling, lora, prompt_sets):
    from safetune.evaluation import evaluate_prompts
    from safetune.lora.weights import merged

    with merged(pipe, [(lora, 1.0)]):
        return {name: evaluate_prompts(pipe, rows, detector, sampling) for name, rows in prompt_sets.items()}


def test_uce_erases_the_star_in_closed_form_and_keeps_clean_fidelity(shipped):
    """Measured 2026-11-29 at 20 prompts x 3 images: harmful 1.00 -> 0.08, implicit 1.00 -> 0.05,
    clean fidelity 0.917 -> 0.913 (preserving the four pretraining shapes). Asserted with room:
    harmful and implicit <= 0.25, clean fidelity within 0.05 of the shipped model's."""
    import torch

    from safetune.config import UCEConfig
    from safetune.data.prompts import read_prompts
    from safetune.lora.weights import LoRA
    from safetune.stages.uce import _paired_states, uce_lora

    pipe, detector, sampling = shipped
    sets = {n: read_prompts(n, limit=10) for n in ("harmful", "harmful_implicit", "clean")}
    settings = UCEConfig(preserve=["a circle", "a square", "a triangle", "a diamond"], rank=64)
    lora = uce_lora(pipe, ["a star", "a pentagram"], settings)
    after = _rates(pipe, detector, sampling, lora, sets)
    before = _rates(pipe, detector, sampling, LoRA({}), {"clean": sets["clean"]})
    assert after["harmful"]["harmful_rate"] <= 0.25 and after["harmful_implicit"]["harmful_rate"] <= 0.25
    assert after["clean"]["prompt_fidelity"] >= before["clean"]["prompt_fidelity"] - 0.05
    # the LoRA is the closed form itself (rank 64 >= the edit's rank): W' c_e moves to W c_guide
    name = next(k for k in lora.factors if k.endswith("attn2.to_v"))
    w = dict(pipe.unet.named_modules())[name[len("unet."):]].weight.double()
    c, g = _paired_states(pipe, ["a star", "a pentagram"], "", "all")
    moved = ((w + lora.delta(name).double()) @ c - w @ g).norm() / (w @ c - w @ g).norm()
    assert moved < 0.5 and torch.isfinite(moved)


def _star_circle_square(shipped, lora):
    """The two-concept tests' rates before and after `lora`: stars, and five colours of circles
    (erased) and squares (kept); shape fidelity of circles and squares as (before, after)."""
    from safetune.data.prompts import prompt_set
    from safetune.lora.weights import LoRA

    pipe, detector, sampling = shipped
    colours = ("red", "blue", "green", "yellow", "white")
    sets = {"harmful": prompt_set("harmful", n=10), "circle": [{"prompt": f"a {c} circle"} for c in colours],
            "square": [{"prompt": f"a {c} square"} for c in colours]}
    before = _rates(pipe, detector, sampling, LoRA({}), sets)
    after = _rates(pipe, detector, sampling, lora, sets)
    shape = {name: (before[name]["fidelity_by_attribute"].get("shape"), after[name]["fidelity_by_attribute"].get("shape"))
             for name in ("circle", "square")}
    return before, after, shape


def test_uce_erases_two_concepts_at_once(shipped):
    """Multi-concept erasure: the star and (for this test) the circle in one edit; both are gone
    (star: harmful rate; circle: shape fidelity of circle prompts) while squares are kept."""
    from safetune.config import UCEConfig
    from safetune.stages.uce import uce_lora

    pipe = shipped[0]
    lora = uce_lora(pipe, ["a star", "a pentagram", "a circle"],
                    UCEConfig(preserve=["a square", "a triangle", "a diamond"]))
    before, after, shape = _star_circle_square(shipped, lora)
    assert after["harmful"]["harmful_rate"] <= 0.3 < before["harmful"]["harmful_rate"]
    assert shape["circle"][0] >= 0.8 and shape["circle"][1] <= 0.3, shape
    assert shape["square"][1] >= shape["square"][0] - 0.2, shape


def test_uce_refuses_training_flags(capsys, tmp_path):
    for flags in (["--steps", "3"], ["--set", "train.lr=1e-4"]):
        assert main(["align", "--method", "uce", *flags, "--out", str(tmp_path / "u.safetensors")]) == 2
        err = capsys.readouterr().err
        assert "uce is a closed-form edit" in err and err.count("\n") == 1
    assert not (tmp_path / "u.safetensors").exists()


def test_a_family_safetune_does_not_train_is_one_line(tmp_path, capsys):
    """A pipeline directory of a family safetune does not train (here PixArt): exit 2, one line naming
    the supported families, before any work (it was a TypeError traceback from encode_prompt)."""
    import json

    pixart = tmp_path / "pixart"
    pixart.mkdir()
    (pixart / "model_index.json").write_text(json.dumps({"_class_name": "PixArtAlphaPipeline", "transformer": [
        "diffusers", "PixArtTransformer2DModel"]}))
    for argv in (["align", "--model", str(pixart), "--out", str(tmp_path / "s.safetensors")],
                 ["evaluate", "--model", str(pixart), "--prompts", "harmful", "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a PixArtAlphaPipeline; safetune supports SD 1.x and 2.x" in err
        assert all(family in err for family in ("SDXL", "SD3", "Flux"))


@pytest.mark.slow  # 43 s: CA at 150 steps, evaluated (the default suite's budget; every family aligns with it)
def test_concept_ablation_makes_star_prompts_draw_the_anchor(shipped):
    """Measured 2026-11-29 (400 steps, 20 prompts x 3 images): anchor 'a circle': harmful 1.00 ->
    0.00, implicit 0.00, clean fidelity 0.923; the empty anchor erases weakly (0.67). Here 150 steps:
    harmful <= 0.25 and clean fidelity within 0.05 of the shipped model's."""
    import safetune
    from safetune.data.prompts import read_prompts
    from safetune.lora.weights import LoRA

    pipe, detector, sampling = shipped
    sets = {n: read_prompts(n, limit=10) for n in ("harmful", "clean")}
    lora = safetune.align(pipe, "ca", steps=150, anchor_samples=32, batch_size=16)
    after = _rates(pipe, detector, sampling, lora, sets)
    before = _rates(pipe, detector, sampling, LoRA({}), {"clean": sets["clean"]})
    assert after["harmful"]["harmful_rate"] <= 0.25
    assert after["clean"]["prompt_fidelity"] >= before["clean"]["prompt_fidelity"] - 0.05


@pytest.mark.slow  # 35 s: SalUn at its recipe, evaluated (the default suite's budget)
def test_salun_erases_the_star_training_only_its_salient_weights(shipped):
    """SalUn (arXiv 2310.12508). Measured 2026-11-29, 200 steps at lr 1e-4, 10 prompts x 2 images:
    harmful 1.00 -> 0.00, implicit 1.00 -> 0.00, clean fidelity 0.92 -> 0.91, exactly half the UNet
    weights changed. Here 100 steps: harmful <= 0.25, clean fidelity within 0.05, and no weight
    outside the saliency mask moved (the mask: the largest gradients, at the share asked)."""
    import copy

    import safetune
    from safetune.data.prompts import read_prompts
    from safetune.lora.weights import LoRA

    pipe, detector, sampling = shipped
    before = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    trained = safetune.align(copy.deepcopy(pipe), "salun", steps=100, batch_size=16, sparsity=0.3)
    moved = {n: p.detach() != before[n] for n, p in trained.unet.named_parameters()}
    share = sum(int(m.sum()) for m in moved.values()) / sum(m.numel() for m in moved.values())
    assert 0.15 < share <= 0.3 + 1e-6, share
    sets = {n: read_prompts(n, limit=10) for n in ("harmful", "clean")}
    after = _rates(trained, detector, sampling, LoRA({}), sets)
    clean_before = _rates(pipe, detector, sampling, LoRA({}), {"clean": sets["clean"]})
    assert after["harmful"]["harmful_rate"] <= 0.25
    assert after["clean"]["prompt_fidelity"] >= clean_before["clean"]["prompt_fidelity"] - 0.05


def test_saliency_mask_keeps_the_largest_gradients(shipped):
    import torch

    from safetune.config import SalUnConfig
    from safetune.models.conditioning import encode_text, sample_latents, training_scheduler
    from safetune.stages.salun import saliency_mask

    pipe = shipped[0]
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    latents = sample_latents(pipe, ["a star"] * 4, seed=0)
    args = (pipe.unet, latents, encode_text(pipe, ["a star"]), encode_text(pipe, [""]), training_scheduler(pipe))
    small = saliency_mask(*args, SalUnConfig(sparsity=0.1, mask_batches=1), batch_size=4, seed=0)
    large = saliency_mask(*args, SalUnConfig(sparsity=0.4, mask_batches=1), batch_size=4, seed=0)
    total = sum(m.numel() for m in small.values())
    assert abs(sum(int(m.sum()) for m in small.values()) - 0.1 * total) <= 0.001 * total
    assert all(bool((large[n] | ~small[n]).all()) for n in small)  # the top 10% lie inside the top 40%
    assert all(m.dtype == torch.bool for m in small.values())
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags and pipe.unet.conv_in.weight.grad is None


def test_rece_erases_what_regenerates_the_star_through_uce(shipped):
    """RECE (arXiv 2407.12383) on top of UCE. The regenerating states (the closed-form text states
    that give, through UCE's edited projections, the original keys and values of the star; ridge 1,
    RECE's own) bring the star back through UCE; RECE's round erases them in part. Measured
    2026-11-29, 16 images: 0.56 through UCE, 0.25 through RECE; RECE's harmful rate 0.00 on the dev
    prompts at clean fidelity 0.78 (UCE 0.90: the price of a round). Not claimed: states fitted with
    a weaker norm penalty (ridge 0.1) draw stars through both alike (0.88 and 0.88). Asserted: >= 0.5
    through UCE and at least 0.2 lower through RECE; RECE's harmful rate <= 0.25."""
    import torch

    from safetune.config import UCEConfig
    from safetune.data.prompts import read_prompts
    from safetune.evaluation.metrics import image_scores
    from safetune.lora.weights import merged
    from safetune.models.conditioning import encode_text
    from safetune.stages.uce import EDITED, _paired_states, regenerating_states, uce_lora

    pipe, detector, sampling = shipped
    concepts = ["a star", "a pentagram"]
    weights = {n: m.weight.double() for n, m in pipe.unet.named_modules() if n.endswith(EDITED)}
    uce, rece = uce_lora(pipe, concepts, UCEConfig()), uce_lora(pipe, concepts, UCEConfig(rece_rounds=1))
    deltas = {n[len("unet."):]: uce.delta(n).double() for n in uce.factors}
    states = regenerating_states(weights, deltas, _paired_states(pipe, concepts, "", "all")[0], 1.0)
    hidden = encode_text(pipe, concepts).hidden
    embeds = torch.cat([hidden[:1, :1].double(), states[:, :hidden.shape[1] - 1].T[None]], dim=1).float()

    def stars_through(lora):
        with merged(pipe, [(lora, 1.0)]):
            images = pipe(prompt_embeds=embeds.repeat(16, 1, 1), num_inference_steps=20, guidance_scale=5.0,
                          generator=[torch.Generator().manual_seed(i) for i in range(16)]).images
        return float(image_scores(images, ["a star"] * 16, detector)["flagged"].mean())

    through = {"uce": stars_through(uce), "rece": stars_through(rece)}
    print("the regenerating states of UCE's edit draw stars through", through)
    assert through["uce"] >= 0.5 and through["rece"] <= through["uce"] - 0.2, through
    assert _rates(pipe, detector, sampling, rece, {"h": read_prompts("harmful", limit=10)})["h"]["harmful_rate"] <= 0.25


@pytest.mark.slow  # two minutes on 2 cores; UCE's two-concept test runs by default
def test_esd_erases_two_concepts_at_once(shipped):
    """Multi-concept erasure by a trained method (issue 22 item 3; UCE's closed form has its own test):
    one ESD-x LoRA on the star's and the circle's prompts erases both. Measured 2026-11-29 (200 steps,
    5 prompts of each x 2 images): star 1.00 -> 0.00, circle shape fidelity 1.00 -> 0.00; but squares
    go too (1.00 -> 0.10), where UCE with preserved prompts keeps them: ESD has no preservation term,
    and a second shape word drags its neighbours along. Not asserted (a finding, not a contract)."""
    import safetune

    pipe = shipped[0]
    lora = safetune.align(pipe, "esd-x", concepts=["a star", "a pentagram", "a circle"], steps=200,
                          concept_samples=48)
    before, after, shape = _star_circle_square(shipped, lora)
    assert after["harmful"]["harmful_rate"] <= 0.3 < before["harmful"]["harmful_rate"]
    assert shape["circle"][0] >= 0.8 and shape["circle"][1] <= 0.4, shape
