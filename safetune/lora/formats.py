"""LoRA file layouts, kept apart from applying them (as diffusers keeps its conversions).

Read: diffusers/peft ("unet.X.lora_A.weight"), older diffusers ("X.lora.down.weight", attention
processor names) and kohya ("lora_unet_X.lora_down.weight" with ".alpha", as AUTOMATIC1111 and
ComfyUI use). Written: diffusers (alpha/rank folded into B, so `pipe.load_lora_weights(file)` gives
exactly delta W = B @ A whatever alpha the loader assumes) or kohya (".alpha" = rank: scale 1).
"""
from __future__ import annotations

import re

import torch

from ..errors import SafetuneError

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_KOHYA_PREFIX = {"lora_unet_": "unet", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2",
                 "lora_te_": "text_encoder"}
FORMATS = ("diffusers", "kohya")


def parse_state_dict(state: dict[str, torch.Tensor], source: str = "LoRA") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Factors {module: (A, B)} with any alpha folded into B, from any layout above."""
    downs, ups, alphas, unknown = {}, {}, {}, []
    for key, value in state.items():
        name, kind = _parse_key(key)
        if kind == "down":
            downs[name] = value
        elif kind == "up":
            ups[name] = value
        elif kind == "alpha":
            alphas[name] = float(value)
        else:
            unknown.append(key)
    if unknown:
        raise SafetuneError(f"{source}: {len(unknown)} keys are not LoRA weights (e.g. {unknown[0]!r}); "
                            "expected diffusers/peft (lora_A/lora_B), lora.down/up or kohya keys")
    if set(downs) != set(ups) or not downs:
        missing = sorted(set(downs) ^ set(ups))[:1]
        raise SafetuneError(f"{source}: unmatched LoRA factors {missing or 'none found'}")
    factors = {}
    for name in downs:
        a, b = downs[name], ups[name]
        scale = alphas[name] / a.shape[0] if name in alphas else 1.0
        factors[canonical_name(name)] = (a.float(), b.float() * scale)
    return factors


def canonical_name(name: str) -> str:
    """Text-encoder modules as files name them ("text_encoder.text_model.encoder..."): transformers 5
    dropped the "text_model." level from CLIPTextModel's own module names, files (and kohya's keys,
    "lora_te_text_model_encoder_...") keep it."""
    for component in ("text_encoder.", "text_encoder_2."):
        if name.startswith(component) and not name.startswith(component + "text_model."):
            rest = name[len(component):]
            if rest.startswith(("encoder.", "embeddings.", "final_layer_norm")):
                return component + "text_model." + rest
    return name


def to_state_dict(factors: dict[str, tuple[torch.Tensor, torch.Tensor]], layout: str = "diffusers") -> dict:
    """Factors {module: (A, B)} as a diffusers or a kohya state dict."""
    if layout not in FORMATS:
        raise SafetuneError(f"unknown LoRA format {layout!r}; choose one of {', '.join(FORMATS)}")
    out = {}
    for name, (a, b) in ((canonical_name(n), f) for n, f in factors.items()):
        if layout == "diffusers":
            out[f"{name}.lora_A.weight"] = a.contiguous()
            out[f"{name}.lora_B.weight"] = b.contiguous()
            continue
        component, _, module = name.partition(".")
        prefix = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}[component]
        key = prefix + module.replace(".", "_")
        out[f"{key}.lora_down.weight"] = a.contiguous()
        out[f"{key}.lora_up.weight"] = b.contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(a.shape[0]))  # alpha = rank: B already carries the scale
    return out


def _parse_key(key: str) -> tuple[str, str]:
    """(module name with component prefix, 'down'|'up'|'alpha'|'?')."""
    for suffix, kind in ((".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora.down.weight", "down"),
                         (".lora.up.weight", "up"), (".lora_down.weight", "down"), (".lora_up.weight", "up"),
                         (".alpha", "alpha")):
        if key.endswith(suffix):
            name = key[: -len(suffix)]
            break
    else:
        return key, "?"
    name = name.replace("base_model.model.", "")
    name = re.sub(r"\.processor\.(to_[qkv]|to_out)_lora$", lambda m: "." + m.group(1) + (".0" if m.group(1) == "to_out" else ""), name)
    for prefix, component in _KOHYA_PREFIX.items():
        if name.startswith(prefix):
            return "kohya:" + component + ":" + name[len(prefix):], kind
    if not name.startswith(tuple(c + "." for c in COMPONENTS)):
        name = "unet." + name
    return name, kind


def resolve_names(factors: dict, modules: dict[str, torch.nn.Module]) -> dict:
    """Map file names onto the model's module names: kohya's underscores, and text-encoder names with
    or without "text_model." (whichever the installed transformers uses)."""
    lookup = {}
    for full in modules:
        lookup[full] = lookup[canonical_name(full)] = full
        component, _, rest = full.partition(".")
        lookup[f"kohya:{component}:{rest.replace('.', '_')}"] = full
        canonical_rest = canonical_name(full).partition(".")[2]
        lookup[f"kohya:{component}:{canonical_rest.replace('.', '_')}"] = full
    return {lookup.get(k, k): v for k, v in factors.items()}
