"""The price of a defence, beside the relearning battery: each trained model's clean-prompt fidelity
and image quality before any attack. Quality is KID (evaluation.metrics.kernel_distance) between
the model's images of clean prompts and renders of the same prompts, on the detector's features,
with a bootstrap standard error (report.relearn.quality_summary joins the training seeds)."""
from __future__ import annotations

import random
from pathlib import Path

from ..config import from_dict
from ..data.prompts import prompt_set
from ..data.shapesworld import render, scene_for_prompt
from ..evaluation.metrics import kernel_distance, score_images
from ..evaluation.sampling import image_seeds, sample
from .relearn import SPLITS, RelearnConfig, _Context


def quality_prompts(config: RelearnConfig, n: int) -> list[dict]:
    """The split's first `n` clean prompts for image quality (more than the attack runs' own, for KID)."""
    return prompt_set("clean", n=n, seed=SPLITS[config.split]["prompt_seed"])


def run_quality_spec(spec: dict) -> dict:
    """Task: one model of one training seed, unattacked: clean prompt fidelity and KID."""
    config, out = from_dict(RelearnConfig, spec["config"]), Path(spec["_out"])
    ctx = _Context.of(spec["model"], config)
    pipe = ctx.model(spec["name"], spec["train_seed"], out)
    jobs = image_seeds(quality_prompts(config, spec["quality_prompts"]), ctx.sampling)
    prompts = [p for p, _, _ in jobs]
    images = sample(pipe, jobs, ctx.sampling)
    rng = random.Random(0)  # the same renders for every model
    renders = [render(scene_for_prompt(p, rng)) for p in prompts]
    scores = score_images(images, prompts, ctx.detector)
    kid = kernel_distance(ctx.detector.features(images), ctx.detector.features(renders))
    return {"kid": kid, "prompt_fidelity": scores["prompt_fidelity"],
            "prompt_fidelity_ci95": scores["prompt_fidelity_ci95"], "n_images": scores["n_images"]}
