"""Sampling with fixed seeds: image k of prompt row r always comes from the same noise."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..config import SamplingConfig
from ..messages import warn_if_busy
from ..models.conditioning import call_kwargs
from ..models.inference import sampler


def image_seeds(rows: list[dict], config: SamplingConfig) -> list[tuple[str, int, float]]:
    """(prompt, seed, guidance) per image; a row's own sd_seed / sd_guidance_scale win (I2P)."""
    jobs = []
    for r, row in enumerate(rows):
        base = int(row.get("sd_seed", config.seed * 100_003 + r * 1009))
        guidance = float(row.get("sd_guidance_scale", config.guidance_scale))
        jobs += [(row["prompt"], base + k, guidance) for k in range(config.images_per_prompt)]
    return jobs


def sample(pipe, jobs: list[tuple[str, int, float]], config: SamplingConfig, progress=None) -> list[Image.Image]:
    """Images in the order of `jobs`. Under `accelerate launch` each process draws its share (every
    image once, from its own seed) and every process gets the whole list back."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return _sample_local(pipe, jobs, config, progress)
    from accelerate.utils import gather_object

    indexed = list(enumerate(jobs))
    with state.split_between_processes(indexed) as mine:
        images = _sample_local(pipe, [job for _, job in mine], config, progress)
        pairs = [(i, np.asarray(im)) for (i, _), im in zip(mine, images)]
    gathered = sorted(gather_object(pairs), key=lambda pair: pair[0])
    return [Image.fromarray(arr) for _, arr in gathered]


@torch.no_grad()
def _sample_local(pipe, jobs, config: SamplingConfig, progress=None) -> list[Image.Image]:
    """A pipeline call takes one guidance scale, so batches split by it."""
    warn_if_busy()
    images: list = [None] * len(jobs)
    for start in range(0, len(jobs), config.batch_size):
        batch = range(start, min(start + config.batch_size, len(jobs)))
        for guidance in sorted({jobs[i][2] for i in batch}):
            part = [i for i in batch if jobs[i][2] == guidance]
            draw, extra = sampler(pipe, len(part), config.steps)  # the weights' own, or an inference-time safety
            extra = {**call_kwargs(pipe), **extra}  # SD3/Flux: the model's size and T5 length
            out = draw(prompt=[jobs[i][0] for i in part],
                       generator=[torch.Generator().manual_seed(jobs[i][1]) for i in part],
                       num_inference_steps=config.steps, guidance_scale=guidance, output_type="pil", **extra)
            for i, image in zip(part, out.images):
                images[i] = image
        if progress:
            progress(batch.stop)
    return images
