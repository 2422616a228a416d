"""Text conditioning and training targets: the places where model families differ."""
from __future__ import annotations

import torch


@torch.no_grad()
def encode_text(pipe, texts: list[str]) -> torch.Tensor:
    """Prompt embeddings as the UNet sees them (no classifier-free duplication)."""
    embeds, _ = pipe.encode_prompt(texts, device=pipe.device, num_images_per_prompt=1,
                                   do_classifier_free_guidance=False)
    return embeds.detach()


def training_scheduler(pipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def denoising_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


@torch.no_grad()
def encode_images(pipe, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Images in [-1, 1] -> scaled latents (the posterior mean: deterministic, as caching needs)."""
    vae = pipe.vae
    out = [vae.encode(chunk.to(pipe.device, vae.dtype)).latent_dist.mode() for chunk in images.split(batch)]
    return torch.cat(out) * vae.config.scaling_factor


@torch.no_grad()
def sample_latents(pipe, prompts: list[str], seed: int, steps: int = 20, guidance: float = 5.0,
                   batch: int = 128) -> torch.Tensor:
    """Latents (x0) the model itself draws for `prompts`: the concept samples of ESD/SDD."""
    out = []
    for i in range(0, len(prompts), batch):
        part = prompts[i:i + batch]
        gens = [torch.Generator().manual_seed(seed + i + k) for k in range(len(part))]
        out.append(pipe(prompt=part, generator=gens, num_inference_steps=steps, guidance_scale=guidance,
                        output_type="latent").images)
    return torch.cat(out)
