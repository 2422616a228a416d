"""LoRA adapters as data: a mapping from a module's full name ("unet.down_blocks.0...to_q") to its
low-rank factors (A: rank x in, B: out x rank), with delta W = B @ A. File layouts: lora.formats.

Composition (Modular LoRA), negation and subtraction are exact: a difference of two LoRAs is a LoRA
of rank r1 + r2 (A stacked, B concatenated with a sign), and merging adds sum_i s_i B_i A_i to W0.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import SafetuneError
from ..io import WRITTEN_BY, atomic_path, read_safetensors
from .formats import COMPONENTS, parse_state_dict, resolve_names, to_state_dict

log = logging.getLogger(__name__)

@dataclass
class LoRA:
    """A LoRA as data: module name -> (A, B), delta W = B @ A; algebra is exact."""
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    # ------------------------------------------------------------ algebra
    def scaled(self, scale: float) -> "LoRA":
        """The LoRA with delta W scaled (B multiplied)."""
        return LoRA({k: (a, b * scale) for k, (a, b) in self.factors.items()})

    def __neg__(self) -> "LoRA":
        return self.scaled(-1.0)

    def __add__(self, other: "LoRA") -> "LoRA":
        out = dict(self.factors)
        for k, (a2, b2) in other.factors.items():
            if k in out:
                a1, b1 = out[k]
                _same_shape(k, (a1, b1), (a2, b2))
                out[k] = (torch.cat([a1, a2], 0), torch.cat([b1, b2], 1))
            else:
                out[k] = (a2, b2)
        return LoRA(out)

    def __sub__(self, other: "LoRA") -> "LoRA":
        return self + (-other)

    def delta(self, name: str) -> torch.Tensor:
        """delta W = B @ A of one module, as a 2-D matrix."""
        a, b = self.factors[name]
        return (b.flatten(1).float() @ a.flatten(1).float())

    def rank(self) -> int:
        """The largest rank over modules."""
        return max((a.shape[0] for a, _ in self.factors.values()), default=0)

    # ------------------------------------------------------------ files
    def state_dict(self, layout: str = "diffusers") -> dict[str, torch.Tensor]:
        """The tensors of a file in `layout` (diffusers or kohya)."""
        return to_state_dict(self.factors, layout)

    def save(self, path: str | Path, metadata: dict[str, str] | None = None, layout: str = "diffusers") -> Path:
        """Write a safetensors file atomically, marked as written by safetune."""
        state = self.state_dict(layout)  # an unknown layout is refused before anything is written
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "written_by": WRITTEN_BY, **(metadata or {})})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "LoRA":
        """Read a LoRA file of any supported layout; a clear error for anything else."""
        path = Path(path)
        if not path.is_file():
            raise SafetuneError(f"{path}: LoRA file not found" + (" (a directory)" if path.is_dir() else ""))
        state = read_safetensors(path, "not a readable LoRA file", "the file is corrupt or truncated, write it again")
        return cls.from_state_dict(state, source=str(path))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: str = "LoRA") -> "LoRA":
        """A LoRA from tensors of any supported layout."""
        return cls(parse_state_dict(state, source))


def _same_shape(name: str, first: tuple, second: tuple) -> None:
    (a1, b1), (a2, b2) = first, second
    if a1.shape[1:] != a2.shape[1:] or b1.shape[0] != b2.shape[0]:
        shape = lambda a, b: (b.shape[0], *a.shape[1:])  # noqa: E731
        raise SafetuneError(f"{name}: the two LoRAs give it different shapes ({shape(a1, b1)} vs {shape(a2, b2)}): "
                            "they were trained on different base models; use LoRAs of one model")


def parse_lora_arg(arg: str) -> tuple[str, float]:
    """'FILE' or 'FILE:SCALE' (scale 1.0 by default, negative to subtract; finite; a warning past 10)."""
    path, _, scale = arg.rpartition(":") if ":" in arg and not Path(arg).exists() else (arg, "", "")
    try:
        value = float(scale) if scale else 1.0
    except ValueError:
        raise SafetuneError(f"{arg}: LoRA scale {scale!r} is not a number; write FILE or FILE:SCALE") from None
    if not math.isfinite(value):
        raise SafetuneError(f"{arg}: LoRA scale {scale!r} is not a finite number; write FILE or FILE:SCALE")
    if abs(value) > 10:
        log.warning("%s: a LoRA scale of %g is far outside the usual -2..2 and will likely break the model", arg, value)
    return path, value


def load_with_loras(model: str | None, loras: list[str] | None = None, **kwargs):
    """A pipeline (models.loading.load_pipeline) with LoRAs `FILE[:SCALE]` merged into its weights."""
    from ..models.loading import load_pipeline

    files = [(path, LoRA.load(path), scale) for path, scale in (parse_lora_arg(a) for a in loras or [])]
    pipe = load_pipeline(model, **kwargs)  # the LoRA files were read first: a bad one fails in a second
    for path, lora, scale in files:
        merge_into(pipe, [(lora, scale)], source=str(path))
    return pipe


def pipeline_modules(pipe) -> dict[str, torch.nn.Module]:
    """Every module of the pipeline's UNet and text encoders by its full name ('unet.X', 'text_encoder.Y')."""
    out = {}
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        if model is not None:
            out.update({f"{component}.{n}": m for n, m in model.named_modules() if n})
    return out


def check_fits(lora: LoRA, modules: dict[str, torch.nn.Module], source: str = "LoRA") -> LoRA:
    """Refuse a LoRA whose modules or shapes are not the base model's, naming the first misfit."""
    lora = LoRA(resolve_names(lora.factors, modules))
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


def inspect(lora: LoRA, against: LoRA | None = None) -> dict:
    """Per-module Frobenius norms of delta W; with `against`, per-module and overall cosine."""
    per_module = {}
    dot = n1 = n2 = 0.0
    for name in sorted(lora.factors):
        d = lora.delta(name)
        row = {"norm": float(d.norm()), "rank": int(lora.factors[name][0].shape[0])}
        if against is not None and name in against.factors:
            _same_shape(name, lora.factors[name], against.factors[name])
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
