"""Inference-time safety: no weight changes, another way of sampling. A pipeline carries it as an
attribute (set by stages.inference; saved beside the weights as `safetune_inference.json`, which
`load_pipeline` reads back), and the sampler asks `sampler(pipe, steps)` how to draw.

  negative  the concept as the negative prompt (SD-NP): classifier-free guidance steers from the
            concept's prediction instead of the unconditional one
  sld       Safe Latent Diffusion (Schramowski et al. 2023, arXiv 2211.05105) through diffusers' own
            StableDiffusionPipelineSafe (SD 1.x and 2.x), at one of the paper's four configurations;
            their warmup (given for 50 denoising steps) is scaled to the steps sampled
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..errors import SafetuneError

ATTRIBUTE, FILE = "safetune_inference", "safetune_inference.json"
PAPER_STEPS = 50
FLUX_TRUE_CFG = 4.0  # true classifier-free guidance for the negative prompt on Flux (our choice; Flux-dev has no CFG of its own)
# the paper's hyper-parameter sets (also diffusers' SafetyConfig): warmup, guidance, threshold, momentum, beta
SLD_LEVELS = {"weak": (15, 20, 0.0, 0.0, 0.0), "medium": (10, 1000, 0.01, 0.3, 0.4),
              "strong": (7, 2000, 0.025, 0.5, 0.7), "max": (0, 5000, 1.0, 0.5, 0.7)}


def mark(pipe, how: dict):
    """Make `pipe` sample with `how` ({"kind": "negative" | "sld", "concept": ..., "level": ...})."""
    if how["kind"] == "sld" and type(pipe).__name__ != "StableDiffusionPipeline":
        raise SafetuneError(f"sld: Safe Latent Diffusion exists in diffusers for SD 1.x and 2.x pipelines "
                            f"(StableDiffusionPipeline), not a {type(pipe).__name__}; use the negative prompt (np)")
    setattr(pipe, ATTRIBUTE, dict(how))
    return pipe


def inference_of(pipe) -> dict | None:
    """How `pipe` samples beyond its weights, or None."""
    return getattr(pipe, ATTRIBUTE, None)


def save_inference(pipe, directory: Path) -> None:
    """Write the pipeline's inference-time safety beside its saved weights (nothing when it has none)."""
    if inference_of(pipe):
        (Path(directory) / FILE).write_text(json.dumps(inference_of(pipe), indent=1) + "\n")


def restore_inference(pipe, directory: Path):
    """Mark a pipeline loaded from `directory` with the inference-time safety saved there."""
    path = Path(directory) / FILE
    return mark(pipe, json.loads(path.read_text())) if path.is_file() else pipe


def sampler(pipe, n_prompts: int, steps: int) -> tuple[object, dict]:
    """(the callable that draws `n_prompts` images, the extra keyword arguments it takes)."""
    how = inference_of(pipe)
    if not how:
        return pipe, {}
    if how["kind"] == "negative":
        if type(pipe).__name__ == "FluxPipeline":  # guidance-distilled: a negative prompt acts only through true CFG
            return pipe, {"negative_prompt": [how["concept"]] * n_prompts, "true_cfg_scale": FLUX_TRUE_CFG}
        return pipe, {"negative_prompt": [how["concept"]] * n_prompts}
    from diffusers import StableDiffusionPipelineSafe

    parts = {k: v for k, v in pipe.components.items() if k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    safe = StableDiffusionPipelineSafe(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    safe.set_progress_bar_config(disable=True)
    safe.safety_concept = how["concept"]
    warmup, guidance, threshold, momentum, beta = SLD_LEVELS[how["level"]]

    def draw(**kwargs):
        with warnings.catch_warnings():  # the deprecated pipeline's notices are not our output
            warnings.simplefilter("ignore", FutureWarning)
            return safe(**kwargs)

    return draw, {"sld_warmup_steps": round(warmup * steps / PAPER_STEPS), "sld_guidance_scale": guidance,
                  "sld_threshold": threshold, "sld_momentum_scale": momentum, "sld_mom_beta": beta}
