"""LoRA fine-tuning step throughput: safetune's trainer against diffusers' own recipe (peft LoRA on
the UNet's attention projections, the plain loop of examples/text_to_image/train_text_to_image_lora.py:
VAE-encode the batch, encode the captions, add noise, predict, MSE, backward, clip, step), same model,
same batch size, interleaved in one run. Prints images/s and the ratio (target >= 1.0).

    python benchmarks/bench_lora_step.py [--model shapes] [--steps 40] [--batch-size 32] [--repeats 3]

--real-size sd15 runs the same comparison on a real-size SD 1.5 UNet built from its config with random
weights (nothing to download): 512x512 images as 64x64x4 latents, 77x768 text embeddings, on --device
cuda in --dtype fp16/bf16 at each of --batch-sizes, printing it/s and peak GPU memory side by side:

    python benchmarks/bench_lora_step.py --real-size sd15 --device cuda --dtype fp16 --batch-sizes 1,4,8

--real-size sd3 | flux does the same for SD3-medium's and FLUX.1-dev's transformers (their
transformer/config.json, random weights): rectified-flow training of a rank-4 LoRA on both streams'
attention (the targets of diffusers' train_dreambooth_lora_sd3.py / _flux.py) against those scripts'
plain loop, 1024x1024 images as 128x128x16 latents, T5 + CLIP text states of the pipelines' lengths.
`--layers N` keeps N blocks of each kind (a smoke run of the code path on a CPU):

    python benchmarks/bench_lora_step.py --real-size flux --device cuda --dtype bf16 --batch-sizes 1,2,4
"""
import argparse
import copy
import time

import torch
import torch.nn.functional as F

from safetune.config import TrainConfig
from safetune.data.folder import load_training_data
from safetune.models.conditioning import image_size, training_scheduler
from safetune.models.loading import load_pipeline
from safetune.stages import finetune


