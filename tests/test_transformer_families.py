"""SD3 and Flux (issue 23): rectified-flow training, joint-attention LoRA targets, diffusers' LoRA
layouts and every command, on tiny pipelines built from config with random weights (no download)."""
import copy
import json

import pytest
import torch

from safetune.cli import main
from safetune.config import SafetyLoraConfig, TrainConfig
from safetune.errors import SafetuneError
from safetune.lora.formats import resolve_names
from safetune.lora.weights import LoRA, merged, pipeline_modules
from safetune.models.conditioning import (
    FlowMatching,
    denoiser,
    denoising_target,
    encode_text,
    family_of,
    noised,
    predict,
    predicted_x0,
    training_scheduler,
)
from safetune.models.tiny import tiny_random_pipeline
from safetune.stages import align_lora

FAMILIES = ["sd3", "flux"]


@pytest.fixture(scope="module", params=FAMILIES)
def pipe(request):
    pipe = tiny_random_pipeline(request.param)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_flow_target_is_what_diffusers_samples_back_to_x0(pipe):
    """x_t as diffusers' own scheduler noises it, and a perfect prediction of our target, stepped by the
    pipeline's sampler down to sigma 0, gives x0 back (a wrong sign or scale of the target would not)."""
    scheduler = training_scheduler(pipe)
    assert isinstance(scheduler, FlowMatching) and family_of(pipe) in FAMILIES
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 4, 8, 8, generator=gen)
    xt, noise, t = noised(scheduler, x0, gen)
    reference = type(pipe.scheduler).from_config(pipe.scheduler.config)
    for i in range(len(x0)):
        ours = xt[i:i + 1]
        theirs = reference.scale_noise(x0[i:i + 1], t[i:i + 1], noise[i:i + 1])
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    target = denoising_target(scheduler, x0, noise, t)
    torch.testing.assert_close(predicted_x0(scheduler, xt, target, t), x0, rtol=1e-4, atol=1e-4)
    sampler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=1.0)  # sigma_t is shifted already
    sampler.set_timesteps(sigmas=[float(t[0]) / 1000], device="cpu")  # one Euler step from sigma_t to 0
    assert sampler.sigmas.tolist() == pytest.approx([float(t[0]) / 1000, 0.0])
    stepped = sampler.step(target[:1], sampler.timesteps[0], xt[:1]).prev_sample
    torch.testing.assert_close(stepped, x0[:1], rtol=1e-4, atol=1e-4)


def test_flux_prediction_packs_latents_as_its_pipeline_does():
    """`predict` on Flux (2x2 patches as tokens, position ids) equals the transformer called the way
    FluxPipeline calls it, unpacked as it unpacks."""
    from diffusers import FluxPipeline

    flux = tiny_random_pipeline("flux")
    cond = encode_text(flux, ["a star", "a red circle"])
    gen = torch.Generator().manual_seed(1)
    xt = torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([700.0, 250.0])
    with torch.no_grad():
        ours = predict(flux.transformer, xt, t, cond)
        packed = FluxPipeline._pack_latents(xt, 2, 4, 8, 8)
        ids = FluxPipeline._prepare_latent_image_ids(2, 4, 4, "cpu", xt.dtype)
        theirs = flux.transformer(hidden_states=packed, timestep=t / 1000, guidance=cond.added["guidance"],
                                  pooled_projections=cond.added["pooled_projections"], encoder_hidden_states=cond.hidden,
                                  txt_ids=torch.zeros(cond.hidden.shape[1], 3), img_ids=ids).sample
        theirs = FluxPipeline._unpack_latents(theirs, 32, 32, flux.vae_scale_factor)
    torch.testing.assert_close(ours, theirs)
    assert ours.shape == xt.shape and not torch.allclose(ours[0], ours[1])


