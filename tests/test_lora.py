"""LoRA files, composition and arithmetic: merged weights equal W0 + sum of scaled B @ A."""
import copy

import pytest
import torch
from safetensors.torch import save_file

from safetune.errors import SafetuneError
from safetune.lora.weights import LoRA, inspect, merge_into, pipeline_modules


@pytest.fixture(scope="module")
def random_pipe():
    from safetune.models.tiny import assemble_pipeline, build_components

    pipe = assemble_pipeline(build_components(seed=1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_lora(pipe, rank=4, seed=0, pattern="attn2.to_k"):
    g = torch.Generator().manual_seed(seed)
    factors = {}
    for name, m in pipeline_modules(pipe).items():
        if name.startswith("unet.") and name.endswith(pattern):
            out_f, in_f = m.weight.shape
            factors[name] = (torch.randn(rank, in_f, generator=g) * 0.1, torch.randn(out_f, rank, generator=g) * 0.1)
    return LoRA(factors)


def test_compose_is_exactly_w0_plus_scaled_products(random_pipe):
    a, b = random_lora(random_pipe, seed=1), random_lora(random_pipe, rank=2, seed=2)
    pipe = copy.deepcopy(random_pipe)
    merge_into(pipe, [(a, 1.0), (b, -0.5)])
    before, after = pipeline_modules(random_pipe), pipeline_modules(pipe)
    for name in a.factors:
        expected = before[name].weight + a.factors[name][1] @ a.factors[name][0] - 0.5 * b.factors[name][1] @ b.factors[name][0]
        torch.testing.assert_close(after[name].weight, expected, rtol=1e-5, atol=1e-6)
    untouched = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    assert torch.equal(after[untouched].weight, before[untouched].weight)


def test_arithmetic_is_exact(random_pipe):
    a, b = random_lora(random_pipe, seed=1), random_lora(random_pipe, seed=2)
    name = next(iter(a.factors))
    torch.testing.assert_close((a - b).delta(name), a.delta(name) - b.delta(name), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close((-a).delta(name), -a.delta(name))
    assert (a - b).rank() == 8
    cos = inspect(a, against=-a)["cosine"]
    assert cos == pytest.approx(-1.0, abs=1e-5)


def test_file_round_trip_and_plain_diffusers_loader(random_pipe, tmp_path):
    lora = random_lora(random_pipe, seed=3)
    path = lora.save(tmp_path / "l.safetensors")
    back = LoRA.load(path)
    for name in lora.factors:
        torch.testing.assert_close(back.delta(name), lora.delta(name))
    ours = copy.deepcopy(random_pipe)
    merge_into(ours, [(back, 1.0)])
    theirs = copy.deepcopy(random_pipe)
    theirs.load_lora_weights(str(path))
    theirs.fuse_lora()
    for name in lora.factors:
        w_ours = pipeline_modules(ours)[name].weight
        w_theirs = pipeline_modules(theirs)[name]
        w_theirs = getattr(w_theirs, "base_layer", w_theirs).weight
        torch.testing.assert_close(w_ours, w_theirs, rtol=1e-5, atol=1e-6)


def test_kohya_layout_with_alpha_is_read(random_pipe, tmp_path):
    lora = random_lora(random_pipe, rank=4, seed=4)
    state = {}
    for name, (a, b) in lora.factors.items():
        key = "lora_unet_" + name[len("unet."):].replace(".", "_")
        state[key + ".lora_down.weight"] = a
        state[key + ".lora_up.weight"] = b
        state[key + ".alpha"] = torch.tensor(2.0)  # scale alpha / rank = 0.5
    save_file(state, str(tmp_path / "k.safetensors"))
    pipe = copy.deepcopy(random_pipe)
    merge_into(pipe, [(LoRA.load(tmp_path / "k.safetensors"), 1.0)])
    name = next(iter(lora.factors))
    expected = pipeline_modules(random_pipe)[name].weight + 0.5 * lora.delta(name)
    torch.testing.assert_close(pipeline_modules(pipe)[name].weight, expected, rtol=1e-5, atol=1e-6)


def test_lora_for_another_base_is_refused(random_pipe):
    name = next(iter(random_lora(random_pipe).factors))
    wrong = LoRA({name: (torch.zeros(4, 17), torch.zeros(64, 4))})
    with pytest.raises(SafetuneError, match="another base model"):
        merge_into(copy.deepcopy(random_pipe), [(wrong, 1.0)])
    alien = LoRA({"unet.no.such.module": (torch.zeros(4, 8), torch.zeros(8, 4))})
    with pytest.raises(SafetuneError, match="not in this model"):
        merge_into(copy.deepcopy(random_pipe), [(alien, 1.0)])


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(SafetuneError, match="corrupt or truncated"):
        LoRA.load(bad)
    save_file({"model.weight": torch.zeros(2, 2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(SafetuneError, match="not LoRA weights"):
        LoRA.load(tmp_path / "foreign.safetensors")
