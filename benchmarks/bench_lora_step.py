"""LoRA fine-tuning step throughput: safetune's trainer against diffusers' own recipe (peft LoRA on
the UNet's attention projections, the plain loop of examples/text_to_image/train_text_to_image_lora.py:
VAE-encode the batch, encode the captions, add noise, predict, MSE, backward, clip, step), same model,
same batch size, interleaved in one run. Prints images/s and the ratio (target >= 1.0).

    python benchmarks/bench_lora_step.py [--model shapes] [--steps 40] [--batch-size 32] [--repeats 3]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
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