def test_esd_x_trains_the_text_stream_and_erases_the_concept_more_than_a_clean_prompt(pipe):
    """ESD-x on joint attention: the LoRA sits on the text stream's projections only, and it moves the
    concept's prediction toward its erasure target e_u - (e_c - e_u) much more than it moves a clean
    prompt's toward that prompt's own (measured: SD3 53% vs 18% closer, Flux 22% vs -1%)."""
    cfg = TrainConfig(steps=40, lr=1e-2, batch_size=4, mode="lora", targets="xattn", checkpoint_every=10**9)
    safe = align_lora(copy.deepcopy(pipe), "esd-x", ["a star"], cfg, SafetyLoraConfig(concept_samples=4))
    assert safe.factors and all(n.startswith("transformer.") and ".attn." in n and
                                n.rsplit(".", 1)[-1] in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
                                for n in safe.factors)
    gen = torch.Generator().manual_seed(0)
    xt, _, t = noised(training_scheduler(pipe), torch.randn(16, 4, 8, 8, generator=gen), gen)
    model, empty = denoiser(pipe), encode_text(pipe, [""]).repeat(16)
    closer = {}
    with torch.no_grad():
        for prompt in ("a star", "a red circle"):
            c = encode_text(pipe, [prompt]).repeat(16)
            e_u, e_c = predict(model, xt, t, empty), predict(model, xt, t, c)
            target = 2 * e_u - e_c
            with merged(pipe, [(safe, 1.0)]):
                after = predict(model, xt, t, c)
            closer[prompt] = 1 - float((after - target).norm() / (e_c - target).norm())
    assert closer["a star"] > 0.15 and closer["a star"] > 2 * max(closer["a red circle"], 0.0), closer


