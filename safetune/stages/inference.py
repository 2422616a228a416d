"""The inference-time baselines: no training, no weight change; the pipeline samples differently
(models.inference). `np`: the concept as the negative prompt (SD-NP); `sld`: Safe Latent Diffusion
(Schramowski et al. 2023) through diffusers' StableDiffusionPipelineSafe. Their row in a study says
what a weight attack does to a model served that way: the attack changes the weights, the sampling
stays.
"""
from __future__ import annotations

from ..config import InferenceSafetyConfig
from ..errors import SafetuneError
from ..models.inference import mark


def inference_safety(pipe, kind: str, concepts: list[str], settings: InferenceSafetyConfig):
    """Mark `pipe` (in place) to sample away from `concepts`: kind "negative" or "sld"."""
    if not concepts or not all(c.strip() for c in concepts):
        raise SafetuneError("give at least one non-empty --concept prompt")
    return mark(pipe, {"kind": kind, "concept": ", ".join(concepts), "level": settings.sld_level})
