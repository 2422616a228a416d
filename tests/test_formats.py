"""Every LoRA is brought to one naming (diffusers' module paths) when it is read, whatever its layout;
two entries for one module and non-finite weights are refused; every `lora` subcommand reads and
writes every layout."""
import json

import pytest
import torch
from safetensors.torch import save_file

from safetune.cli import main
from safetune.errors import SafetuneError
from safetune.lora.formats import canonical_name
from safetune.lora.weights import LoRA, pipeline_modules
from safetune.models.tiny import tiny_random_pipeline


@pytest.mark.parametrize("family", ["shapes", "sdxl"])
def test_kohya_names_of_every_module_read_back_as_diffusers_paths(family, shipped_pipe):
    pipe = shipped_pipe if family == "shapes" else tiny_random_pipeline("sdxl")
    linear = {n: m for n, m in pipeline_modules(pipe).items() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
    state = {}
    for full in linear:
        component, _, rest = canonical_name(full).partition(".")
        key = prefix[component] + rest.replace(".", "_")
        state[key + ".lora_down.weight"], state[key + ".lora_up.weight"] = torch.zeros(1, 1), torch.zeros(1, 1)
    names = set(LoRA.from_state_dict(state).factors)
    assert names == {canonical_name(n) for n in linear} and len(names) > 100


def test_one_module_in_two_layouts_is_refused_not_dropped(tmp_path):
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    kohya = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    state = {f"{module}.lora_A.weight": torch.ones(2, 8), f"{module}.lora_B.weight": torch.ones(4, 2),
             f"{kohya}.lora_down.weight": torch.ones(2, 8), f"{kohya}.lora_up.weight": torch.ones(4, 2)}
    with pytest.raises(SafetuneError, match="given twice"):
        LoRA.from_state_dict(state)


def test_non_finite_weights_are_refused(tmp_path, capsys):
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    save_file({f"{module}.lora_A.weight": torch.full((2, 64), float("nan")),
               f"{module}.lora_B.weight": torch.ones(32, 2)}, str(tmp_path / "nan.safetensors"))
    assert main(["evaluate", "--lora", str(tmp_path / "nan.safetensors"), "--prompts", "harmful", "--limit", "1",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "nan.safetensors" in err and not (tmp_path / "e").exists()


def test_lora_tools_read_and_write_kohya_exactly(shipped_pipe, tmp_path):
    g = torch.Generator().manual_seed(0)
    factors = {n: (torch.randn(2, m.weight.shape[1], generator=g), torch.randn(m.weight.shape[0], 2, generator=g))
               for n, m in pipeline_modules(shipped_pipe).items()
               if n.endswith("attn2.to_v") or (n.startswith("text_encoder") and n.endswith("self_attn.q_proj"))}
    lora = LoRA(factors)
    lora.save(tmp_path / "k.safetensors", layout="kohya")
    for fmt in ("kohya", "diffusers"):
        assert main(["lora", "negate", str(tmp_path / "k.safetensors"), "--format", fmt,
                     "--out", str(tmp_path / f"neg-{fmt}.safetensors")]) == 0
        negated = LoRA.load(tmp_path / f"neg-{fmt}.safetensors")
        assert set(negated.factors) == {canonical_name(n) for n in factors}
        for name in factors:
            torch.testing.assert_close(negated.delta(canonical_name(name)), -lora.delta(name))
    assert main(["lora", "combine", str(tmp_path / "k.safetensors"), f"{tmp_path / 'neg-kohya.safetensors'}:1",
                 "--format", "kohya", "--out", str(tmp_path / "zero.safetensors")]) == 0
    zero = LoRA.load(tmp_path / "zero.safetensors")
    assert max(float(zero.delta(n).abs().max()) for n in zero.factors) < 1e-4


def test_kohya_and_diffusers_copies_of_one_lora_inspect_alike(shipped_pipe, tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    lora = LoRA({n: (torch.randn(2, m.weight.shape[1], generator=g), torch.randn(m.weight.shape[0], 2, generator=g))
                 for n, m in pipeline_modules(shipped_pipe).items() if n.endswith("attn2.to_k")})
    lora.save(tmp_path / "d.safetensors")
    lora.save(tmp_path / "k.safetensors", layout="kohya")
    assert main(["lora", "inspect", str(tmp_path / "d.safetensors"), str(tmp_path / "k.safetensors"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cosine"] == pytest.approx(1.0, abs=1e-5) and all("cosine" in r for r in report["modules"].values())


def test_a_lora_in_the_layout_of_diffusers_training_script_reads_back_exactly(shipped_pipe, tmp_path):
    """train_text_to_image_lora.py saves with StableDiffusionPipeline.save_lora_weights: its keys are
    read as the same modules and factors (the guard and compose see exactly what diffusers loads)."""
    from diffusers import StableDiffusionPipeline

    g = torch.Generator().manual_seed(2)
    lora = LoRA({n: (torch.randn(4, m.weight.shape[1], generator=g), torch.randn(m.weight.shape[0], 4, generator=g))
                 for n, m in pipeline_modules(shipped_pipe).items() if n.startswith("unet.") and n.endswith("to_q")})
    layers = {k[len("unet."):]: v for k, v in lora.state_dict().items()}
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=layers, weight_name="pytorch_lora_weights.safetensors")
    read = LoRA.load(tmp_path / "pytorch_lora_weights.safetensors")
    assert set(read.factors) == set(lora.factors)
    for name in lora.factors:
        torch.testing.assert_close(read.delta(name), lora.delta(name))


def test_lora_convert_changes_the_layout_only_and_inspect_labels_both_files(shipped_pipe, tmp_path, capsys):
    g = torch.Generator().manual_seed(3)
    mods = pipeline_modules(shipped_pipe)
    a = LoRA({n: (torch.randn(2, m.weight.shape[1], generator=g), torch.randn(m.weight.shape[0], 2, generator=g))
              for n, m in mods.items() if n.endswith("attn2.to_k")})
    b = LoRA({n: (torch.randn(2, m.weight.shape[1], generator=g), torch.randn(m.weight.shape[0], 2, generator=g))
              for n, m in mods.items() if n.endswith(("attn2.to_k", "attn1.to_q"))})
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    assert main(["lora", "convert", str(tmp_path / "a.safetensors"), "--format", "kohya",
                 "--out", str(tmp_path / "a-kohya.safetensors")]) == 0
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "a-kohya.safetensors"))
    assert all(k.startswith("lora_unet_") for k in keys)
    converted = LoRA.load(tmp_path / "a-kohya.safetensors")
    for name in a.factors:
        assert torch.equal(converted.factors[name][0], a.factors[name][0])  # the same factors, no arithmetic
    assert main(["lora", "convert", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    capsys.readouterr()
    assert main(["lora", "inspect", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out
    only_b = [line for line in out.splitlines() if "attn1.to_q" in line]
    assert only_b and all("A: -" in line and "B: rank 2" in line for line in only_b)
    assert "A = " in out and "B = " in out and "total norm A" in out and " B " in out
    assert main(["lora", "subtract", "--help"]) == 0 and "A - B" in capsys.readouterr().out
