"""Text conditioning, the denoiser and its training target: the one place where model families differ.

    family  pipeline                    denoiser                 text                         target
    sd      StableDiffusionPipeline     UNet2DConditionModel     CLIP hidden states           noise (SD 1.x), velocity (2.x-v)
    sdxl    StableDiffusionXLPipeline   UNet2DConditionModel     two CLIPs + pooled, size ids noise
    sd3     StableDiffusion3Pipeline    SD3Transformer2DModel    two CLIPs + T5, pooled       flow (noise - x0)
    flux    FluxPipeline                FluxTransformer2DModel   T5 + CLIP pooled, guidance   flow (noise - x0), packed 2x2

`Cond` carries a family's conditioning per sample, so every loss indexes, repeats and feeds it the
same way; `predict` calls the denoiser as its family wants; `training_scheduler` gives the forward
process (DDPM for the UNet families, rectified flow for SD3 and Flux) behind one interface:
`noised` / `draw_noise` return the *model's* timestep and `denoising_target` what it regresses.
Everything else (losses, trainer, LoRA algebra) is family-blind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ..checkpoint import batch_randint, batch_randn
from .loading import FAMILIES, FAMILY_NAMES

FLOW_FAMILIES = ("sd3", "flux")


@dataclass
class Cond:
    """The denoiser's conditioning, per sample: hidden states, the family's extras (SDXL's pooled
    text and size ids, SD3's and Flux's pooled text, Flux's guidance) and which call they are for."""
    hidden: torch.Tensor                                   # [N, tokens, dim]
    added: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample extras
    family: str = "sd"

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, idx) -> "Cond":
        return Cond(self.hidden[idx], {k: v[idx] for k, v in self.added.items()}, self.family)

    def repeat(self, n: int) -> "Cond":
        """The conditioning repeated n times along the batch."""
        reps = lambda v: v.repeat(n, *([1] * (v.dim() - 1)))
        return Cond(reps(self.hidden), {k: reps(v) for k, v in self.added.items()}, self.family)


