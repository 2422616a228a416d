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

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint, step_generator
from .errors import SafetuneError
from .lora.weights import LoRA

log = logging.getLogger(__name__)

ADAPTER = "safetune"
# which UNet modules a LoRA (or a partial fine-tuning) touches
TARGETS = {
    "attn": r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$",
    "xattn": r"attn2\.(to_q|to_k|to_v|to_out\.0)$",
    "non-xattn": r"(attn1\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2)$",
}


@dataclass
class TrainConfig:
    steps: int = 500
    lr: float = 1e-4
    batch_size: int = 32
    grad_accum: int = 1
    mixed_precision: str = "no"         # "fp16" / "bf16" where the device has it
    ema_decay: float | None = None      # keep an EMA of the trainable weights and save it
    max_grad_norm: float = 1.0
    seed: int = 0
    mode: str = "lora"                  # "lora" | "full" | "partial" (the TARGETS modules' own weights)
    targets: str = "attn"               # key of TARGETS
    lora_rank: int = 4
    lora_alpha: float = 4.0
    gradient_checkpointing: bool = False  # trade compute for memory on real-size UNets
    checkpoint_every: int = 100
    save_at: list[int] = field(default_factory=list)  # steps at which on_save() is called (0 allowed)


def target_modules(unet, targets: str) -> list[str]:
    if targets not in TARGETS:
        raise SafetuneError(f"unknown targets {targets!r}; choose one of {sorted(TARGETS)}")
    names = [n for n, _ in unet.named_modules() if re.search(TARGETS[targets], n)]
    if not names:
        raise SafetuneError(f"no UNet module matches targets {targets!r}")
    return names


def prepare_trainable(unet, config: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze the UNet, then open what the stage trains: a new LoRA, every weight, or some modules'."""
    unet.requires_grad_(False)
    if config.mode == "lora":
        from peft import LoraConfig

        lora_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, init_lora_weights="gaussian",
                                 target_modules=target_modules(unet, config.targets))
        with torch.random.fork_rng(devices=[]):  # A's random init depends on the seed alone
            torch.manual_seed(config.seed)
            unet.add_adapter(lora_config, adapter_name=ADAPTER)
        unet.set_adapter(ADAPTER)
        return [p for n, p in unet.named_parameters() if "lora_" in n and p.requires_grad]
    if config.mode == "full":
        unet.requires_grad_(True)
        return list(unet.parameters())
    if config.mode == "partial":
        names = set(target_modules(unet, config.targets))
        params = [p for n, m in unet.named_modules() if n in names for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params
    raise SafetuneError(f"unknown training mode {config.mode!r}; choose lora, full or partial")


def extract_lora(unet, config: TrainConfig) -> LoRA:
    """The trained adapter as a LoRA with alpha/rank folded into B (exact in any loader)."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    scale = config.lora_alpha / config.lora_rank
    factors = {}
    for key, a in state.items():
        if key.endswith("lora_A.weight"):
            name = key[: -len(".lora_A.weight")]
            b = state[name + ".lora_B.weight"]
            factors["unet." + name] = (a.detach().float().clone(), b.detach().float().clone() * scale)
    return LoRA(factors)


def remove_lora(unet) -> None:
    """Drop the training adapter and peft's wrappers: the UNet is a plain diffusers model again."""
    unet.unload_lora()


class EMA:
    def __init__(self, params, decay: float):
        self.params, self.decay = list(params), decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), 1 - self.decay)

    @torch.no_grad()
    def copy_to_model(self):
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


class _Trainable(torch.nn.Module):
    """The trainable tensors as one module, so checkpoints hold them and nothing else."""

    def __init__(self, params):
        super().__init__()
        self.items = torch.nn.ParameterList(params)


Loss = Callable[[torch.nn.Module, int, torch.Generator], torch.Tensor]


def train(unet, loss_fn: Loss, config: TrainConfig, checkpoint_dir: Path | None = None,
          on_save: Callable[[int, torch.nn.Module], None] | None = None, desc: str = "train"):
    """Train `unet` in place on `loss_fn`; returns (unet, per-step losses)."""
    from accelerate import Accelerator

    if config.steps < 1 or config.batch_size < 1 or config.grad_accum < 1 or not config.lr > 0:
        raise SafetuneError(f"{desc}: steps, batch size and grad accumulation must be at least 1 and the "
                            f"learning rate positive (got {config.steps}, {config.batch_size}, "
                            f"{config.grad_accum}, {config.lr})")
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=config.mixed_precision)
    params = prepare_trainable(unet, config)
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
    start = 0
    if checkpoint_dir is not None and (checkpoint_dir / "state.json").exists():
        start = load_checkpoint(checkpoint_dir, saved, optimizer)["step"]
        log.info("%s: resuming at step %d from %s", desc, start, checkpoint_dir)
    if on_save and 0 in config.save_at and start == 0:
        on_save(0, unet)
    losses = []
    for step in tqdm(range(start, config.steps), desc=desc, initial=start, total=config.steps,
                     disable=not accelerator.is_local_main_process):
        for micro in range(config.grad_accum):
            with accelerator.accumulate(unet):
                loss = loss_fn(unet, step, step_generator(config.seed, step * config.grad_accum + micro))
                if not torch.isfinite(loss):
                    if checkpoint_dir is not None:
                        save_checkpoint(checkpoint_dir, step, saved, optimizer)
                    raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}; "
                                             f"last good state kept in {checkpoint_dir}")
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        if ema:
            ema.update()
        losses.append(loss.item())
        done = step + 1
        if on_save and done in config.save_at:
            on_save(done, unet)  # before the checkpoint: a resumed run never skips a snapshot
        if checkpoint_dir is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            save_checkpoint(checkpoint_dir, done, saved, optimizer)
    if ema:
        ema.copy_to_model()
    unet = accelerator.unwrap_model(unet)
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return unet, losses


def run_stage(unet, loss_fn: Loss, config: TrainConfig, checkpoint_dir: Path | None = None,
              on_save=None, desc: str = "train") -> LoRA | None:
    """Train one stage. A LoRA stage returns its LoRA and leaves the UNet as it was; any other
    stage leaves its trained weights in the UNet and returns None."""
    unet, _ = train(unet, loss_fn, config, checkpoint_dir, on_save=on_save, desc=desc)
    if config.mode != "lora":
        return None
    lora = extract_lora(unet, config)
    remove_lora(unet)
    return lora
