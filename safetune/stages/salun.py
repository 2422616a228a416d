"""Saliency unlearning (SalUn; Fan et al. 2024, SalUn: Empowering Machine Unlearning via
Gradient-based Weight Saliency in Both Image Classification and Generation, arXiv 2310.12508),
its recipe for removing a concept from Stable Diffusion:

1. **Saliency mask.** The gradient of the concept's loss, summed over batches of the concept's
   images noised at random timesteps: the MSE between the noise (the family's target) and the
   guided prediction (1 + g) e(x_t, c) - g e(x_t, ""), c a concept prompt. The `sparsity` share of
   UNet weights with the largest |gradient| are salient; only they are trained.
2. **Random-label forgetting** on the salient weights: on the concept's images, e(x_t, c) is
   trained to give what the model currently gives for an anchor prompt (no gradient through that
   target), plus `retain_weight` x the diffusion loss on retain images.

The paper's code keeps the weights of *rank* below the threshold in ascending |gradient| order,
which selects the least salient half; we follow the paper's text (the largest gradients), the
method's stated idea. The result is full UNet weights (a sparse difference, not a low-rank one).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import batch_randint
from ..config import SalUnConfig, TrainConfig
from ..models.conditioning import denoiser, denoising_target, encode_images, encode_text, noised, predict, training_scheduler
from ..train import run_stage
from .losses import DenoisingLoss

log = logging.getLogger(__name__)


def saliency_mask(unet, concept_latents: torch.Tensor, concept_cond, uncond, scheduler, settings: SalUnConfig,
                  batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """{parameter name: bool mask}: the `settings.sparsity` share of UNet weights whose gradient of
    the guided concept loss is largest in magnitude (summed over `settings.mask_batches` batches)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(unet.named_parameters())
    grads = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    was_training = [p.requires_grad for p in params.values()]
    unet.requires_grad_(True)
    try:
        for _ in range(settings.mask_batches):
            idx = batch_randint(len(concept_latents), batch_size, gen)
            cidx = batch_randint(len(concept_cond), batch_size, gen)
            x0 = concept_latents[idx]
            xt, noise, t = noised(scheduler, x0, gen)
            guided = (1 + settings.guidance) * predict(unet, xt, t, concept_cond[cidx]) - \
                settings.guidance * predict(unet, xt, t, uncond[torch.zeros_like(cidx)])
            loss = F.mse_loss(guided.float(), denoising_target(scheduler, x0, noise, t).float())
            unet.zero_grad(set_to_none=True)
            loss.backward()
            for name, p in params.items():
                if p.grad is not None:
                    grads[name] += p.grad.float()
    finally:
        unet.zero_grad(set_to_none=True)
        for p, flag in zip(params.values(), was_training):
            p.requires_grad_(flag)
    magnitudes = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = max(1, round(settings.sparsity * magnitudes.numel()))
    threshold = torch.topk(magnitudes, keep, sorted=False).values.min()
    return {name: g.abs() >= threshold for name, g in grads.items()}


class SalUnLoss:
    """On the concept's images, e(x_t, c) -> e(x_t, c_anchor) of the model being trained (held
    fixed); plus retain_weight x the diffusion loss on retain images."""

    def __init__(self, concept_latents, concept_cond, anchor_cond, retain: DenoisingLoss, scheduler, batch_size: int,
                 retain_weight: float):
        self.x0, self.cond, self.anchor, self.retain = concept_latents, concept_cond, anchor_cond, retain
        self.scheduler, self.batch_size, self.retain_weight = scheduler, batch_size, retain_weight

    def __call__(self, unet, step, gen):
        idx = batch_randint(len(self.x0), self.batch_size, gen)
        cidx = batch_randint(len(self.cond), self.batch_size, gen)
        xt, _, t = noised(self.scheduler, self.x0[idx], gen)
        with torch.no_grad():
            target = predict(unet, xt, t, self.anchor[cidx % len(self.anchor)])
        forget = F.mse_loss(predict(unet, xt, t, self.cond[cidx]).float(), target.float())
        return forget + self.retain_weight * self.retain(unet, step, gen)


def salun_train(pipe, concepts: list[str], clean: tuple, harmful: tuple, settings: SalUnConfig, config: TrainConfig,
                checkpoint_dir: Path | None = None, identity: dict | None = None) -> dict[str, torch.Tensor]:
    """Train `pipe`'s UNet in place by SalUn (module docstring); returns the saliency mask."""
    scheduler = training_scheduler(pipe)
    concept_latents = encode_images(pipe, harmful[0])
    concept_cond, uncond = encode_text(pipe, concepts), encode_text(pipe, [""])
    mask = saliency_mask(denoiser(pipe), concept_latents, concept_cond, uncond, scheduler, settings, config.batch_size,
                         config.seed + 23)
    retain = DenoisingLoss(encode_images(pipe, clean[0]), encode_text(pipe, clean[1]), scheduler, config.batch_size)
    loss = SalUnLoss(concept_latents, concept_cond, encode_text(pipe, [settings.anchor]), retain, scheduler,
                     config.batch_size, settings.retain_weight)
    params = dict(denoiser(pipe).requires_grad_(True).named_parameters())  # a hook needs a tensor that takes gradients
    hooks = [params[name].register_hook(lambda grad, m=m: grad * m.to(grad.dtype)) for name, m in mask.items()]
    try:
        run_stage(denoiser(pipe), loss, replace(config, mode="full", train_text_encoder=False), checkpoint_dir,
                  desc="align salun", identity={"method": "salun", "concepts": concepts,
                                                "settings": asdict(settings), **(identity or {})})
    finally:
        for hook in hooks:
            hook.remove()
    trained = sum(int(m.sum()) for m in mask.values())
    log.info("salun: trained %d of %d UNet weights (%.0f%%)", trained, sum(m.numel() for m in mask.values()),
             100 * trained / sum(m.numel() for m in mask.values()))
    return mask
