"""LoRA file layouts, kept apart from applying them (as diffusers keeps its conversions).

Read: diffusers/peft ("unet.X.lora_A.weight", "transformer.X..." for SD3 and Flux), older diffusers
("X.lora.down.weight", attention processor names), kohya ("lora_unet_X.lora_down.weight" with
".alpha", as AUTOMATIC1111 and ComfyUI use) and, for Flux, the layouts named after Black Forest
Labs' modules ("double_blocks", "single_blocks": kohya, ComfyUI, XLabs), through diffusers' own
conversion (`FluxPipeline.lora_state_dict`). Written: diffusers (alpha/rank folded into B, so `pipe.load_lora_weights(file)` gives
exactly delta W = B @ A whatever alpha the loader assumes) or kohya (".alpha" = rank: scale 1).
"""
from __future__ import annotations

import re

import torch

from ..errors import SafetuneError

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
_KOHYA_PREFIX = {"lora_unet_": "unet", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2",
                 "lora_te_": "text_encoder"}
FORMATS = ("diffusers", "kohya")


def parse_state_dict(state: dict[str, torch.Tensor], source: str = "LoRA") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Factors {module: (A, B)} with any alpha folded into B, from any layout above, every module under
    its one canonical name (diffusers' module path). Two entries naming one module (e.g. the same module
    in two layouts) and non-finite weights are refused: a merge would silently drop one, or poison the model."""
    if any(re.search(r"(^|[._])(double|single)_blocks[._]", k) for k in state):
        state = _flux_to_diffusers(state, source)
    downs, ups, alphas, unknown, origin = {}, {}, {}, [], {}
    for key, value in state.items():
        name, kind = _parse_key(key)
        if kind == "?":
            unknown.append(key)
            continue
        if not torch.isfinite(value.float()).all():
            raise SafetuneError(f"{source}: {key} holds non-finite values (NaN or inf); the file is broken, "
                                "write it again or ask its author for a good copy")
        name = canonical_name(name)
        first = origin.setdefault((name, kind), key)
        if first != key:
            raise SafetuneError(f"{source}: module {name} is given twice ({first!r} and {key!r}), e.g. in two "
                                "layouts; a LoRA file names each module once. Split it into two files and pass "
                                "both (--lora A --lora B), which adds them")
        {"down": downs, "up": ups, "alpha": alphas}[kind][name] = value if kind != "alpha" else float(value)
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
        factors[name] = (a.float(), b.float() * scale)
    return factors


def _flux_to_diffusers(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """A Flux LoRA in Black Forest Labs' module names (kohya, ComfyUI, XLabs) in diffusers' names, as
    `FluxPipeline.load_lora_weights` converts it (fused qkv split, alpha folded in)."""
    from diffusers import FluxPipeline

    try:
        converted = FluxPipeline.lora_state_dict({k: v.clone() for k, v in state.items()})
    except (ValueError, KeyError, AssertionError, RuntimeError) as exc:
        raise SafetuneError(f"{source}: a Flux LoRA in a layout diffusers cannot convert ({exc}); "
                            "save it in diffusers' layout (transformer.X.lora_A.weight)") from None
    return converted[0] if isinstance(converted, tuple) else converted


# The segments of diffusers' and transformers' module paths that hold an underscore: kohya's keys
# write the path with "_" for ".", and these tell the two apart. A name made of other segments stays
# "kohya:<component>:<rest>" and is resolved against a model (resolve_names).
_SEGMENTS = frozenset("""
conv_in conv_out conv_norm_out time_proj time_embedding linear_1 linear_2 down_blocks up_blocks mid_block
attentions resnets downsamplers upsamplers conv norm proj_in proj_out transformer_blocks norm1 norm2 norm3
attn1 attn2 to_q to_k to_v to_out ff net proj conv1 conv2 time_emb_proj conv_shortcut add_embedding
add_time_proj class_embedding encoder_hid_proj text_model embeddings token_embedding position_embedding
encoder layers self_attn q_proj k_proj v_proj out_proj layer_norm1 layer_norm2 mlp fc1 fc2 final_layer_norm
text_projection add_k_proj add_v_proj add_q_proj to_add_out
""".split())


def _kohya_path(rest: str) -> str | None:
    """'down_blocks_0_attentions_0_proj_in' -> 'down_blocks.0.attentions.0.proj_in' (None if a segment is
    not a known one)."""
    tokens, parts, i = rest.split("_"), [], 0
    while i < len(tokens):
        for j in range(min(len(tokens), i + 4), i, -1):
            candidate = "_".join(tokens[i:j])
            if candidate in _SEGMENTS or (j == i + 1 and candidate.isdigit()):
                parts.append(candidate)
                i = j
                break
        else:
            return None
    return ".".join(parts)


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
        if name.startswith("kohya:"):
            component, _, rest = name[len("kohya:"):].partition(":")
            if layout == "diffusers":
                raise SafetuneError(f"kohya key {rest!r} ({component}) names no module path safetune knows; "
                                    "compose it with a model (`safetune compose --model ...`), which resolves it")
            name = f"{component}.{rest}"
        if layout == "diffusers":
            out[f"{name}.lora_A.weight"] = a.contiguous()
            out[f"{name}.lora_B.weight"] = b.contiguous()
            continue
        component, _, module = name.partition(".")
        prefix = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}.get(component)
        if prefix is None:
            raise SafetuneError(f"the kohya layout names UNet-family modules; {name} is a {component}'s "
                                "(SD3/Flux): write it in the diffusers layout, which their loaders read")
        key = prefix + module.replace(".", "_")
        out[f"{key}.lora_down.weight"] = a.contiguous()
        out[f"{key}.lora_up.weight"] = b.contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(a.shape[0]))  # alpha = rank: B already carries the scale
    return out


def _parse_key(key: str) -> tuple[str, str]:
    """(module name with component prefix, 'down'|'up'|'alpha'|'?')."""
    for suffix, kind in ((".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora.down.weight", "down"),
                         (".lora.up.weight", "up"), (".lora_down.weight", "down"), (".lora_up.weight", "up"),
                         (".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
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
            path = _kohya_path(name[len(prefix):])
            return (f"{component}.{path}" if path else f"kohya:{component}:{name[len(prefix):]}"), kind
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
