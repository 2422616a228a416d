"""Pretrain the miniature Stable Diffusion on ShapesWorld, from a seed.

Two phases, each checkpointed and resumable: the VAE (reconstruction + a small KL), then the text
encoder and UNet together on the VAE's latents (epsilon prediction, 10% empty captions so that
classifier-free guidance works). `safetune pretrain-shapes --out DIR` runs it.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint, step_generator
from ..data.shapesworld import caption, make_dataset, render
from ..errors import SafetuneError
from ..io import atomic_dir, write_json
from .tiny import build_components, assemble_pipeline, write_tokenizer

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    seed: int = 0
    pool: int = 20000          # distinct scenes; captions are re-drawn every time one is used
    vae_steps: int = 1500
    vae_batch: int = 64
    vae_lr: float = 1e-3
    kl_weight: float = 1e-4
    unet_steps: int = 5000
    unet_batch: int = 64
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1
    checkpoint_every: int = 500
    exclude_harmful: bool = False  # pretrain on `clean` only: the never-trained reference model
    vae_from: str | None = None    # reuse this pipeline's VAE (directory or 'shapes') and skip phase 1


def render_pool(examples) -> torch.Tensor:
    arr = np.stack([np.asarray(render(ex.scene), dtype=np.float32) for ex in examples])
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


def _cosine_lr(step: int, total: int, warmup: int = 100) -> float:
    if step < warmup:
        return (step + 1) / warmup
    # a Python float: a numpy one lands in the optimizer state, which weights_only loading refuses
    return float(0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup))) * 0.9 + 0.1)


def _run_phase(name, modules, params, total, lr, ckpt_dir, every, step_fn, seed):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, total))
    start = 0
    ckpt = ckpt_dir / name
    if (ckpt / "state.json").exists():
        start = load_checkpoint(ckpt, modules, opt)["step"]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, total), last_epoch=start - 1)
        log.info("resuming %s at step %d", name, start)
    bar = tqdm(range(start, total), desc=f"pretrain {name}", initial=start, total=total)
    for step in bar:
        loss = step_fn(step_generator(seed, step), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if not torch.isfinite(loss):
            save_checkpoint(ckpt, step, modules, opt)
            raise FloatingPointError(f"{name}: loss is {loss.item()} at step {step}")
        if (step + 1) % every == 0 or step + 1 == total:
            save_checkpoint(ckpt, step + 1, modules, opt)


def pretrain(out: str | Path, config: PretrainConfig = PretrainConfig()) -> Path:
    out = Path(out)
    ckpt_dir = out.with_name(out.name + ".checkpoints")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer(ckpt_dir / "tokenizer")
    parts = build_components(seed=config.seed, tokenizer_dir=ckpt_dir / "tokenizer")
    vae, text_encoder, unet, tokenizer = parts["vae"], parts["text_encoder"], parts["unet"], parts["tokenizer"]
    examples = make_dataset("clean" if config.exclude_harmful else "pretrain", config.pool, seed=config.seed)
    images = render_pool(examples)
    if config.vae_from:
        vae = parts["vae"] = _load_vae(config.vae_from)

    def vae_step(gen, step):
        x = images[torch.randint(len(images), (config.vae_batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        return F.mse_loss(recon, x) + config.kl_weight * posterior.kl().mean() / posterior.mean[0].numel()

    if not config.vae_from:
        _run_phase("vae", {"vae": vae}, list(vae.parameters()), config.vae_steps, config.vae_lr,
                   ckpt_dir, config.checkpoint_every, vae_step, config.seed)
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in images.split(512)])
    if not config.vae_from:  # a reused VAE keeps its own scale: the models then share a latent space
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    latents = latents * vae.config.scaling_factor
    noise_scheduler = _training_scheduler(parts["scheduler"])

    def unet_step(gen, step):
        rng = random.Random(config.seed * 1_000_003 + step)
        idx = torch.randint(len(latents), (config.unet_batch,), generator=gen)
        texts = ["" if rng.random() < config.caption_dropout else caption(examples[i].scene, rng)
                 for i in idx.tolist()]
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(x0),), generator=gen)
        pred = unet(noise_scheduler.add_noise(x0, noise, t), t, text_encoder(ids)[0]).sample
        return F.mse_loss(pred, noise)

    params = list(unet.parameters()) + list(text_encoder.parameters())
    _run_phase("unet", {"unet": unet, "text_encoder": text_encoder}, params, config.unet_steps,
               config.unet_lr, ckpt_dir, config.checkpoint_every, unet_step, config.seed + 1)
    pipe = assemble_pipeline(parts)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / "safetune_pretrain.json", asdict(config))
    return out


def _load_vae(source: str):
    from diffusers import AutoencoderKL

    from .loading import resolve_model

    try:
        return AutoencoderKL.from_pretrained(resolve_model(source), subfolder="vae")
    except (OSError, ValueError) as exc:
        raise SafetuneError(f"{source}: no VAE to reuse ({str(exc).splitlines()[0]}); give a diffusers "
                            "directory with a vae/ folder, or 'shapes'") from exc


def _training_scheduler(sampling_scheduler):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(sampling_scheduler.config)
