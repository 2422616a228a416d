"""Text conditioning and training targets: the one place where model families differ.

SD 1.x / 2.x condition the UNet on the text encoder's hidden states; SDXL adds a pooled text
embedding and size/crop ids (`added_cond_kwargs`). `Cond` carries both, per sample, so every loss
indexes, repeats and feeds it the same way whatever the family; v-prediction (SD 2.x) changes only
`denoising_target`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..checkpoint import batch_randint, batch_randn


@dataclass
class Cond:
    """The UNet's conditioning, per sample: hidden states, and SDXL's extras."""
    hidden: torch.Tensor                                   # [N, tokens, dim]
    added: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample extras (SDXL)

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, idx) -> "Cond":
        return Cond(self.hidden[idx], {k: v[idx] for k, v in self.added.items()})

    def repeat(self, n: int) -> "Cond":
        """The conditioning repeated n times along the batch."""
        reps = lambda v: v.repeat(n, *([1] * (v.dim() - 1)))
        return Cond(reps(self.hidden), {k: reps(v) for k, v in self.added.items()})


def predict(unet, xt: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
    """The UNet's prediction, with the family's extra conditioning when it has one."""
    return unet(xt, t, cond.hidden, added_cond_kwargs=cond.added or None).sample


def is_sdxl(pipe) -> bool:
    """Is the pipeline SDXL-like (two text encoders, size conditioning)?"""
    return getattr(pipe, "text_encoder_2", None) is not None and hasattr(pipe, "_get_add_time_ids")


@torch.no_grad()
def encode_text(pipe, texts: list[str]) -> Cond:
    """Prompt conditioning as the UNet sees it (no classifier-free duplication)."""
    if is_sdxl(pipe):
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=texts, device=pipe.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        time_ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=embeds.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        return Cond(embeds, {"text_embeds": pooled, "time_ids": time_ids.to(pipe.device).repeat(len(texts), 1)})
    embeds, _ = pipe.encode_prompt(texts, device=pipe.device, num_images_per_prompt=1,
                                   do_classifier_free_guidance=False)
    return Cond(embeds.detach())


def caption_ids(pipe, texts: list[str]) -> torch.Tensor:
    """Token ids of captions, padded as the pipeline pads prompts (for training the text encoder)."""
    from ..errors import SafetuneError

    if is_sdxl(pipe):
        raise SafetuneError("training the text encoders of SDXL is not supported yet; drop --train-text-encoder")
    tok = pipe.tokenizer
    return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def training_scheduler(pipe):
    """The DDPM scheduler of the pipeline's noise schedule (training adds noise with it)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def draw_noise(scheduler, x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward process's noise and timesteps for a batch (the one sampler every loss uses)."""
    noise = batch_randn(x0.shape, gen).to(x0)
    t = batch_randint(scheduler.config.num_train_timesteps, len(x0), gen).to(x0.device)
    return noise, t


def noised(scheduler, x0: torch.Tensor, gen: torch.Generator):
    """(x_t, noise, t): x0 noised at random timesteps."""
    noise, t = draw_noise(scheduler, x0, gen)
    return scheduler.add_noise(x0, noise, t), noise, t


def denoising_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses: the noise, or the velocity for v-prediction (SD 2.x)."""
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
