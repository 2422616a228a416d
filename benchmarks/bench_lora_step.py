"""LoRA fine-tuning step throughput: safetune's trainer against diffusers' own recipe (peft LoRA on
the UNet's attention projections, the plain loop of examples/text_to_image/train_text_to_image_lora.py:
VAE-encode the batch, encode the captions, add noise, predict, MSE, backward, clip, step), same model,
same batch size, interleaved in one run. Prints images/s and the ratio (target >= 1.0).

    python benchmarks/bench_lora_step.py [--model shapes] [--steps 40] [--batch-size 32] [--repeats 3]

--real-size sd15 runs the same comparison on a real-size SD 1.5 UNet built from its config with random
weights (nothing to download): 512x512 images as 64x64x4 latents, 77x768 text embeddings, on --device
cuda in --dtype fp16/bf16 at each of --batch-sizes, printing it/s and peak GPU memory side by side:

    python benchmarks/bench_lora_step.py --real-size sd15 --device cuda --dtype fp16 --batch-sizes 1,4,8
"""
import argparse
import copy
import time

import torch
import torch.nn.functional as F

from safetune.config import TrainConfig
from safetune.data.folder import load_training_data
from safetune.models.conditioning import training_scheduler
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

    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"SD 1.5 UNet (random weights), 512x512, {args.dtype}, LoRA rank 4 on attention, {name}")
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--real-size", choices=["sd15"], default=None, help="a real-size SD 1.5 UNet, random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--batch-sizes", default="1,4,8")
    args = ap.parse_args()
    if args.real_size:
        return real_size(args)
    pipe = load_pipeline(args.model)
    images, texts = load_training_data("plus", pipe.unet.config.sample_size * pipe.vae_scale_factor, n=500)
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
