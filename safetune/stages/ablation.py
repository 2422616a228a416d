"""Concept ablation (CA; Kumari et al. 2023, Ablating Concepts in Text-to-Image Diffusion Models,
arXiv 2303.13516), model-based variant: the concept's prompts are trained to predict, on the
model's own images of an anchor prompt, what the original model predicts for the anchor; the
concept's distribution is replaced by the anchor's. Trained as a LoRA on W0 (the recipe's targets;
cross-attention by default, the paper's cheapest setting) by the one trainer.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ..config import SHAPES_CONCEPTS, AblationConfig, TrainConfig
from ..errors import SafetuneError
from ..lora.weights import LoRA
from ..models.conditioning import (
    denoiser,
    encode_text,
    sample_latents,
    training_scheduler,
)
from ..train import run_stage
from .losses import AblationLoss

log = logging.getLogger(__name__)


def ablate_lora(pipe, concepts: list[str], config: TrainConfig, settings: AblationConfig | None = None,
                checkpoint_dir: Path | None = None, identity: dict | None = None) -> LoRA:
    """Train the ablation LoRA on `pipe`'s UNet (left unchanged afterwards) and return it."""
    settings = settings or AblationConfig()
    if not concepts or not all(c.strip() for c in concepts):
        raise SafetuneError("give at least one non-empty --concept prompt")
    if settings.anchor == AblationConfig().anchor and sorted(concepts) != sorted(SHAPES_CONCEPTS):
        log.warning("ca: the anchor %r is ShapesWorld's default; for the concept %r give its own (--set anchor=...)",
                    settings.anchor, concepts[0])
    x0 = sample_latents(pipe, [settings.anchor] * settings.anchor_samples, seed=config.seed + 17)
    loss = AblationLoss(x0, encode_text(pipe, concepts), encode_text(pipe, [settings.anchor]),
                        training_scheduler(pipe), config.batch_size)
    identity = {"method": "ca", "concepts": concepts, "settings": asdict(settings), **(identity or {})}
    return run_stage(denoiser(pipe), loss, config, checkpoint_dir, desc="align ca", identity=identity)
