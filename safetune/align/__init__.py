"""Safety alignment as a LoRA on the base weights W0 (dW_safe): ESD-x, ESD-u, SDD."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ..errors import SafetuneError
from ..lora.weights import LoRA
from ..models.conditioning import encode_text, sample_latents, training_scheduler
from ..train import TrainConfig, run_stage
from .losses import ESDLoss, SDDLoss

# The safety-LoRA recipe every command and study starts from (rank 4 on cross-attention, as ESD-x).
ESD_X = TrainConfig(steps=400, lr=1e-3, batch_size=32, mode="lora", targets="xattn")

METHODS = {
    # method: (loss, the modules its LoRA sits on)
    "esd-x": ("esd", "xattn"),
    "esd-u": ("esd", "non-xattn"),
    "esd": ("esd", "xattn"),
    "sdd": ("sdd", "xattn"),
}


def align_lora(pipe, method: str, concepts: list[str], config: TrainConfig, eta: float = 1.0,
               n_concept_samples: int = 128, checkpoint_dir: Path | None = None, identity: dict | None = None) -> LoRA:
    """Train dW_safe on `pipe`'s UNet (left unchanged afterwards) and return it."""
    if method not in METHODS:
        raise SafetuneError(f"unknown alignment method {method!r}; choose one of {sorted(METHODS)} "
                            "(lt and ng: see `safetune align --help`)")
    if not concepts:
        raise SafetuneError("give at least one --concept prompt")
    kind, targets = METHODS[method]
    prompts = [concepts[i % len(concepts)] for i in range(n_concept_samples)]
    x0 = sample_latents(pipe, prompts, seed=config.seed + 17)
    cond, uncond = encode_text(pipe, concepts), encode_text(pipe, [""])
    scheduler = training_scheduler(pipe)
    if kind == "esd":
        loss = ESDLoss(x0, cond, uncond, scheduler, config.batch_size, eta=eta)
    else:
        loss = SDDLoss(x0, cond, uncond, scheduler, config.batch_size)
    identity = {"method": method, "concepts": concepts, "eta": eta, **(identity or {})}
    return run_stage(pipe.unet, loss, replace(config, mode="lora", targets=targets), checkpoint_dir,
                     desc=f"align {method}", identity=identity)


def forgetting_train(pipe, clean: tuple, harmful: tuple, forgetting, config: TrainConfig,
                     checkpoint_dir: Path | None = None, on_save=None, identity: dict | None = None) -> LoRA | None:
    """LT / NG safe training (safety alignment from an unsafe model, or reinforcement of an aligned
    one: the same call on another `pipe`). LoRA mode returns the LoRA; full mode trains in place."""
    from ..models.conditioning import encode_images
    from .forgetting import ForgettingLoss

    (clean_images, clean_texts), (harm_images, harm_texts) = clean, harmful
    loss = ForgettingLoss(encode_images(pipe, clean_images), encode_text(pipe, clean_texts),
                          encode_images(pipe, harm_images), encode_text(pipe, harm_texts),
                          training_scheduler(pipe), config.batch_size, forgetting)
    return run_stage(pipe.unet, loss, config, checkpoint_dir, on_save=on_save,
                     desc=f"align {forgetting.variant} ({forgetting.mode})",
                     identity={"forgetting": asdict(forgetting), **(identity or {})})


def distill_train(pipe, clean: tuple, concepts: list[str], distill, config: TrainConfig,
                  checkpoint_dir: Path | None = None, on_save=None, identity: dict | None = None) -> None:
    """Distort-and-distill (align.distill): the UNet (and text encoder) of `pipe` are distorted, then
    trained in place, full weights, to match the undistorted model on the retain set `clean`."""
    import copy

    from ..models.conditioning import caption_ids, encode_images
    from .distill import RetainDistillLoss, distort_

    images, texts = clean
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False).eval()
    latents = encode_images(pipe, images)
    teacher_cond, teacher_uncond = encode_text(pipe, texts), encode_text(pipe, [""])
    concept_latents = None
    if distill.concept_weight > 0:
        prompts = [concepts[i % len(concepts)] for i in range(128)]
        concept_latents = sample_latents(pipe, prompts, seed=config.seed + 17)
    distort_(pipe.unet, distill.noise, distill.shrink, config.seed)
    if distill.text_encoder:
        distort_(pipe.text_encoder, distill.noise, distill.shrink, config.seed + 1)
    loss = RetainDistillLoss(latents, caption_ids(pipe, texts), teacher_cond, encode_text(pipe, texts), teacher_uncond,
                             training_scheduler(pipe), config.batch_size, teacher, distill,
                             uncond_ids=caption_ids(pipe, [""]), student_uncond=encode_text(pipe, [""]),
                             concept_latents=concept_latents, concept_ids=caption_ids(pipe, concepts),
                             student_concept=encode_text(pipe, concepts))
    run_stage(pipe.unet, loss, replace(config, mode="full", train_text_encoder=distill.text_encoder), checkpoint_dir,
              on_save=on_save, desc="align dd", text_encoder=pipe.text_encoder,
              identity={"distill": asdict(distill), "concepts": concepts, **(identity or {})})