def diffusers_recipe(pipe, images, texts, steps, batch_size):
    from peft import LoraConfig

    unet, vae, text_encoder, tokenizer = copy.deepcopy(pipe.unet), pipe.vae, pipe.text_encoder, pipe.tokenizer
    unet.requires_grad_(False); vae.requires_grad_(False); text_encoder.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scheduler = training_scheduler(pipe)
    ids = tokenizer(texts, max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                    return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        latents = vae.encode(images[idx]).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,))
        noisy = scheduler.add_noise(latents, noise, t)
        hidden = text_encoder(ids[idx], return_dict=False)[0]
        pred = unet(noisy, t, hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()


def ours(pipe, images, texts, steps, batch_size):
    config = TrainConfig(steps=steps, lr=1e-4, batch_size=batch_size, mode="lora", targets="attn",
                         checkpoint_every=10**9)
    finetune(copy.deepcopy(pipe), images, texts, config)


SD15_UNET = dict(  # runwayml/stable-diffusion-v1-5's unet/config.json
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
    norm_num_groups=32)


SD3_MEDIUM = dict(  # stabilityai/stable-diffusion-3-medium-diffusers' transformer/config.json
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
    pos_embed_max_size=192)
FLUX_DEV = dict(  # black-forest-labs/FLUX.1-dev's transformer/config.json
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=[16, 56, 56])
DREAMBOOTH_TARGETS = ["attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
                      "attn.to_k", "attn.to_out.0", "attn.to_q", "attn.to_v"]


def real_size_transformer(args):
    """Ours (the trainer, cached latents and text states) vs diffusers' DreamBooth-LoRA loop on a
    random SD3-medium or FLUX.1-dev transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel, SD3Transformer2DModel
    from peft import LoraConfig

    from safetune.models.conditioning import Cond, FlowMatching
    from safetune.stages.losses import DenoisingLoss
    from safetune.train import train

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    device, flux = args.device, args.real_size == "flux"
    config = dict(FLUX_DEV if flux else SD3_MEDIUM)
    if args.layers:
        config.update(num_layers=args.layers, **({"num_single_layers": args.layers} if flux else {}))
    torch.manual_seed(0)
    base = (FluxTransformer2DModel if flux else SD3Transformer2DModel)(**config).to(device, dtype)
    n, side = 8, args.resolution // 8
    latents = torch.randn(n, 16, side, side, device=device, dtype=dtype)
    tokens, pooled = (512, 768) if flux else (256 + 77, 2048)
    added = {"pooled_projections": torch.randn(n, pooled, device=device, dtype=dtype)}
    if flux:
        added["guidance"] = torch.full((n,), 3.5, device=device, dtype=dtype)
    cond = Cond(torch.randn(n, tokens, 4096, device=device, dtype=dtype), added, "flux" if flux else "sd3")
    scheduler = FlowMatching(FlowMatchEulerDiscreteScheduler(shift=3.0))

    def ours(batch):
        config = TrainConfig(steps=args.steps, lr=1e-4, batch_size=batch, mode="lora", targets="attn",
                             gradient_checkpointing=args.gradient_checkpointing, checkpoint_every=10**9)
        train(copy.deepcopy(base), DenoisingLoss(latents, cond, scheduler, batch), config)

    def theirs(batch):
        model = copy.deepcopy(base)
        model.requires_grad_(False)
        if args.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=DREAMBOOTH_TARGETS))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        for _ in range(args.steps):
            idx = torch.randint(n, (batch,))
            x0, noise = latents[idx], torch.randn_like(latents[idx])
            sigma = scheduler.timesteps[torch.randint(1000, (batch,))].to(device, dtype) / 1000
            noisy = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * noise
            if flux:  # the script's own packing and ids
                packed = FluxPipeline._pack_latents(noisy, batch, 16, side, side)
                ids = FluxPipeline._prepare_latent_image_ids(batch, side // 2, side // 2, device, dtype)
                out = model(hidden_states=packed, timestep=sigma, guidance=added["guidance"][idx],
                            pooled_projections=added["pooled_projections"][idx], encoder_hidden_states=cond.hidden[idx],
                            txt_ids=torch.zeros(tokens, 3, device=device, dtype=dtype), img_ids=ids,
                            return_dict=False)[0]
                pred = FluxPipeline._unpack_latents(out, side * 8, side * 8, 8)
            else:
                pred = model(hidden_states=noisy, timestep=sigma * 1000, encoder_hidden_states=cond.hidden[idx],
                             pooled_projections=added["pooled_projections"][idx], return_dict=False)[0]
            F.mse_loss(pred.float(), (noise - x0).float()).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()

    title = f"{'FLUX.1-dev' if flux else 'SD3-medium'} transformer (random weights" + \
        (f", {args.layers} blocks of each kind" if args.layers else "") + f"), {args.resolution}x{args.resolution}"
    compare(title, ours, theirs, args)


def compare(title, ours, theirs, args):
    """it/s and peak GPU memory of the two at each batch size, side by side in one run."""
    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"{title}, {args.dtype}, LoRA rank 4 on attention, {name}")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        row = {}
        for label, fn in (("safetune", ours), ("diffusers", theirs)):
            fn(batch)  # warm-up (and cudnn autotune)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            fn(batch)
            if cuda:
                torch.cuda.synchronize()
            row[label] = (args.steps / (time.perf_counter() - t),
                          torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"))
        (a, ma), (b, mb) = row["safetune"], row["diffusers"]
        print(f"batch {batch}: safetune {a:.2f} it/s {ma:.1f} GiB | diffusers {b:.2f} it/s {mb:.1f} GiB | "
              f"ratio {a / b:.3f}")


def real_size(args):
    """Ours (the trainer, cached latents and embeddings) vs diffusers' LoRA loop on a random SD 1.5 UNet."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig

    from safetune.models.conditioning import Cond
    from safetune.stages.losses import DenoisingLoss
    from safetune.train import train

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    torch.manual_seed(0)
    base = UNet2DConditionModel(**SD15_UNET).to(args.device, dtype)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012)
    latents = torch.randn(64, 4, 64, 64, device=args.device, dtype=dtype)
    hidden = torch.randn(64, 77, 768, device=args.device, dtype=dtype)

    def ours(batch):
        config = TrainConfig(steps=args.steps, lr=1e-4, batch_size=batch, mode="lora", targets="attn",
                             checkpoint_every=10**9)
        train(copy.deepcopy(base), DenoisingLoss(latents, Cond(hidden), scheduler, batch), config)

    def theirs(batch):
        unet = copy.deepcopy(base)
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        for _ in range(args.steps):
            idx = torch.randint(len(latents), (batch,))
            noise = torch.randn_like(latents[idx])
            t = torch.randint(0, 1000, (batch,), device=args.device)
            pred = unet(scheduler.add_noise(latents[idx], noise, t), t, hidden[idx], return_dict=False)[0]
            F.mse_loss(pred.float(), noise.float()).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()

    compare("SD 1.5 UNet (random weights), 512x512", ours, theirs, args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--real-size", choices=["sd15", "sd3", "flux"], default=None,
                    help="a real-size SD 1.5 UNet, SD3-medium or FLUX.1-dev transformer, random weights")
    ap.add_argument("--layers", type=int, default=0, help="sd3/flux: keep this many blocks of each kind (0: all)")
    ap.add_argument("--resolution", type=int, default=1024, help="sd3/flux: image side in pixels")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="sd3/flux: in both loops")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--batch-sizes", default="1,4,8")
    args = ap.parse_args()
    if args.real_size:
        return real_size(args) if args.real_size == "sd15" else real_size_transformer(args)
    pipe = load_pipeline(args.model)
    images, texts = load_training_data("plus", image_size(pipe), n=500)
    runs = {"safetune": ours, "diffusers": diffusers_recipe}
    times = {k: [] for k in runs}
    for fn in runs.values():
        fn(pipe, images, texts, 3, args.batch_size)  # warm-up
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter(); fn(pipe, images, texts, args.steps, args.batch_size)
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k:10s} {args.steps * args.batch_size / v:8.1f} images/s  ({args.steps} steps of {args.batch_size}, best of {args.repeats})")
    print(f"ratio safetune/diffusers throughput: {best['diffusers'] / best['safetune']:.3f}  (target >= 1.0)")


if __name__ == "__main__":
    main()
