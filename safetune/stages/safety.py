"""Safety alignment as a LoRA on the base weights W0 (dW_safe): ESD-x, ESD-u, SDD."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..config import ESD_X, SafetyLoraConfig, TrainConfig  # noqa: F401 (ESD_X re-exported)
from ..errors import SafetuneError
from ..lora.weights import LoRA
from ..models.conditioning import (
    denoiser,
    encode_text,
    sample_latents,
    training_scheduler,
)
from ..train import run_stage
from .losses import ESDLoss, SDDLoss

LOSSES = {"esd-x": "esd", "esd-u": "esd", "esd": "esd", "sdd": "sdd"}  # method: its loss


def safety_config(method: str, config: TrainConfig) -> TrainConfig:
    """The stage's settings as trained: a LoRA on the method's modules (what its side file records)."""
    from .methods import METHODS

    if method not in LOSSES:
        raise SafetuneError(f"unknown safety-LoRA method {method!r}; choose one of {', '.join(LOSSES)} "
                            "(the others: see `safetune align --help`)")
    return METHODS[method].prepare(config)


def align_lora(pipe, method: str, concepts: list[str], config: TrainConfig, settings: SafetyLoraConfig | None = None,
               checkpoint_dir: Path | None = None, identity: dict | None = None) -> LoRA:
    """Train dW_safe on `pipe`'s UNet (left unchanged afterwards) and return it."""
    config, settings = safety_config(method, config), settings or SafetyLoraConfig()
    if not concepts or not all(c.strip() for c in concepts):
        raise SafetuneError("give at least one non-empty --concept prompt")
    prompts = [concepts[i % len(concepts)] for i in range(settings.concept_samples)]
    x0 = sample_latents(pipe, prompts, seed=config.seed + 17)
    cond, uncond = encode_text(pipe, concepts), encode_text(pipe, [""])
    scheduler = training_scheduler(pipe)
    if LOSSES[method] == "esd":
        loss = ESDLoss(x0, cond, uncond, scheduler, config.batch_size, eta=settings.eta)
    else:
        loss = SDDLoss(x0, cond, uncond, scheduler, config.batch_size, ema_decay=settings.sdd_ema)
    identity = {"method": method, "concepts": concepts, "settings": asdict(settings), **(identity or {})}
    return run_stage(denoiser(pipe), loss, config, checkpoint_dir, desc=f"align {method}", identity=identity)


def cached_safety_lora(base, method: str, concepts: list[str], config: TrainConfig, path: Path,
                       reuse: Path | None = None) -> LoRA:
    """The studies' safety LoRA: read from `reuse` or `path` if one was trained before, else trained
    on a copy of `base` and saved at `path`."""
    import copy

    for candidate in ([reuse] if reuse else []) + [path]:
        if candidate.is_file():
            return LoRA.load(candidate)
    lora = align_lora(copy.deepcopy(base), method, concepts, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    lora.save(path)
    return lora
