"""Fine-tuning (benign or malicious: the same loss on other data), full or LoRA, optionally on top
of safety LoRAs merged into the weights first (the baselines of the Modular LoRA paper)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import TrainConfig
from ..lora.weights import LoRA, merge_into
from ..models.conditioning import (caption_ids, denoiser, encode_images, encode_text, family_of,
                                   trained_text_encoders, training_scheduler)
from ..train import run_stage
from .losses import DenoisingLoss


def finetune(pipe, images, texts: list[str], config: TrainConfig, on_top: list[tuple[LoRA, float]] | None = None,
             checkpoint_dir: Path | None = None, on_save: Callable | None = None,
             identity: dict | None = None, desc: str | None = None) -> LoRA | None:
    """Fine-tune `pipe` in place. LoRA mode returns dW_ft (UNet, and text encoder with
    config.train_text_encoder) and leaves the models as they were (with any `on_top` LoRAs merged);
    full mode leaves the fine-tuned weights in the models and returns None. `desc` names the run in
    its messages and progress bar (default: finetune MODE)."""
    if on_top:
        merge_into(pipe, on_top)
    latents = encode_images(pipe, images)
    cond = encode_text(pipe, texts)
    text = {}
    if config.train_text_encoder:  # SD 1.x/2.x: token ids through one CLIP; the others: the pipeline's encoding
        text = {"input_ids": caption_ids(pipe, texts)} if family_of(pipe) == "sd" else {"pipe": pipe, "captions": texts}
    loss = DenoisingLoss(latents, cond, training_scheduler(pipe), config.batch_size, **text)
    return run_stage(denoiser(pipe), loss, config, checkpoint_dir, on_save=on_save, desc=desc or f"finetune {config.mode}",
                     text_encoders=trained_text_encoders(pipe) if config.train_text_encoder else (), identity=identity)