def test_a_flux_lora_in_black_forest_labs_names_reads_as_diffusers_loads_it(tmp_path):
    """A kohya-style Flux LoRA (fused qkv of `double_blocks`) is converted as diffusers converts it:
    the weights safetune merges equal those of plain FluxPipeline.load_lora_weights + fuse_lora."""
    from safetensors.torch import save_file

    flux = tiny_random_pipeline("flux")
    gen = torch.Generator().manual_seed(2)
    dim, rank = 32, 4
    state = {}
    for key, out in (("lora_unet_double_blocks_0_img_attn_qkv", 3 * dim), ("lora_unet_double_blocks_0_txt_attn_qkv", 3 * dim),
                     ("lora_unet_double_blocks_0_img_attn_proj", dim)):
        state[f"{key}.lora_down.weight"] = torch.randn(rank, dim, generator=gen) * 0.1
        state[f"{key}.lora_up.weight"] = torch.randn(out, rank, generator=gen) * 0.1
        state[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(state, str(tmp_path / "kohya_flux.safetensors"))
    lora = LoRA.load(tmp_path / "kohya_flux.safetensors")
    assert {n.split(".attn.")[-1] for n in lora.factors} == {"to_q", "to_k", "to_v", "to_out.0", "add_q_proj",
                                                               "add_k_proj", "add_v_proj"}
    ours = copy.deepcopy(flux)
    with merged(ours, [(lora, 1.0)]):
        mine = {n: pipeline_modules(ours)[n].weight.clone() for n in lora.factors}
    plain = copy.deepcopy(flux)
    plain.load_lora_weights(str(tmp_path / "kohya_flux.safetensors"))
    plain.fuse_lora()
    plain.unload_lora_weights()
    theirs = pipeline_modules(plain)
    for name, weight in mine.items():
        torch.testing.assert_close(weight, theirs[name].weight, rtol=1e-5, atol=1e-6)


def test_a_lora_saved_by_diffusers_own_scripts_composes_and_the_guard_reads_it(pipe, tmp_path):
    """The DreamBooth-LoRA scripts' layout (peft adapter, `save_lora_weights`): safetune reads it, the
    guard's overlap sees a cancelling one (-dW_safe) in it and FAILs it, and passes the weights check of
    an unrelated one to the measurement (CANNOT JUDGE without it), as on SD 1.x."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from safetune.config import GuardConfig, SamplingConfig
    from safetune.evaluation.guard import audit_composition

    cfg = TrainConfig(steps=2, lr=1e-2, batch_size=2, mode="lora", targets="xattn", checkpoint_every=10**9)
    safe = align_lora(copy.deepcopy(pipe), "esd-x", ["a star"], cfg, SafetyLoraConfig(concept_samples=2))
    for kind in ("cancelling", "unrelated"):
        model = copy.deepcopy(pipe)
        model.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                                 target_modules=["to_q", "to_k", "to_v", "add_k_proj", "add_v_proj"]))
        with torch.no_grad():
            for name, module in model.transformer.named_modules():
                if hasattr(module, "lora_B"):
                    full = f"transformer.{name}"
                    if kind == "cancelling" and full in safe.factors:
                        a, b = safe.factors[full]
                        module.lora_A["default"].weight.copy_(torch.cat([a, torch.zeros(4 - a.shape[0], a.shape[1])]))
                        module.lora_B["default"].weight.copy_(-torch.cat([b, torch.zeros(b.shape[0], 4 - b.shape[1])], 1))
                    else:
                        module.lora_B["default"].weight.normal_(0, 0.01)
        type(pipe).save_lora_weights(tmp_path / kind, transformer_lora_layers=get_peft_model_state_dict(model.transformer))
        lora = LoRA.load(tmp_path / kind / "pytorch_lora_weights.safetensors")
        assert all(n.startswith("transformer.") for n in lora.factors)
        result = audit_composition(pipe, safe, [(lora, 1.0)], GuardConfig(), SamplingConfig(steps=2), measure=False)
        if kind == "cancelling":
            assert result["verdict"] == "FAIL" and result["weights"]["overlap"] > 0.9, result["weights"]
        else:
            assert result["verdict"] == "CANNOT JUDGE" and abs(result["weights"]["overlap"]) < 0.5


def test_every_command_runs_on_a_saved_pipeline_and_diffusers_reads_what_it_writes(pipe, tmp_path, capsys):
    """align, finetune (LoRA and full), compose, lora subtract, evaluate and generate on a saved SD3 /
    Flux directory; plain diffusers loads the LoRA (fused weights equal safetune's merge) and the
    composed directory; what a family does not have is refused in one line (exit 2)."""
    from diffusers import DiffusionPipeline

    model = tmp_path / "model"
    pipe.save_pretrained(model)
    safe, ft, composed = tmp_path / "safe.safetensors", tmp_path / "ft.safetensors", tmp_path / "composed"
    small = ["--steps", "3", "--batch-size", "2"]
    assert main(["-q", "align", "--model", str(model), "--method", "esd-x", "--set", "concept_samples=2",
                 "--out", str(safe), *small]) == 0
    assert main(["-q", "finetune", "--model", str(model), "--data", "harmful", "--n", "8", "--lr", "1e-2",
                 "--out", str(ft), *small]) == 0
    assert main(["-q", "finetune", "--model", str(model), "--data", "harmful", "--n", "8", "--mode", "full",
                 "--out", str(tmp_path / "full"), *small]) == 0
    assert main(["-q", "compose", "--model", str(model), "--lora", str(safe), "--lora", str(ft),
                 "--out", str(composed)]) == 0
    assert main(["-q", "lora", "subtract", str(ft), str(safe), "--out", str(tmp_path / "diff.safetensors")]) == 0
    assert main(["-q", "lora", "inspect", str(ft), str(safe)]) == 0
    # the guard: the user's LoRA passes its weights check (then the measurement decides: CANNOT JUDGE without
    # it); the LoRA that undoes the safety LoRA fails it
    assert main(["-q", "lora", "negate", str(safe), "--out", str(tmp_path / "undo.safetensors")]) == 0
    assert main(["-q", "audit", "--model", str(model), "--safety-lora", str(safe), "--lora", str(ft), "--no-measure",
                 "--out", str(tmp_path / "audit.json")]) == 1
    assert json.loads((tmp_path / "audit.json").read_text())["verdict"] == "CANNOT JUDGE"
    assert main(["-q", "audit", "--model", str(model), "--safety-lora", str(safe), "--lora",
                 str(tmp_path / "undo.safetensors"), "--no-measure", "--out", str(tmp_path / "undo.json")]) == 1
    assert json.loads((tmp_path / "undo.json").read_text())["verdict"] == "FAIL"
    assert main(["-q", "evaluate", "--model", str(composed), "--prompts", "harmful", "--limit", "2",
                 "--images-per-prompt", "1", "--steps", "2", "--out", str(tmp_path / "eval")]) == 0
    assert main(["-q", "generate", "--model", str(model), "--lora", str(safe), "--prompts", "harmful", "--limit", "1",
                 "--images-per-prompt", "1", "--steps", "2", "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "eval" / "results.json").is_file() and (tmp_path / "full" / "model_index.json").is_file()

    plain = DiffusionPipeline.from_pretrained(model)
    plain.load_lora_weights(str(ft))
    plain.fuse_lora()
    plain.unload_lora_weights()
    merged_dir = DiffusionPipeline.from_pretrained(composed)
    lora_ft, lora_safe = LoRA.load(ft), LoRA.load(safe)
    base, theirs, ours = pipeline_modules(pipe), pipeline_modules(plain), pipeline_modules(merged_dir)
    for name in lora_ft.factors:
        torch.testing.assert_close(theirs[name].weight, base[name].weight + lora_ft.delta(name), rtol=1e-5, atol=1e-6)
        expected = base[name].weight + lora_ft.delta(name) + (lora_safe.delta(name) if name in lora_safe.factors else 0)
        torch.testing.assert_close(ours[name].weight, expected, rtol=1e-5, atol=1e-6)
    assert any(torch.count_nonzero(lora_ft.delta(n)) for n in lora_ft.factors)

    capsys.readouterr()
    for argv in (["align", "--model", str(model), "--method", "uce", "--out", str(tmp_path / "u.safetensors")],
                 ["lora", "convert", str(ft), "--format", "kohya", "--out", str(tmp_path / "k.safetensors")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("SD3" in err or "Flux" in err or "kohya" in err), err
        assert "Traceback" not in err


def test_what_a_family_lacks_is_refused_in_one_line():
    """The adversarial prompt search optimises one CLIP's tokens, concept inversion learns one: on SD3
    and Flux they are refused with the reason, not a traceback."""
    from safetune.attacks.prompt_search import AdversarialConfig, attack_prompt
    from safetune.stages.inversion import InversionLoss

    flux = tiny_random_pipeline("flux")
    with pytest.raises(SafetuneError, match="works on SD 1.x/2.x pipelines, not Flux: it optimises tokens"):
        attack_prompt(flux, "a star", torch.zeros(1, 4, 8, 8), AdversarialConfig())
    with pytest.raises(SafetuneError, match="concept inversion works on SD 1.x/2.x pipelines, not Flux"):
        InversionLoss(flux, torch.zeros(1, 4, 8, 8), ["a <concept>"], 0, 1)


@pytest.mark.slow  # 15 s: a whole study on Flux
def test_the_relearning_benchmark_runs_on_a_flux_pipeline(tmp_path):
    """`study relearn` on a saved Flux directory with a Flux never-trained reference: every run of
    base, never-trained and ESD-x under a full, a LoRA and a retain-only attack is stored (the base
    model's runs failed with KeyError 'base' before, on every family)."""
    flux = tiny_random_pipeline("flux")
    flux.save_pretrained(tmp_path / "model")
    tiny_random_pipeline("flux", seed=1).save_pretrained(tmp_path / "never")
    assert main(["-q", "study", "relearn", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "study"),
                 "--set", "models=base,never-trained,esd", "--set", f"recipes.reference={tmp_path / 'never'}",
                 "--set", "train_seeds=0", "--set", "attacks=full,lora-r4,retain", "--set", "attack_lrs=0.001",
                 "--set", "bracket=0", "--set", "steps=0,2", "--set", "attack_seeds=100", "--set", "prompts_per_set=2",
                 "--set", "quality_prompts=2", "--set", "sampling.images_per_prompt=1", "--set", "sampling.steps=2",
                 "--set", "recipes.esd.steps=2"]) == 0
    runs = json.loads((tmp_path / "study" / "results.json").read_text())["runs"]
    # concept inversion (one CLIP's token) is refused for a Flux model before any work, in one line
    assert main(["-q", "study", "relearn", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "inv"),
                 "--set", "attacks=inversion", "--set", f"recipes.reference={tmp_path / 'never'}"]) == 2
    assert not (tmp_path / "inv" / "models").exists()
    assert sorted(runs) == sorted(f"{m}|train0|{a}|0.001|attack100" for m in ("base", "never-trained", "esd")
                                  for a in ("full", "lora-r4", "retain"))
    assert all(set(r) == {"0", "2"} for r in runs.values()), next(iter(runs.values()))


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_text_encoders_train_as_the_family_recipes_train_them(family, tmp_path):
    """--train-text-encoder trains both CLIPs of SDXL and SD3 and Flux's CLIP, never T5 (diffusers'
    DreamBooth-LoRA scripts' choice): a LoRA with text_encoder(_2) keys that plain load_lora_weights
    merges as safetune does; in full mode the CLIPs move and T5 stays bit for bit."""
    from safetune.stages import finetune

    pipe = tiny_random_pipeline(family)
    pipe.set_progress_bar_config(disable=True)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    cfg = TrainConfig(steps=3, lr=1e-2, batch_size=2, train_text_encoder=True, checkpoint_every=10**9)
    lora = finetune(copy.deepcopy(pipe), images, ["a red star", "a blue plus", "a star", "a plus"], cfg)
    components = {n.split(".")[0] for n in lora.factors}
    expected = {"flux": {"transformer", "text_encoder"}}.get(family, {"unet" if family == "sdxl" else "transformer",
                                                                     "text_encoder", "text_encoder_2"})
    assert components == expected
    for component in expected - {"unet", "transformer"}:  # each encoder learned (SDXL's and SD3's last CLIP
        # layers feed only the pooled embedding of one of them, so not every module moves)
        assert any(float(lora.delta(n).norm()) > 0 for n in lora.factors if n.split(".")[0] == component), component
    lora.save(tmp_path / "te.safetensors")
    plain = copy.deepcopy(pipe)
    plain.load_lora_weights(str(tmp_path / "te.safetensors"))
    plain.fuse_lora(components=sorted(expected))  # Flux's fuse_lora fuses only the transformer unless told
    plain.unload_lora_weights()
    base, theirs = pipeline_modules(pipe), pipeline_modules(plain)
    resolved = LoRA(resolve_names(lora.factors, base))  # files say "text_model.", transformers 5's modules do not
    for name in [n for n in resolved.factors if n.startswith("text_encoder")]:
        torch.testing.assert_close(theirs[name].weight, base[name].weight + resolved.delta(name), rtol=1e-5, atol=1e-6)

    full = copy.deepcopy(pipe)
    finetune(full, images, ["a red star"] * 4, TrainConfig(steps=2, lr=1e-3, batch_size=2, mode="full",
                                                            train_text_encoder=True, checkpoint_every=10**9))
    moved = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))  # noqa: E731
    assert moved(pipe.text_encoder, full.text_encoder)
    if family != "flux":
        assert moved(pipe.text_encoder_2, full.text_encoder_2)
    t5 = {"sd3": "text_encoder_3", "flux": "text_encoder_2"}.get(family)
    if t5:
        assert not moved(getattr(pipe, t5), getattr(full, t5))


