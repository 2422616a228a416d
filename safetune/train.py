"""The one training loop. A stage is a loss and a set of trainable parameters:

    benign or malicious fine-tuning   DenoisingLoss on an image folder    full UNet or a LoRA
    ESD / SDD safety alignment        ESDLoss / SDDLoss on a concept      a LoRA (or cross-attention)
    LT / NG safe training             ForgettingLoss on clean + harmful   full UNet or a LoRA

accelerate places it on devices (`accelerate launch` for several GPUs), gradient accumulation and
mixed precision come from it; checkpoints are safetensors + an optimizer state loaded with
weights_only; batches are drawn from generators seeded by (seed, step), so a resumed run makes
exactly the updates an uninterrupted one makes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, read_state, save_checkpoint, sharding, step_generator
from .config import TrainConfig
from .options import check
from .errors import SafetuneError
from .lora.adapter import (
    TEXT_ENCODER_TARGETS,
    add_adapter,
    check_targets,
    extract,
    has_adapter,
    is_transformer,
    remove_adapter,
    target_modules,
)
from .lora.weights import LoRA
from .messages import progress_interval, warn_if_busy

log = logging.getLogger(__name__)

def prepare_trainable(unet, config: TrainConfig, text_encoders=()) -> list[torch.nn.Parameter]:
    """Freeze the models, then open what the stage trains: a new LoRA, every weight, or some modules'
    (the denoiser's; the text encoders' too with config.train_text_encoder)."""
    check_targets(config.targets)
    unet.requires_grad_(False)
    for text_encoder in text_encoders:
        text_encoder.requires_grad_(False)
    if config.train_text_encoder and (not text_encoders or config.mode == "partial"):
        raise SafetuneError("training the text encoder needs --mode full or lora and a loss that encodes text "
                            "(fine-tuning); drop --train-text-encoder")
    trained = list(text_encoders) if config.train_text_encoder else []
    if config.mode == "lora":
        params = add_adapter(unet, target_modules(unet, config.targets), config.lora_rank, config.alpha,
                             config.seed)
        for i, text_encoder in enumerate(trained):
            params += add_adapter(text_encoder, target_modules(text_encoder, TEXT_ENCODER_TARGETS, "text encoder"),
                                  config.lora_rank, config.alpha, config.seed + 1 + i)
        return params
    if config.mode == "full":
        models = [unet] + trained
        for model in models:
            model.requires_grad_(True)
        return [p for model in models for p in model.parameters()]
    names = set(target_modules(unet, config.targets))  # partial: the targets' own weights
    params = [p for n, m in unet.named_modules() if n in names for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def extract_lora(unet, config: TrainConfig, text_encoders=()) -> LoRA:
    """The trained adapter(s) as one LoRA ("unet." or "transformer.", and "text_encoder."/"text_encoder_2."
    modules: the encoders in the pipeline's order)."""
    lora = extract(unet, "transformer" if is_transformer(unet) else "unet", config.lora_rank, config.alpha)
    for i, text_encoder in enumerate(text_encoders):
        if has_adapter(text_encoder):
            lora = lora + extract(text_encoder, "text_encoder" + (f"_{i + 1}" if i else ""), config.lora_rank,
                                  config.alpha)
    return lora


def remove_lora(unet, text_encoders=()) -> None:
    """Drop the training adapters and peft's wrappers: plain diffusers/transformers models again."""
    for model in (unet, *text_encoders):
        if has_adapter(model):
            remove_adapter(model)


class EMA:
    """An exponential moving average of parameters: the trainer's `ema_decay` and SDD's teacher.
    (diffusers' EMAModel warms its decay up as (1 + n) / (10 + n); SDD's recipe is a fixed 0.999.)"""

    def __init__(self, params, decay: float):
        self.params, self.decay = list(params), decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        """Move the average towards the current parameters."""
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), 1 - self.decay)

    @torch.no_grad()
    def copy_to_model(self):
        """Write the average into the parameters."""
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in the parameters for the duration of a `with` block."""
        saved = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged tensors (checkpointed)."""
        return {str(i): s for i, s in enumerate(self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged tensors."""
        self.shadow = [state[str(i)].clone() for i in range(len(state))]


class _Trainable(torch.nn.Module):
    """The trainable tensors as one module, so checkpoints hold them and nothing else."""

    def __init__(self, params):
        super().__init__()
        self.items = torch.nn.ParameterList(params)


Loss = Callable[[torch.nn.Module, int, torch.Generator], torch.Tensor]


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate at `step` relative to config.lr: constant, or linear warmup then a cosine
    down to 0.1 (pretraining)."""
    if config.lr_schedule == "constant":
        return 1.0
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress)) * 0.9 + 0.1


