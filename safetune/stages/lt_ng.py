"""Forgetting-based safe training (Pan et al., NeurIPS 2024): latent transformation (LT) and noise
guidance (NG) with a contrastive term that pushes the clean and harmful distributions apart.

Per step, one clean and one harmful batch. The predicted clean latent is
    x0_hat = (x_t - sqrt(1 - abar) e_hat) / sqrt(abar)
  LT: x0_hat is transformed per class before distances: clean x0_hat + shift, harmful -x0_hat - shift
      (the reference code's shift is 100).
  NG: the forward noise is shifted per class (clean noise + g, harmful noise - g, g = 1 in the reference
      code) while the regression target stays the unshifted noise.
Contrastive term over running class centres c_clean, c_harm (EMA of batch means, no gradient):
    intra = mean ||z_i - c_class(i)||^2 (per dimension)         pulls each class together
    inter = ||mean(z_clean) - mean(z_harm)|| (per-dimension RMS)  pushed beyond the margin l
    contrastive = intra_clean + intra_harm + lambda1 * max(0, l - inter)
The published text describes a hinge on the inter-class distance with margin l; the reference code
subtracts lambda1 * max(0, inter - l) instead, which rewards distance without bound. We use the
margin hinge (a bounded objective); the sign convention is the `inter_hinge` option.
    loss = denoising MSE (clean batch; and the harmful batch's MSE if harmful_denoising_weight > 0)
           + lambda_total * contrastive
mode="reference" reproduces what the reference code effectively trains: the contrastive term is
built from Python floats (no gradient) and harmful batches get no denoising loss.
noise="fixed" draws each image's noise once from its index (the paper's ablation); "changing" draws
fresh noise every step.

Beyond the paper (off by default), two terms that act on the harmful task itself:
  harm_margin > 0 adds harm_margin_weight * max(0, harm_margin - MSE_harm): bounded gradient ascent, the
      harmful batches' denoising error is pushed up to the margin and no further (plain ascent,
      harmful_denoising_weight < 0, has no bound and wrecks the model).
  attack_sim_steps = k > 0 evaluates that hinge after k simulated malicious fine-tuning steps
      (theta' = theta - attack_sim_lr * sign(grad MSE_harm), the shape of Adam's first steps, or Adam's
      update with its moments kept over the k steps: attack_sim_optimizer=adam) instead
      of at theta: the model is trained to stay bad at the harmful task after an attack, not only
      before it. First-order, as in first-order MAML: theta' depends on theta through the identity
      only, so the hinge's gradient at theta' is applied to theta. Cost: k + 1 extra harmful
      forward/backward passes per step.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import batch_randint
from ..config import ForgettingConfig, TrainConfig
from ..options import check
from ..errors import SafetuneError
from ..lora.weights import LoRA
from ..models.conditioning import (denoiser, denoising_target, draw_noise, encode_images, encode_text, predict,
                                   predicted_x0, training_scheduler, with_params)
from ..train import run_stage
from .losses import attacked_error


class ForgettingLoss:
    """LT / NG: denoising on clean batches plus the contrastive term (module docstring)."""
    def __init__(self, clean_latents, clean_cond, harm_latents, harm_cond, scheduler, batch_size: int,
                 config: ForgettingConfig):
        check(config)
        if config.attack_sim_steps and config.harm_margin <= 0:
            raise SafetuneError(f"attack_sim_steps={config.attack_sim_steps} acts through the harm margin, which is "
                                f"{config.harm_margin}: give --set harm_margin=M > 0 (e.g. 0.3) or drop attack_sim_steps")
        self.data = {"clean": (clean_latents, clean_cond), "harm": (harm_latents, harm_cond)}
        self.scheduler, self.batch_size, self.config = scheduler, batch_size, config
        self.centres: dict[str, torch.Tensor | None] = {"clean": None, "harm": None}
        self.last: dict[str, float] = {}

    # the running class centres are training state: the trainer checkpoints them (exact resume)
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running class centres (checkpointed: a resumed run is exact)."""
        return {cls: c for cls, c in self.centres.items() if c is not None}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the running class centres."""
        self.centres = {cls: state.get(cls) for cls in ("clean", "harm")}

    def _draw(self, cls: str, gen) -> tuple:
        latents, cond = self.data[cls]
        idx = batch_randint(len(latents), self.batch_size, gen)
        x0 = latents[idx]
        noise, t = draw_noise(self.scheduler, x0, gen)
        if self.config.noise == "fixed":  # each image's own noise, the same every time it is drawn
            noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(
                int(i) * 2 + (cls == "harm"))) for i in idx]).to(x0)
        return x0, noise, t, cond[idx]

    def _branch(self, unet, cls: str, batch: tuple, params: dict | None = None, shift: bool = True):
        """Denoising MSE and (transformed) x0_hat on one batch; `params` overrides the UNet's weights,
        shift=False uses the plain forward noise an attacker trains with."""
        unet = with_params(unet, params)
        x0, noise, t, cond = batch
        sign = 1.0 if cls == "clean" else -1.0
        forward_noise = noise + sign * self.config.ng_shift if self.config.variant == "ng" and shift else noise
        xt = self.scheduler.add_noise(x0, forward_noise, t)
        pred = predict(unet, xt, t, cond)
        mse = F.mse_loss(pred.float(), denoising_target(self.scheduler, x0, noise, t).float())
        x0_hat = predicted_x0(self.scheduler, xt, pred, t)
        if self.config.variant == "lt":
            x0_hat = x0_hat + self.config.lt_shift if cls == "clean" else -x0_hat - self.config.lt_shift
        return mse, x0_hat.flatten(1).float()

    def _harm_hinge(self, unet, gen) -> torch.Tensor:
        """max(0, harm_margin - harmful denoising error), after attack_sim_steps simulated attack steps."""
        cfg = self.config
        mse = attacked_error(lambda batch, params: self._branch(unet, "harm", batch, params, shift=False)[0],
                             lambda g: self._draw("harm", g), gen, unet, cfg.attack_sim_steps, cfg.attack_sim_lr,
                             cfg.attack_sim_optimizer)
        self.last["mse_harm_attacked"] = mse.item()
        return F.relu(cfg.harm_margin - mse)

    def _update_centre(self, cls: str, z: torch.Tensor) -> torch.Tensor:
        mean = z.detach().mean(0)
        old = self.centres[cls]
        m = self.config.centre_momentum
        self.centres[cls] = mean if old is None else m * old + (1 - m) * mean
        return self.centres[cls]

    def __call__(self, unet, step, gen):
        cfg = self.config
        mse_clean, z_clean = self._branch(unet, "clean", self._draw("clean", gen))
        mse_harm, z_harm = self._branch(unet, "harm", self._draw("harm", gen))
        c_clean, c_harm = self._update_centre("clean", z_clean), self._update_centre("harm", z_harm)
        intra = ((z_clean - c_clean) ** 2).mean() + ((z_harm - c_harm) ** 2).mean()
        inter = ((z_clean.mean(0) - z_harm.mean(0)) ** 2).mean().sqrt()
        if cfg.inter_hinge == "margin":
            hinge = F.relu(cfg.margin - inter)
        else:
            hinge = -F.relu(inter - cfg.margin)
        contrastive = intra + cfg.lambda1 * hinge
        self.last = {"mse_clean": mse_clean.item(), "mse_harm": mse_harm.item(), "intra": intra.item(),
                     "inter": inter.item(), "contrastive": contrastive.item()}
        if cfg.mode == "reference":
            # the reference code: contrastive from .item() floats (a constant), no harmful denoising loss
            return mse_clean + cfg.lambda_total * contrastive.item()
        loss = mse_clean + cfg.harmful_denoising_weight * mse_harm
        if cfg.mode == "contrastive":
            loss = loss + cfg.lambda_total * contrastive
        if cfg.harm_margin > 0:
            loss = loss + cfg.harm_margin_weight * self._harm_hinge(unet, gen)
        return loss


def forgetting_train(pipe, clean: tuple, harmful: tuple, forgetting, config: TrainConfig,
                     checkpoint_dir: Path | None = None, on_save=None, identity: dict | None = None) -> LoRA | None:
    """LT / NG safe training (safety alignment from an unsafe model, or reinforcement of an aligned
    one: the same call on another `pipe`). LoRA mode returns the LoRA; full mode trains in place."""
    (clean_images, clean_texts), (harm_images, harm_texts) = clean, harmful
    loss = ForgettingLoss(encode_images(pipe, clean_images), encode_text(pipe, clean_texts),
                          encode_images(pipe, harm_images), encode_text(pipe, harm_texts),
                          training_scheduler(pipe), config.batch_size, forgetting)
    return run_stage(denoiser(pipe), loss, config, checkpoint_dir, on_save=on_save,
                     desc=f"align {forgetting.variant} ({forgetting.mode})",
                     identity={"forgetting": asdict(forgetting), **(identity or {})})
