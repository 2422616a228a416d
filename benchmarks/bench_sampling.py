"""Sampling throughput: `safetune generate`'s sampler against a bare diffusers pipeline call on the
same model and settings, interleaved in one run; prints images/s and the ratio (target >= 0.95).

    python benchmarks/bench_sampling.py [--model shapes] [--images 200] [--steps 20] [--repeats 3]
"""
import argparse
import time

import torch

from safetune.config import SamplingConfig
from safetune.evaluation.sampling import image_seeds, sample
from safetune.models.loading import load_pipeline


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    pipe = load_pipeline(args.model)
    config = SamplingConfig(images_per_prompt=args.images // 10, steps=args.steps, batch_size=100)
    rows = [{"prompt": f"a red circle number {i}"} for i in range(10)]
    jobs = image_seeds(rows, config)

    def ours():
        sample(pipe, jobs, config)

    def bare():
        for start in range(0, len(jobs), config.batch_size):
            part = jobs[start:start + config.batch_size]
            pipe(prompt=[p for p, _, _ in part], generator=[torch.Generator().manual_seed(s) for _, s, _ in part],
                 num_inference_steps=args.steps, guidance_scale=config.guidance_scale, output_type="pil")

    times = {"safetune": [], "diffusers": []}
    ours(); bare()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("safetune", ours), ("diffusers", bare)):
            t = time.perf_counter(); fn(); times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k:10s} {len(jobs) / v:8.1f} images/s  (best of {args.repeats}, {len(jobs)} images, {args.steps} steps)")
    print(f"ratio safetune/diffusers throughput: {best['diffusers'] / best['safetune']:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
