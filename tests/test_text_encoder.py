"""Text-encoder fine-tuning: a LoRA on CLIP's attention that plain diffusers loads, composes like a
UNet LoRA; full mode trains the encoder in place; frozen encoders keep the cached-embedding path."""
import copy

import pytest
import torch

from safetune.config import TrainConfig
from safetune.data.folder import load_training_data
from safetune.lora.weights import LoRA, merge_into, pipeline_modules
from safetune.stages import finetune


@pytest.fixture(scope="module")
def pipe():
    from safetune.models.tiny import assemble_pipeline, build_components

    pipe = assemble_pipeline(build_components(seed=3))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def data():
    return load_training_data("sparkle", 32, n=16)


@pytest.fixture(scope="module")
def te_lora(pipe, data):
    config = TrainConfig(steps=3, lr=5e-2, batch_size=4, mode="lora", train_text_encoder=True, checkpoint_every=10**9)
    return finetune(copy.deepcopy(pipe), *data, config)


def _weights(pipe, names):
    from safetune.lora.formats import resolve_names

    modules = pipeline_modules(pipe)
    model_name = resolve_names({n: n for n in names}, modules)  # files say text_model., transformers 5 does not
    return {n: getattr(modules[m], "base_layer", modules[m]).weight.detach().clone() for m, n in model_name.items()}


def test_text_encoder_lora_sits_on_clip_attention_and_is_trained(te_lora):
    te = [n for n in te_lora.factors if n.startswith("text_encoder.")]
    unet = [n for n in te_lora.factors if n.startswith("unet.")]
    assert len(te) == 2 * 4 and unet  # 2 layers x q/k/v/out_proj, plus the UNet's attention
    assert all(n.endswith(("q_proj", "k_proj", "v_proj", "out_proj")) for n in te)
    assert sum(float(te_lora.delta(n).norm()) for n in te) > 1e-4  # B left zero would mean untrained


def test_text_encoder_lora_file_loads_in_plain_diffusers(pipe, te_lora, tmp_path):
    path = te_lora.save(tmp_path / "te.safetensors")
    ours = copy.deepcopy(pipe)
    merge_into(ours, [(LoRA.load(path), 1.0)])
    theirs = copy.deepcopy(pipe)
    theirs.load_lora_weights(str(path))
    theirs.fuse_lora()
    names = list(te_lora.factors)
    w_ours, w_theirs, w0 = _weights(ours, names), _weights(theirs, names), _weights(pipe, names)
    for n in names:
        torch.testing.assert_close(w_ours[n], w_theirs[n], rtol=1e-5, atol=1e-6)
    changed = [n for n in names if n.startswith("text_encoder.") and not torch.equal(w_ours[n], w0[n])]
    assert len(changed) == 8


def test_text_encoder_lora_composes_and_subtracts_exactly(pipe, te_lora):
    model = copy.deepcopy(pipe)
    merge_into(model, [(te_lora, 1.0), (te_lora, -1.0)])  # W0 + dW - dW = W0
    names = list(te_lora.factors)
    w, w0 = _weights(model, names), _weights(pipe, names)
    for n in names:
        torch.testing.assert_close(w[n], w0[n], rtol=0, atol=1e-6)
    doubled = te_lora + te_lora
    name = next(n for n in names if n.startswith("text_encoder."))
    torch.testing.assert_close(doubled.delta(name), 2 * te_lora.delta(name), rtol=1e-5, atol=1e-6)


def test_full_mode_trains_the_text_encoder_only_when_asked(pipe, data):
    before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    for train_te in (False, True):
        model = copy.deepcopy(pipe)
        config = TrainConfig(steps=2, lr=1e-2, batch_size=4, mode="full", train_text_encoder=train_te,
                             checkpoint_every=10**9)
        assert finetune(model, *data, config) is None
        after = model.text_encoder.state_dict()
        moved = sum(not torch.equal(after[k], before[k]) for k in before)
        if train_te:
            assert moved > 0.5 * len(before)
        else:
            assert moved == 0
        assert not any("lora_" in k for k in after)