def test_the_negative_prompt_changes_what_sd3_and_flux_draw(pipe):
    """`np` on SD3 (classifier-free guidance from the concept) and Flux (true CFG: its distilled guidance
    ignores a negative prompt otherwise): the same seed draws another image (measured: mean |pixel
    difference| 5.2 and 5.9 of 255 on the tiny pipelines)."""
    import numpy as np

    import safetune
    from safetune.config import SamplingConfig
    from safetune.evaluation.sampling import sample

    marked = safetune.align(copy.deepcopy(pipe), "np", concepts=["a star"])
    config = SamplingConfig(images_per_prompt=1, steps=2)
    plain, negative = (np.asarray(sample(p, [("a red star", 0, 5.0)], config)[0]).astype(float) for p in (pipe, marked))
    assert np.abs(plain - negative).mean() > 1.0


def test_a_cancelling_flux_lora_in_kohya_names_is_caught_by_the_guard(tmp_path):
    """The guard attacked through a layout: -dW_safe of a Flux safety LoRA rewritten in kohya's names
    (the text stream's q, k and v fused into one `txt_attn_qkv` module, block-diagonal) reads back to
    the same modules, and the weights check FAILs it as it FAILs the plain negation."""
    from safetensors.torch import save_file

    from safetune.config import GuardConfig, SamplingConfig
    from safetune.evaluation.guard import audit_composition

    flux = tiny_random_pipeline("flux")
    cfg = TrainConfig(steps=3, lr=1e-2, batch_size=2, mode="lora", targets="xattn", checkpoint_every=10**9)
    safe = align_lora(copy.deepcopy(flux), "esd-x", ["a star"], cfg, SafetyLoraConfig(concept_samples=2))
    block = "transformer.transformer_blocks.0.attn."
    a = {m: safe.factors[block + m][0] for m in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")}
    b = {m: -safe.factors[block + m][1] for m in a}
    qkv = ("add_q_proj", "add_k_proj", "add_v_proj")
    state = {"lora_unet_double_blocks_0_txt_attn_qkv.lora_down.weight": torch.cat([a[m] for m in qkv]),
             "lora_unet_double_blocks_0_txt_attn_qkv.lora_up.weight": torch.block_diag(*[b[m] for m in qkv]),
             "lora_unet_double_blocks_0_txt_attn_proj.lora_down.weight": a["to_add_out"],
             "lora_unet_double_blocks_0_txt_attn_proj.lora_up.weight": b["to_add_out"]}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "undo_kohya.safetensors"))
    undo = LoRA.load(tmp_path / "undo_kohya.safetensors")
    for m in a:
        torch.testing.assert_close(undo.delta(block + m), -safe.delta(block + m), rtol=1e-5, atol=1e-6)
    result = audit_composition(flux, safe, [(undo, 1.0)], GuardConfig(), SamplingConfig(steps=2), measure=False)
    assert result["verdict"] == "FAIL" and result["weights"]["overlap"] == pytest.approx(1.0, abs=1e-4)