def predict(denoiser, xt: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
    """The denoiser's prediction on latents [N, C, H, W] at the model's timesteps `t`."""
    if cond.family == "sd3":
        return denoiser(hidden_states=xt, timestep=t, encoder_hidden_states=cond.hidden,
                        pooled_projections=cond.added["pooled_projections"]).sample
    if cond.family == "flux":
        n, c, h, w = xt.shape  # Flux sees 2x2 patches as tokens, with their positions as ids
        packed = xt.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, h * w // 4, c * 4)
        img_ids = torch.zeros(h // 2, w // 2, 3, device=xt.device, dtype=xt.dtype)
        img_ids[..., 1] += torch.arange(h // 2, device=xt.device)[:, None]
        img_ids[..., 2] += torch.arange(w // 2, device=xt.device)[None, :]
        txt_ids = torch.zeros(cond.hidden.shape[1], 3, device=xt.device, dtype=xt.dtype)
        out = denoiser(hidden_states=packed, timestep=t / 1000, guidance=cond.added.get("guidance"),
                       pooled_projections=cond.added["pooled_projections"], encoder_hidden_states=cond.hidden,
                       txt_ids=txt_ids, img_ids=img_ids.reshape(-1, 3)).sample
        return out.view(n, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
    return denoiser(xt, t, cond.hidden, added_cond_kwargs=cond.added or None).sample


def with_params(denoiser, params: dict | None):
    """The denoiser, or a function calling it with `params` in place of its weights (torch.func)."""
    if params is None:
        return denoiser
    from torch.func import functional_call

    return lambda *args, **kwargs: functional_call(denoiser, params, args, kwargs)


def denoising_error(denoiser, batch: tuple, params: dict | None = None) -> torch.Tensor:
    """The denoising MSE on a batch (x_t, its target, t, cond), with the denoiser's weights replaced by
    `params` (None: its own): what a fine-tuning descends, real or simulated."""
    xt, target, t, cond = batch
    return F.mse_loss(predict(with_params(denoiser, params), xt, t, cond).float(), target.float())


def family_of(pipe) -> str:
    """'sd', 'sdxl', 'sd3' or 'flux' (a pipeline built from parts of one: by its components)."""
    name = type(pipe).__name__
    if name in FAMILIES:
        return FAMILIES[name]
    if getattr(pipe, "transformer", None) is not None:
        return "flux" if type(pipe.transformer).__name__.startswith("Flux") else "sd3"
    return "sdxl" if is_sdxl(pipe) else "sd"


def is_sdxl(pipe) -> bool:
    """Is the pipeline SDXL-like (two text encoders, size conditioning)?"""
    return getattr(pipe, "text_encoder_2", None) is not None and hasattr(pipe, "_get_add_time_ids")




def require_family(pipe, families: tuple[str, ...], what: str, why: str = "") -> None:
    """Refuse, in one line, a step the pipeline's family does not have."""
    from ..errors import SafetuneError

    family = family_of(pipe)
    if family not in families:
        names = ", ".join(FAMILY_NAMES[f] for f in families)
        raise SafetuneError(f"{what} works on {names} pipelines, not {FAMILY_NAMES[family]}" + (f": {why}" if why else ""))


def denoiser(pipe):
    """The network that denoises: the UNet (SD 1.x/2.x, SDXL) or the transformer (SD3, Flux)."""
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def denoiser_name(pipe) -> str:
    """Its component name, as LoRA files prefix its modules: 'unet' or 'transformer'."""
    return "transformer" if getattr(pipe, "transformer", None) is not None else "unet"


def image_size(pipe) -> int:
    """The image side the model is made for: the denoiser's sample size in pixels, or (Flux, whose
    transformer has none) the VAE's."""
    size = getattr(denoiser(pipe).config, "sample_size", None)
    return int(size * pipe.vae_scale_factor) if size else int(pipe.vae.config.sample_size)


def call_kwargs(pipe) -> dict:
    """What a pipeline call needs beyond the prompt to draw at the model's size: SD3 and Flux take the
    T5 length (never more than its tokenizer reads) and, for Flux, height and width (its default is
    1024 whatever the model)."""
    family = family_of(pipe)
    if family not in FLOW_FAMILIES:
        return {}
    t5 = pipe.tokenizer_3 if family == "sd3" else pipe.tokenizer_2
    default = 256 if family == "sd3" else 512
    size = image_size(pipe)
    return {"max_sequence_length": min(default, t5.model_max_length), "height": size, "width": size}


@torch.no_grad()
def encode_text(pipe, texts: list[str], guidance: float = 3.5) -> Cond:
    """Prompt conditioning as the denoiser sees it (no classifier-free duplication); Flux's embedded
    guidance (a distilled model's, 3.5 as its pipeline samples) rides along per sample."""
    return encode_text_trained(pipe, texts, guidance)


def encode_text_trained(pipe, texts: list[str], guidance: float = 3.5) -> Cond:
    """`encode_text` with gradients: through text encoders being trained (SDXL, SD3, Flux)."""
    family = family_of(pipe)
    if family == "sdxl":
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=texts, device=pipe.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        time_ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=embeds.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        return Cond(embeds, {"text_embeds": pooled, "time_ids": time_ids.to(pipe.device).repeat(len(texts), 1)},
                    family)
    if family == "sd3":
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=texts, prompt_2=None, prompt_3=None, device=pipe.device,
                                                  do_classifier_free_guidance=False,
                                                  max_sequence_length=call_kwargs(pipe)["max_sequence_length"])
        return Cond(embeds, {"pooled_projections": pooled}, family)
    if family == "flux":
        embeds, pooled, _ = pipe.encode_prompt(prompt=texts, prompt_2=None, device=pipe.device,
                                               max_sequence_length=call_kwargs(pipe)["max_sequence_length"])
        added = {"pooled_projections": pooled}
        if pipe.transformer.config.guidance_embeds:
            added["guidance"] = torch.full((len(texts),), float(guidance), device=pipe.device)
        return Cond(embeds, added, family)
    embeds, _ = pipe.encode_prompt(texts, device=pipe.device, num_images_per_prompt=1,
                                   do_classifier_free_guidance=False)
    return Cond(embeds)


def trained_text_encoders(pipe) -> list:
    """The text encoders `--train-text-encoder` trains, as the family's own fine-tuning recipes do: the
    CLIP of SD 1.x/2.x, both CLIPs of SDXL and SD3, Flux's CLIP (never T5: diffusers' DreamBooth-LoRA
    scripts for SD3 and Flux leave it frozen)."""
    names = {"sd": ("text_encoder",), "sdxl": ("text_encoder", "text_encoder_2"),
             "sd3": ("text_encoder", "text_encoder_2"), "flux": ("text_encoder",)}[family_of(pipe)]
    return [getattr(pipe, name) for name in names]


def caption_ids(pipe, texts: list[str]) -> torch.Tensor:
    """Token ids of captions, padded as the pipeline pads prompts (for training the text encoder)."""
    from ..errors import SafetuneError

    if family_of(pipe) != "sd":  # the others train their encoders through the pipeline's own encoding
        raise SafetuneError(f"{FAMILY_NAMES[family_of(pipe)]}: captions as token ids of one CLIP text encoder are "
                            "for SD 1.x/2.x")
    tok = pipe.tokenizer
    return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


class FlowMatching:
    """Rectified-flow training (SD3, Flux): x_t = (1 - s) x0 + s noise, the target noise - x0, the
    model's timestep 1000 s, with s drawn uniformly from the scheduler's own (shifted) sigma table:
    the "none" weighting of diffusers' DreamBooth-LoRA scripts for SD3 and Flux."""

    def __init__(self, sampling_scheduler):
        n = sampling_scheduler.config.num_train_timesteps
        self.config = SimpleNamespace(num_train_timesteps=n, prediction_type="flow")
        fresh = type(sampling_scheduler).from_config(sampling_scheduler.config)  # its table before set_timesteps
        self.timesteps = (fresh.sigmas[:n] * n).float()

    def sigma(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """s at the model's timesteps `t` (1000 s), shaped to broadcast over a batch like `like`."""
        return (t.float() / self.config.num_train_timesteps).view(-1, *([1] * (like.dim() - 1))).to(like)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t at the model's timesteps `t`: the straight line from x0 to the noise."""
        s = self.sigma(t, x0)
        return (1 - s) * x0 + s * noise


def training_scheduler(pipe):
    """The forward process of the pipeline's family: DDPM on its noise schedule, or rectified flow."""
    from diffusers import DDPMScheduler

    if family_of(pipe) in FLOW_FAMILIES:
        return FlowMatching(pipe.scheduler)
    return DDPMScheduler.from_config(pipe.scheduler.config)


def model_timesteps(scheduler, index: torch.Tensor) -> torch.Tensor:
    """Indices into the schedule (0 .. num_train_timesteps - 1) as the timesteps the model reads."""
    return scheduler.timesteps.to(index.device)[index] if isinstance(scheduler, FlowMatching) else index


def draw_noise(scheduler, x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward process's noise and timesteps for a batch (the one sampler every loss uses)."""
    noise = batch_randn(x0.shape, gen).to(x0)
    index = batch_randint(scheduler.config.num_train_timesteps, len(x0), gen).to(x0.device)
    return noise, model_timesteps(scheduler, index)


def noised(scheduler, x0: torch.Tensor, gen: torch.Generator):
    """(x_t, noise, t): x0 noised at random timesteps."""
    noise, t = draw_noise(scheduler, x0, gen)
    return scheduler.add_noise(x0, noise, t), noise, t


def predicted_x0(scheduler, xt: torch.Tensor, pred: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The clean latents a prediction implies (epsilon, velocity or flow)."""
    if scheduler.config.prediction_type == "flow":
        return xt - scheduler.sigma(t, xt) * pred
    abar = scheduler.alphas_cumprod.to(xt.device)[t].view(-1, *([1] * (xt.dim() - 1))).to(xt)
    if scheduler.config.prediction_type == "v_prediction":
        return abar.sqrt() * xt - (1 - abar).sqrt() * pred
    return (xt - (1 - abar).sqrt() * pred) / abar.sqrt()


def denoising_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser regresses: the noise, the velocity (v-prediction, SD 2.x), or the flow."""
    if scheduler.config.prediction_type == "flow":
        return noise - x0
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


@torch.no_grad()
def encode_images(pipe, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Images in [-1, 1] -> the latents the denoiser sees (the posterior mean: deterministic, as
    caching needs), shifted (SD3, Flux) and scaled as the pipeline's decoder undoes."""
    vae = pipe.vae
    out = [vae.encode(chunk.to(pipe.device, vae.dtype)).latent_dist.mode() for chunk in images.split(batch)]
    return (torch.cat(out) - (getattr(vae.config, "shift_factor", None) or 0.0)) * vae.config.scaling_factor


@torch.no_grad()
def sample_latents(pipe, prompts: list[str], seed: int, steps: int = 20, guidance: float = 5.0,
                   batch: int = 128) -> torch.Tensor:
    """Latents (x0) the model itself draws for `prompts`: the concept samples of ESD/SDD."""
    out = []
    for i in range(0, len(prompts), batch):
        part = prompts[i:i + batch]
        gens = [torch.Generator().manual_seed(seed + i + k) for k in range(len(part))]
        latents = pipe(prompt=part, generator=gens, num_inference_steps=steps, guidance_scale=guidance,
                       output_type="latent", **call_kwargs(pipe)).images
        if family_of(pipe) == "flux":  # its latent output is packed into 2x2 tokens
            size = image_size(pipe)
            latents = pipe._unpack_latents(latents, size, size, pipe.vae_scale_factor)
        out.append(latents)
    return torch.cat(out)
