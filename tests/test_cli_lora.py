"""align -> finetune -> compose -> lora tools, end to end through the CLI on the shipped model."""
import json

import pytest
import torch

from safetune.lora.weights import LoRA


@pytest.fixture
def cli(run_cli):
    def ok(*args):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    return ok


def test_align_finetune_compose_and_arithmetic(tmp_path, cli):
    safe, ft = tmp_path / "safe.safetensors", tmp_path / "ft.safetensors"
    cli("align", "--method", "esd-x", "--steps", "3", "--batch-size", "4", "--out", str(safe))
    assert json.loads(safe.with_suffix(".json").read_text())["method"] == "esd-x"
    cli("finetune", "--data", "plus", "--n", "16", "--steps", "4", "--batch-size", "4", "--mode", "lora",
        "--save-at", "0,2,4", "--out", str(ft))
    assert sorted(p.name for p in (tmp_path / "ft.safetensors.steps").iterdir()) == [
        "step000000.safetensors", "step000002.safetensors", "step000004.safetensors"]
    assert not (tmp_path / "ft.safetensors.checkpoint").exists()

    out = cli("compose", "--lora", str(safe), "--lora", f"{ft}:0.5", "--out", str(tmp_path / "composed"))
    assert "composed" in out
    from diffusers import StableDiffusionPipeline

    from safetune.lora.weights import pipeline_modules
    from safetune.models.loading import load_pipeline

    composed = StableDiffusionPipeline.from_pretrained(tmp_path / "composed")
    base = load_pipeline("shapes")
    s, f = LoRA.load(safe), LoRA.load(ft)
    name = next(iter(s.factors))
    expected = pipeline_modules(base)[name].weight + s.delta(name) + 0.5 * (f.delta(name) if name in f.factors else 0)
    torch.testing.assert_close(pipeline_modules(composed)[name].weight, expected, rtol=1e-5, atol=1e-6)

    cli("lora", "subtract", str(safe), str(ft), "--out", str(tmp_path / "diff.safetensors"))
    diff = LoRA.load(tmp_path / "diff.safetensors")
    torch.testing.assert_close(diff.delta(name), s.delta(name) - (f.delta(name) if name in f.factors else 0))
    report = json.loads(cli("lora", "inspect", str(safe), str(tmp_path / "diff.safetensors"), "--json"))
    assert 0 < report["total_norm"] and -1 <= report["cosine"] <= 1


def test_full_finetune_writes_a_pipeline(tmp_path, cli):
    cli("finetune", "--data", "outline", "--n", "8", "--steps", "2", "--batch-size", "4", "--mode", "full",
        "--out", str(tmp_path / "full"))
    assert (tmp_path / "full" / "model_index.json").is_file()
    meta = json.loads((tmp_path / "full" / "safetune.json").read_text())
    assert meta["train"]["mode"] == "full" and meta["train"]["steps"] == 2


def test_align_lt_with_harm_margin_and_simulated_attack(tmp_path, cli):
    out = tmp_path / "lt.safetensors"
    cli("align", "--method", "lt", "--mode", "lora", "--n", "8", "--steps", "2", "--batch-size", "4",
        "--set", "harm_margin=0.5", "--set", "attack_sim_steps=1", "--set", "attack_sim_lr=1e-3", "--out", str(out))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["settings"]["harm_margin"] == 0.5 and meta["settings"]["attack_sim_steps"] == 1
    assert meta["settings"]["variant"] == "lt" and meta["train"]["mode"] == "lora"
    lora = LoRA.load(out)
    assert sum(lora.delta(n).abs().sum() for n in lora.factors) > 0


def test_align_side_file_records_the_modules_the_lora_sits_on(tmp_path, cli):
    """ESD-x trains on cross-attention: the side file said "attn" (the generic default) before."""
    out = tmp_path / "s.safetensors"
    cli("align", "--method", "esd-x", "--steps", "1", "--batch-size", "2", "--set", "concept_samples=2", "--out", str(out))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["train"]["targets"] == "xattn" and meta["train"]["mode"] == "lora"
    assert all(".attn2." in name for name in LoRA.load(out).factors)


def test_kohya_output_round_trips_through_our_reader_and_diffusers(tmp_path, cli):
    """`--format kohya` writes lora_unet_*/lora_te_* keys with .alpha (what AUTOMATIC1111 and ComfyUI
    read); our reader and diffusers' kohya conversion give back the same weights."""
    import copy

    from safetune.lora.weights import merge_into, pipeline_modules
    from safetune.models.loading import load_pipeline

    base = load_pipeline("shapes")
    g = torch.Generator().manual_seed(0)
    factors = {}
    for name, m in pipeline_modules(base).items():
        if name.endswith(("attn2.to_k", "attn1.to_out.0")) or ".self_attn." in name and name.endswith("proj"):
            factors[name] = (torch.randn(2, m.weight.shape[1], generator=g) * 0.1,
                             torch.randn(m.weight.shape[0], 2, generator=g) * 0.1)
    LoRA(factors).save(tmp_path / "d.safetensors")
    cli("lora", "combine", str(tmp_path / "d.safetensors"), "--format", "kohya", "--out", str(tmp_path / "k.safetensors"))
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "k.safetensors"))
    assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_") for k in keys)  # kohya's (and A1111's) names
    assert any(k.endswith(".alpha") for k in keys)
    ours = copy.deepcopy(base)
    merge_into(ours, [(LoRA.load(tmp_path / "k.safetensors"), 1.0)])
    theirs = copy.deepcopy(base)
    theirs.load_lora_weights(str(tmp_path / "k.safetensors"))
    theirs.fuse_lora()
    for name, (a, b) in factors.items():
        expected = pipeline_modules(base)[name].weight + b @ a
        torch.testing.assert_close(pipeline_modules(ours)[name].weight, expected, rtol=1e-5, atol=1e-6)
        module = pipeline_modules(theirs)[name]
        torch.testing.assert_close(getattr(module, "base_layer", module).weight, expected, rtol=1e-5, atol=1e-6)


def test_report_to_tensorboard_logs_loss_lr_and_the_harmful_rate(tmp_path, cli):
    """--report-to goes through accelerate's trackers: loss and lr every step, the harmful rate at
    the --save-at steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli("finetune", "--data", "harmful", "--n", "8", "--steps", "3", "--batch-size", "2", "--save-at", "0,3",
        "--report-to", "tensorboard", "--out", str(tmp_path / "ft.safetensors"))
    events = list((tmp_path / "ft.logs").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "lr", "harmful_rate"} <= tags, tags
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3]
    assert [e.step for e in acc.Scalars("harmful_rate")] == [0, 3]