def check_tracker(name: str | None) -> None:
    """Refuse a tracker that is not installed (accelerate would only warn and log nothing)."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    if name is None:
        return
    if name not in available:
        raise SafetuneError(f"--report-to {name}: choose tensorboard or wandb")
    if not available[name]():
        hint = "pip install 'safetune[tracking]'" if name == "tensorboard" else "pip install wandb"
        raise SafetuneError(f"--report-to {name}: {name} is not installed; {hint}")


def _init_trackers(accelerator, config: TrainConfig, desc: str) -> None:
    flat = {k: (str(v) if isinstance(v, (list, type(None))) else v) for k, v in asdict(config).items()}
    accelerator.init_trackers(desc.replace(" ", "_"), config=flat)


def run_settings(config: TrainConfig, identity: dict | None = None) -> dict:
    """What shapes a run's result: its training settings and what the caller says it trains on
    (model, data, loss, LoRAs on top). How often it checkpoints does not."""
    train_settings = {k: v for k, v in asdict(config).items()
                      if k not in ("checkpoint_every", "gradient_checkpointing", "report_to", "logging_dir")}
    return json.loads(json.dumps({"train": train_settings, **(identity or {})}, sort_keys=True, default=str))


def _check_resume(checkpoint_dir: Path, state: dict, settings: dict, desc: str) -> None:
    saved = state.get("settings")
    if saved is None or saved == settings:
        return
    flat = lambda d, p="": {f"{p}{k}": v for k, x in d.items()  # noqa: E731
                             for k, v in (flat(x, f"{p}{k}.").items() if isinstance(x, dict) else [(k, x)])}
    old, new = flat(saved), flat(settings)
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in differ[:4])
    raise SafetuneError(f"{checkpoint_dir}: an interrupted {desc} with other settings left this checkpoint "
                        f"({shown}); run again with the same settings to resume it, or delete {checkpoint_dir} "
                        "to start over")


def _plan(config: TrainConfig, start: int, denoiser: str = "UNet") -> str:
    """One line: what this training run does."""
    what = {"lora": f"a rank-{config.lora_rank} LoRA on {config.targets}", "full": f"every {denoiser} weight",
            "token": "one new token's embedding (every weight frozen)",
            "partial": f"the UNet's own {config.targets} weights"}.get(config.mode, config.mode)
    text = " and the text encoder" if config.train_text_encoder else ""
    batch = f"batch {config.batch_size}" + (f" x {config.grad_accum} accumulated" if config.grad_accum > 1 else "")
    left = f"{config.steps - start} of {config.steps} steps" if start else \
        f"{config.steps} step{'s' if config.steps > 1 else ''}"
    return f"training {what}{text}: {left}, lr {config.lr:g}, {batch}, seed {config.seed}"


def _first_last(values: list[float]) -> str:
    """'0.1 -> 0.02': a loss term's means over its first and last 10 steps (of the steps that had it)."""
    n = min(10, len(values))
    return f"{sum(values[:n]) / n:.4g} -> {sum(values[-n:]) / n:.4g}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def train(unet, loss_fn: Loss, config: TrainConfig, checkpoint_dir: Path | None = None,
          on_save: Callable[[int, torch.nn.Module], None] | None = None, desc: str = "train",
          text_encoders=(), identity: dict | None = None):
    """Train `unet` (and `text_encoders` with config.train_text_encoder) in place on `loss_fn` (with
    mode "token", only the parameters the loss holds: concept inversion's new token);
    returns (unet, per-step losses). A checkpoint in `checkpoint_dir` is resumed only if it was
    written with the same settings (`run_settings(config, identity)`)."""
    from accelerate import Accelerator

    check(config)  # as declared on TrainConfig, also after a caller changed a field of a built config
    check_tracker(config.report_to)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=config.mixed_precision,
                              log_with=config.report_to, project_dir=config.logging_dir)
    if config.report_to:
        _init_trackers(accelerator, config, desc)
    if config.mode == "token":  # concept inversion (stages.inversion): the loss holds the one trainable vector
        unet.requires_grad_(False)
        params = loss_fn.parameters()
    else:
        params = prepare_trainable(unet, config, text_encoders)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    ema = EMA(params, config.ema_decay) if config.ema_decay else None
    saved = {"trainable": _Trainable(params)}
    if hasattr(loss_fn, "state_dict"):  # a loss with running state (SDD's teacher, LT/NG's class centres)
        saved["loss"] = loss_fn
    if ema:
        saved["ema"] = _Trainable([torch.nn.Parameter(s, requires_grad=False) for s in ema.shadow])
    unet, optimizer = accelerator.prepare(unet, optimizer)
    processes = accelerator.num_processes
    if config.train_text_encoder and getattr(loss_fn, "through_pipeline", False) and processes > 1:
        raise SafetuneError("training the text encoders of SDXL, SD3 or Flux runs in one process (the pipeline "
                            "encodes the captions, outside accelerate's wrapper); run it without accelerate launch, "
                            "or drop --train-text-encoder")
    if config.train_text_encoder:  # SD 1.x/2.x: the loss encodes token ids with the prepared (wrapped) encoder
        loss_fn.text_encoder = accelerator.prepare(text_encoders[0])
    # data parallel: the global batch is batch_size x processes x grad_accum; a resume needs the same split
    settings = run_settings(config, {**(identity or {}), **({"processes": processes} if processes > 1 else {})})

    def checkpoint(step):  # one writer; the others wait until it is on disk
        if accelerator.is_main_process:
            save_checkpoint(checkpoint_dir, step, saved, optimizer, {"settings": settings})
        accelerator.wait_for_everyone()

    start = 0
    if checkpoint_dir is not None and (checkpoint_dir / "state.json").exists():
        _check_resume(checkpoint_dir, read_state(checkpoint_dir), settings, desc)
        start = load_checkpoint(checkpoint_dir, saved, optimizer)["step"]
        if accelerator.is_main_process:
            log.info("%s: resuming at step %d of %d from %s", desc, start, config.steps, checkpoint_dir)
    if accelerator.is_main_process:
        log.info("%s: %s%s", desc, _plan(config, start, "transformer" if is_transformer(accelerator.unwrap_model(unet)) else "UNet"),
                 f" per process; {processes} processes, global batch {config.batch_size * processes * config.grad_accum}"
                 if processes > 1 else "")
        warn_if_busy()
    began = time.perf_counter()
    if on_save and 0 in config.save_at and start == 0:
        at_start = on_save(0, unet) or {}
        if config.report_to and at_start:
            accelerator.log(at_start, step=0)
    losses, parts = [], {}  # parts: the loss's named terms per step, where it reports them (loss_fn.last)
    with sharding(accelerator.process_index, processes):  # each process draws its slice of the global batch
        for step in tqdm(range(start, config.steps), desc=desc, initial=start, total=config.steps,
                         disable=not accelerator.is_local_main_process, mininterval=progress_interval()):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(step, config)
            for micro in range(config.grad_accum):
                with accelerator.accumulate(unet):
                    loss = loss_fn(unet, step, step_generator(config.seed, step * config.grad_accum + micro))
                    if not torch.isfinite(loss):
                        if checkpoint_dir is not None and accelerator.is_main_process:
                            save_checkpoint(checkpoint_dir, step, saved, optimizer, {"settings": settings})
                        raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}; "
                                                 f"last good state kept in {checkpoint_dir}")
                    accelerator.backward(loss)
                    if config.mode == "token" and processes > 1:  # the loss's own vector is outside DDP's model
                        for p in params:
                            p.grad = accelerator.reduce(p.grad, reduction="mean")
                    if accelerator.sync_gradients and config.max_grad_norm:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            if ema:
                ema.update()
            losses.append(loss.item())
            done = step + 1
            terms = getattr(loss_fn, "last", {})
            for name, value in terms.items():
                parts.setdefault(name, []).append(value)
            logged = {"loss": losses[-1], "lr": optimizer.param_groups[0]["lr"], **terms}
            if on_save and done in config.save_at:
                logged.update(on_save(done, unet) or {})  # before the checkpoint: a resumed run never skips a snapshot
            if config.report_to:
                accelerator.log(logged, step=done)
            if checkpoint_dir is not None and (done % config.checkpoint_every == 0 or done == config.steps):
                checkpoint(done)
    if ema:
        ema.copy_to_model()
    if accelerator.is_main_process and losses:
        log.info("%s: done in %s; loss %s (means of the first and last %d)%s", desc, _duration(time.perf_counter() - began),
                 _first_last(losses), min(10, len(losses)),
                 "".join(f"; {name} {_first_last(values)}" for name, values in parts.items()))
    if config.report_to:
        accelerator.end_training()
    unet = accelerator.unwrap_model(unet)
    if config.train_text_encoder:
        loss_fn.text_encoder = accelerator.unwrap_model(loss_fn.text_encoder)
    accelerator.wait_for_everyone()
    if checkpoint_dir is not None and accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return unet, losses


def run_stage(unet, loss_fn: Loss, config: TrainConfig, checkpoint_dir: Path | None = None,
              on_save=None, desc: str = "train", text_encoders=(), identity: dict | None = None) -> LoRA | None:
    """Train one stage. A LoRA stage returns its LoRA and leaves the models as they were; any other
    stage leaves its trained weights in the models and returns None."""
    unet, _ = train(unet, loss_fn, config, checkpoint_dir, on_save=on_save, desc=desc, text_encoders=text_encoders,
                    identity=identity)
    if config.mode != "lora":
        return None
    lora = extract_lora(unet, config, text_encoders)
    remove_lora(unet, text_encoders)
    return lora
