"""Sampling with a composed Modular LoRA (W0 + dW_safe + dW_ft, merged) against the base model,
interleaved in one run; prints images/s and the ratio (target >= 0.98).

    python benchmarks/bench_modular_sampling.py [--images 200] [--steps 20] [--repeats 3]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from safetune.config import SamplingConfig
from safetune.evaluation.sampling import image_seeds, sample
from safetune.lora.weights import LoRA, load_with_loras, pipeline_modules
from safetune.models.loading import load_pipeline


def random_lora(pipe, pattern, seed):
    g = torch.Generator().manual_seed(seed)
    return LoRA({n: (torch.randn(4, m.weight.shape[1], generator=g) * 0.01, torch.randn(m.weight.shape[0], 4, generator=g) * 0.01)
                 for n, m in pipeline_modules(pipe).items() if n.startswith("unet.") and n.endswith(pattern)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = load_pipeline("shapes")
    with tempfile.TemporaryDirectory() as tmp:
        safe, ft = Path(tmp) / "safe.safetensors", Path(tmp) / "ft.safetensors"
        random_lora(base, "attn2.to_k", 1).save(safe)
        random_lora(base, "attn1.to_q", 2).save(ft)
        t = time.perf_counter()
        modular = load_with_loras("shapes", [str(safe), str(ft)])
        compose_s = time.perf_counter() - t
    config = SamplingConfig(images_per_prompt=args.images // 10, steps=args.steps)
    jobs = image_seeds([{"prompt": f"a red circle {i}"} for i in range(10)], config)
    times = {"base": [], "modular": []}
    for pipe in (base, modular):
        sample(pipe, jobs[:10], config)
    for _ in range(args.repeats):
        for name, pipe in (("base", base), ("modular", modular)):
            t = time.perf_counter(); sample(pipe, jobs, config); times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k:8s} {len(jobs) / v:8.1f} images/s")
    print(f"load + compose two LoRAs: {compose_s:.2f} s (once per model)")
    print(f"ratio modular/base throughput: {best['base'] / best['modular']:.3f}  (target >= 0.98)")


if __name__ == "__main__":
    main()
