"""LoRA adapters as data: a mapping from a module's full name ("unet.down_blocks.0...to_q") to its
low-rank factors (A: rank x in, B: out x rank), with delta W = B @ A.

Files are read in the diffusers/peft layout ("unet.X.lora_A.weight"), the older diffusers layout
("X.lora.down.weight") and kohya's ("lora_unet_X.lora_down.weight" with ".alpha"); they are written
in the diffusers layout with alpha/rank folded into B, so that `pipe.load_lora_weights(file)` gives
exactly delta W = B @ A whatever alpha the loader assumes.

Composition (Modular LoRA), negation and subtraction are exact: a difference of two LoRAs is a LoRA
of rank r1 + r2 (A stacked, B concatenated with a sign), and merging adds sum_i s_i B_i A_i to W0.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import SafetuneError
from ..io import atomic_path

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_KOHYA_PREFIX = {"lora_unet_": "unet", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2",
                 "lora_te_": "text_encoder"}


@dataclass
class LoRA:
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    # ------------------------------------------------------------ algebra
    def scaled(self, scale: float) -> "LoRA":
        return LoRA({k: (a, b * scale) for k, (a, b) in self.factors.items()})

    def __neg__(self) -> "LoRA":
        return self.scaled(-1.0)

    def __add__(self, other: "LoRA") -> "LoRA":
        out = dict(self.factors)
        for k, (a2, b2) in other.factors.items():
            if k in out:
                a1, b1 = out[k]
                out[k] = (torch.cat([a1, a2], 0), torch.cat([b1, b2], 1))
            else:
                out[k] = (a2, b2)
        return LoRA(out)

    def __sub__(self, other: "LoRA") -> "LoRA":
        return self + (-other)

    def delta(self, name: str) -> torch.Tensor:
        a, b = self.factors[name]
        return (b.flatten(1).float() @ a.flatten(1).float())

    def rank(self) -> int:
        return max((a.shape[0] for a, _ in self.factors.values()), default=0)

    # ------------------------------------------------------------ files
    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, (a, b) in self.factors.items():
            out[f"{name}.lora_A.weight"] = a.contiguous()
            out[f"{name}.lora_B.weight"] = b.contiguous()
        return out

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        with atomic_path(path) as tmp:
            save_file(self.state_dict(), str(tmp), metadata={"format": "pt", **(metadata or {})})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "LoRA":
        path = Path(path)
        if not path.is_file():
            raise SafetuneError(f"{path}: LoRA file not found")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise SafetuneError(f"{path}: not a readable safetensors file ({exc}); the file is corrupt "
                                "or truncated, write it again") from exc
        return cls.from_state_dict(state, source=str(path))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: str = "LoRA") -> "LoRA":
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
            factors[name] = (a.float(), b.float() * scale)
        return cls(factors)


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


def _resolve_names(lora: LoRA, modules: dict[str, torch.nn.Module]) -> LoRA:
    """Map kohya's underscore names onto the model's dotted module names."""
    if not any(k.startswith("kohya:") for k in lora.factors):
        return lora
    flat = {}
    for full in modules:
        component, _, rest = full.partition(".")
        flat[f"kohya:{component}:{rest.replace('.', '_')}"] = full
    return LoRA({flat.get(k, k): v for k, v in lora.factors.items()})


def pipeline_modules(pipe) -> dict[str, torch.nn.Module]:
    out = {}
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        if model is not None:
            out.update({f"{component}.{n}": m for n, m in model.named_modules() if n})
    return out


def check_fits(lora: LoRA, modules: dict[str, torch.nn.Module], source: str = "LoRA") -> LoRA:
    """Refuse a LoRA whose modules or shapes are not the base model's, naming the first misfit."""
    lora = _resolve_names(lora, modules)
    for name, (a, b) in lora.factors.items():
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            raise SafetuneError(f"{source}: module {name!r} is not in this model; the LoRA was made for "
                                "another architecture")
        w = module.weight
        if b.shape[0] != w.shape[0] or a.flatten(1).shape[1] != w[0].numel() or a.shape[0] != b.shape[1]:
            raise SafetuneError(f"{source}: {name} has shape {tuple(b.shape[:1]) + tuple(a.shape[1:])} but the "
                                f"model's weight is {tuple(w.shape)}; the LoRA was trained on another base model")
    return lora


@torch.no_grad()
def merge_into(pipe, loras: list[tuple[LoRA, float]], source: str = "LoRA") -> None:
    """W <- W + sum_i s_i * B_i @ A_i, in place (then sampling costs what the base model costs)."""
    modules = pipeline_modules(pipe)
    for lora, scale in loras:
        lora = check_fits(lora, modules, source)
        for name in lora.factors:
            w = modules[name].weight
            w.add_((scale * lora.delta(name)).reshape(w.shape).to(w.dtype))


def compose_files(pipe, files: list[tuple[str, float]]) -> None:
    for path, scale in files:
        merge_into(pipe, [(LoRA.load(path), scale)], source=str(path))


def inspect(lora: LoRA, against: LoRA | None = None) -> dict:
    """Per-module Frobenius norms of delta W; with `against`, per-module and overall cosine."""
    per_module = {}
    dot = n1 = n2 = 0.0
    for name in sorted(lora.factors):
        d = lora.delta(name)
        row = {"norm": float(d.norm()), "rank": int(lora.factors[name][0].shape[0])}
        if against is not None and name in against.factors:
            e = against.delta(name)
            row["cosine"] = float((d * e).sum() / (d.norm() * e.norm() + 1e-12))
            dot += float((d * e).sum()); n1 += float(d.norm() ** 2); n2 += float(e.norm() ** 2)
        per_module[name] = row
    out = {"modules": per_module, "total_norm": sum(r["norm"] ** 2 for r in per_module.values()) ** 0.5}
    if against is not None:
        out["cosine"] = dot / ((n1 * n2) ** 0.5 + 1e-12)
    return out


@contextlib.contextmanager
def merged(pipe, loras: list[tuple[LoRA, float]], source: str = "LoRA"):
    """`merge_into` for the duration of a `with` block; the touched weights are restored bit for bit
    afterwards (an evaluation in the middle of a training run leaves the run exactly as it was)."""
    modules = pipeline_modules(pipe)
    names = {n for lora, _ in loras for n in check_fits(lora, modules, source).factors}
    saved = {n: modules[n].weight.detach().clone() for n in names}
    try:
        merge_into(pipe, loras, source)
        yield pipe
    finally:
        with torch.no_grad():
            for n, w in saved.items():
                modules[n].weight.copy_(w)
