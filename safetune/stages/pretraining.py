"""Pretrain the miniature Stable Diffusion on ShapesWorld, from a seed.

Two phases on the one trainer, each checkpointed and resumable: the VAE (reconstruction + a small
KL), then the text encoder and UNet together on the VAE's latents (epsilon prediction, 10% empty
captions so that classifier-free guidance works). `safetune pretrain-shapes --out DIR` runs it.
"""
from __future__ import annotations

import logging
import random
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import batch_randint
from ..config import PretrainConfig, TrainConfig
from ..data.folder import render_examples
from ..data.shapesworld import caption, make_dataset
from ..errors import SafetuneError
from ..io import atomic_dir, output_dir, write_json
from ..models.conditioning import Cond, noised, predict
from ..models.tiny import assemble_pipeline, build_components, write_tokenizer
from ..train import train

log = logging.getLogger(__name__)


class VAELoss:
    """Reconstruction + a small KL on renders (the VAE phase)."""

    def __init__(self, images, batch_size: int, kl_weight: float):
        self.images, self.batch_size, self.kl_weight = images, batch_size, kl_weight

    def __call__(self, vae, step, gen):
        x = self.images[batch_randint(len(self.images), self.batch_size, gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        return F.mse_loss(recon, x) + self.kl_weight * posterior.kl().mean() / posterior.mean[0].numel()


class CaptionedDenoisingLoss:
    """The text-encoder + UNet phase: each scene gets a fresh caption every time it is drawn
    (captions drawn from a generator seeded by (seed, step): a resumed run draws the same ones),
    the empty caption `caption_dropout` of the time so that classifier-free guidance works. The
    trainer sets `text_encoder` (trained with the UNet)."""

    def __init__(self, latents, examples, tokenizer, scheduler, batch_size: int, caption_dropout: float, seed: int):
        self.latents, self.examples, self.tokenizer, self.scheduler = latents, examples, tokenizer, scheduler
        self.batch_size, self.caption_dropout, self.seed = batch_size, caption_dropout, seed
        self.text_encoder = None

    def __call__(self, unet, step, gen):
        rng = random.Random(self.seed * 1_000_003 + step)
        idx = batch_randint(len(self.latents), self.batch_size, gen)
        texts = ["" if rng.random() < self.caption_dropout else caption(self.examples[i].scene, rng)
                 for i in idx.tolist()]
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        xt, noise, t = noised(self.scheduler, self.latents[idx], gen)
        return F.mse_loss(predict(unet, xt, t, Cond(self.text_encoder(ids)[0])), noise)


def pretrain(out: str | Path, config: PretrainConfig = PretrainConfig()) -> Path:
    """Both phases on the one trainer (cosine schedule with 100 warmup steps, AdamW, clipping 1.0);
    each phase checkpoints and resumes, and the finished VAE is kept for a resumed second phase."""
    out = Path(out)
    ckpt_dir = out.with_name(out.name + ".checkpoints")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer(ckpt_dir / "tokenizer")
    parts = build_components(seed=config.seed, tokenizer_dir=ckpt_dir / "tokenizer")
    examples = make_dataset("clean" if config.exclude_harmful else "pretrain", config.pool, seed=config.seed)
    images = render_examples(examples)
    identity = {"pretrain": asdict(config)}

    def phase(steps, lr, batch, seed):
        return TrainConfig(steps=steps, lr=lr, batch_size=batch, mode="full", lr_schedule="cosine", warmup_steps=100,
                           seed=seed, checkpoint_every=config.checkpoint_every)

    vae_done = ckpt_dir / "vae-done"
    if config.vae_from:
        parts["vae"] = _load_vae(config.vae_from)
    elif vae_done.is_dir():
        parts["vae"] = _load_vae(str(vae_done), subfolder=None)
    else:
        train(parts["vae"], VAELoss(images, config.vae_batch, config.kl_weight),
              phase(config.vae_steps, config.vae_lr, config.vae_batch, config.seed), ckpt_dir / "vae",
              desc="pretrain vae", identity=identity)
        with torch.no_grad():
            latents = torch.cat([parts["vae"].encode(chunk).latent_dist.mode() for chunk in images.split(512)])
        parts["vae"].register_to_config(scaling_factor=float(1.0 / latents.std()))
        with atomic_dir(vae_done) as tmp:
            parts["vae"].save_pretrained(tmp)
    vae = parts["vae"].requires_grad_(False).eval()
    with torch.no_grad():  # a reused VAE keeps its own scale: the models then share one latent space
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in images.split(512)])
    latents = latents * vae.config.scaling_factor
    loss = CaptionedDenoisingLoss(latents, examples, parts["tokenizer"], _training_scheduler(parts["scheduler"]),
                                  config.unet_batch, config.caption_dropout, config.seed)
    unet_phase = replace(phase(config.unet_steps, config.unet_lr, config.unet_batch, config.seed + 1),
                         train_text_encoder=True)
    train(parts["unet"], loss, unet_phase, ckpt_dir / "unet", desc="pretrain unet", text_encoders=[parts["text_encoder"]],
          identity=identity)
    pipe = assemble_pipeline(parts)
    with output_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / "safetune_pretrain.json", asdict(config))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return out


def _load_vae(source: str, subfolder: str | None = "vae"):
    from diffusers import AutoencoderKL

    from ..models.loading import resolve_model

    try:
        return AutoencoderKL.from_pretrained(resolve_model(source) if subfolder else source, subfolder=subfolder)
    except (OSError, ValueError) as exc:
        raise SafetuneError(f"{source}: no VAE to reuse ({str(exc).splitlines()[0]}); give a diffusers "
                            "directory with a vae/ folder, or 'shapes'") from exc


def _training_scheduler(sampling_scheduler):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(sampling_scheduler.config)
