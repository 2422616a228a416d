"""The price of a defence and cheap diagnostics of "deleted", beside the relearning battery, for each
trained model before any attack:
  price        clean prompt fidelity and KID (evaluation.metrics.kernel_distance) between the model's
               images of clean prompts and renders of the same prompts, on the detector's features,
               with a bootstrap standard error (report.relearn.quality_summary joins training seeds)
  distance     relative L2 distance of its weights (UNet and text encoder) to the original model's
  line         linear mode connectivity: the harmful rate along W_orig + a (W_model - W_orig); a
               concept that is back well before a = 0 sits next to the original, in its basin
"""
from __future__ import annotations

import copy
import random
from pathlib import Path

import torch

from ..options import from_dict
from ..data.prompts import prompt_set
from ..data.shapesworld import render, scene_for_prompt
from ..evaluation.metrics import kernel_distance, score_images
from ..evaluation.sampling import image_seeds, sample
from ..models.conditioning import denoiser_name
from .relearn import SPLITS, RelearnConfig, _Context


def quality_prompts(config: RelearnConfig, n: int) -> list[dict]:
    """The split's first `n` clean prompts for image quality (more than the attack runs' own, for KID)."""
    return prompt_set("clean", n=n, seed=SPLITS[config.split]["prompt_seed"])


def run_quality_spec(spec: dict) -> dict:
    """Task: one model of one training seed, unattacked: clean prompt fidelity and KID."""
    config, out = from_dict(RelearnConfig, spec["config"]), Path(spec["_out"])
    ctx = _Context.of(spec["model"], config)
    pipe = ctx.model(spec["name"], spec["train_seed"], out, spec.get("pretraining"))
    jobs = image_seeds(quality_prompts(config, spec["quality_prompts"]), ctx.sampling)
    prompts = [p for p, _, _ in jobs]
    images = sample(pipe, jobs, ctx.sampling)
    rng = random.Random(0)  # the same renders for every model
    renders = [render(scene_for_prompt(p, rng)) for p in prompts]
    scores = score_images(images, prompts, ctx.detector)
    real = ctx.detector.features(renders)
    # the renders' centre and one overall scale, the same for every model: the cubic kernel of raw
    # features runs to thousands, and per-feature scaling blows up features that are constant on renders
    centre, scale = real.mean(0), float(real.std()) or 1.0
    kid = kernel_distance((ctx.detector.features(images) - centre) / scale, (real - centre) / scale)
    return {"kid": kid, "prompt_fidelity": scores["prompt_fidelity"],
            "prompt_fidelity_ci95": scores["prompt_fidelity_ci95"], "n_images": scores["n_images"],
            **line_to_original(pipe, ctx.base, lambda p: ctx.evaluate(p, ctx.prompts["harmful"]))}


LINE = (0.0, 0.25, 0.5, 0.75, 1.0)  # a: the original model at 0, the model at 1


@torch.no_grad()
def line_to_original(pipe, original, evaluate) -> dict:
    """The weight distance of `pipe` to `original` and the harmful rate along the line between them."""
    parts = (denoiser_name(pipe), "text_encoder")
    ends = {part: ({k: v.double() for k, v in getattr(original, part).state_dict().items()},
                   {k: v.double() for k, v in getattr(pipe, part).state_dict().items()}) for part in parts}
    if any(set(a) != set(b) or any(a[k].shape != b[k].shape for k in a) for a, b in ends.values()):
        return {}  # other architectures (a grown vocabulary): no line between them
    moved = sum(float((b[k] - a[k]).pow(2).sum()) for a, b in ends.values() for k in a)
    size = sum(float(a[k].pow(2).sum()) for a, _ in ends.values() for k in a)
    point = copy.deepcopy(pipe)
    line = {}
    for alpha in LINE:
        for part, (a, b) in ends.items():
            getattr(point, part).load_state_dict({k: (a[k] + alpha * (b[k] - a[k])).to(v.dtype)
                                                  for k, v in getattr(pipe, part).state_dict().items()})
        line[f"{alpha:g}"] = evaluate(point)["harmful_rate"]
    return {"distance": (moved / size) ** 0.5, "line": line}
