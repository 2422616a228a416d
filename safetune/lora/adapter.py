"""The peft side of a LoRA: which modules a training adapter sits on, adding it, reading the trained
factors back as a `LoRA`, and removing it so the model is a plain diffusers/transformers model again.

UNet targets follow the Stable Diffusion recipes (attention projections; ESD-x: cross-attention only;
ESD-u: everything but cross-attention). Transformer targets (SD3's MMDiT, Flux) mean the same on
joint attention, where text and image tokens attend together and each stream has its own projections:

    attn       every attention projection of both streams (diffusers' DreamBooth-LoRA targets for SD3 and
               Flux: to_q/k/v/out.0 and add_q/k/v_proj/to_add_out; Flux's single blocks: to_q/k/v)
    xattn      the text stream's projections (add_q/k/v_proj, to_add_out): the way the prompt enters the
               image, as cross-attention's are in a UNet (UCE on MMDiT edits add_k/v_proj for this reason)
    xattn-kv   cross-attention's keys and values (UNet: attn2.to_k/to_v; transformers: add_k/v_proj): MACE's
    non-xattn  the image stream's attention and feed-forward (and Flux's single-stream blocks)

Text-encoder targets are CLIP's attention projections (q/k/v/out_proj), as diffusers' and kohya's
text-encoder LoRA recipes use.
"""
from __future__ import annotations

import re

import torch

from ..errors import SafetuneError
from .formats import canonical_name
from .weights import LoRA

ADAPTER = "safetune"
UNET_TARGETS = {
    "attn": r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$",
    "xattn": r"attn2\.(to_q|to_k|to_v|to_out\.0)$",
    "xattn-kv": r"attn2\.(to_k|to_v)$",
    "non-xattn": r"(attn1\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2)$",
}
TRANSFORMER_TARGETS = {
    "attn": r"blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$",
    "xattn": r"blocks\.\d+\.attn\.(add_q_proj|add_k_proj|add_v_proj|to_add_out)$",
    "xattn-kv": r"blocks\.\d+\.attn\.(add_k_proj|add_v_proj)$",
    "non-xattn": r"blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2|proj_mlp|proj_out)$",
}
TEXT_ENCODER_TARGETS = r"self_attn\.(q_proj|k_proj|v_proj|out_proj)$"


def is_transformer(model) -> bool:
    """Is the denoiser a diffusion transformer (SD3, Flux) rather than a UNet?"""
    return hasattr(model, "transformer_blocks")


def target_modules(model, pattern: str, what: str = "UNet") -> list[str]:
    """Names of `model`'s modules matching `pattern` (a regex, or a key of UNET_TARGETS, which means
    TRANSFORMER_TARGETS' pattern of that name on a transformer)."""
    if pattern in UNET_TARGETS:
        pattern = (TRANSFORMER_TARGETS if is_transformer(model) else UNET_TARGETS)[pattern]
    names = [n for n, _ in model.named_modules() if re.search(pattern, n)]
    if not names:
        raise SafetuneError(f"no {what} module matches targets {pattern!r}; choose one of {sorted(UNET_TARGETS)}")
    return names


def check_targets(targets: str) -> None:
    """Refuse an unknown name of a set of UNet modules."""
    if targets not in UNET_TARGETS:
        raise SafetuneError(f"unknown targets {targets!r}; choose one of {sorted(UNET_TARGETS)}")


def add_adapter(model, modules: list[str], rank: int, alpha: float, seed: int) -> list[torch.nn.Parameter]:
    """A fresh LoRA (A gaussian, B zero) on `modules`; returns its trainable parameters."""
    from diffusers import ModelMixin
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=modules)
    with torch.random.fork_rng(devices=[]):  # A's random init depends on the seed alone
        torch.manual_seed(seed)
        if isinstance(model, ModelMixin):  # diffusers' bookkeeping (disable_adapters() for ESD's frozen model)
            model.add_adapter(config, adapter_name=ADAPTER)
            model.set_adapter(ADAPTER)
        else:  # transformers' own add_adapter asks for a newer peft than diffusers needs: inject directly
            inject_adapter_in_model(config, model, adapter_name=ADAPTER)
            model.peft_config = {ADAPTER: config}
    return [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]


def extract(model, component: str, rank: int, alpha: float) -> LoRA:
    """The adapter's factors as a LoRA named "<component>.<module>", alpha/rank folded into B
    (exact in any loader, whatever alpha it assumes)."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    scale = alpha / rank
    factors = {}
    for key, a in state.items():
        if key.endswith("lora_A.weight"):
            name = key[: -len(".lora_A.weight")]
            b = state[name + ".lora_B.weight"]
            factors[canonical_name(f"{component}.{name}")] = (a.detach().float().clone(),
                                                              b.detach().float().clone() * scale)
    return LoRA(factors)


def has_adapter(model) -> bool:
    """Does the model carry peft LoRA layers?"""
    return any("lora_" in n for n, _ in model.named_parameters())


def remove_adapter(model) -> None:
    """Drop the adapter and peft's wrapper layers: the model's state dict is its original one again."""
    from diffusers.utils import recurse_remove_peft_layers

    recurse_remove_peft_layers(model)
    for attr in ("peft_config",):
        if hasattr(model, attr):
            delattr(model, attr)
    if hasattr(model, "_hf_peft_config_loaded"):
        model._hf_peft_config_loaded = False
