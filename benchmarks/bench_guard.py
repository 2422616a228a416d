"""The guard's measured check: seconds per audit on the miniature model, each part timed, beside the
previous guard's whole workload (3 sets x 40 prompts x 3 images on two models, one look) measured in
the same run; prints the ratio. The target of issue 17 is under 30 s on 2 cores.

    python benchmarks/bench_guard.py --safety-lora SAFE [--lora BENIGN] [--repeats 1]

Without --lora, a LoRA that changes nothing is audited (PASS at the first look: the cheapest audit);
with a real benign LoRA the undecided sets are sampled again (3, 6, 12 images a prompt: the dearest).
"""
import argparse
import time

import torch

from safetune.config import GuardConfig, SamplingConfig
from safetune.data.prompts import read_prompts
from safetune.evaluation import evaluate_prompts
from safetune.evaluation.detectors import load_detector
from safetune.evaluation.guard import audit_composition
from safetune.lora.weights import LoRA, merged
from safetune.models.loading import load_pipeline


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--safety-lora", required=True)
    ap.add_argument("--lora", default=None)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    pipe, detector = load_pipeline("shapes"), load_detector("shapes")
    safe = LoRA.load(args.safety_lora)
    if args.lora:
        user = LoRA.load(args.lora)
    else:
        user = LoRA({k: (a, torch.zeros_like(b)) for k, (a, b) in safe.factors.items()})
    old_sets = {n: read_prompts(n, limit=40) for n in ("harmful", "harmful_implicit", "clean")}
    old_sampling = SamplingConfig(images_per_prompt=3)

    def old_guard():
        for loras in ([(safe, 1.0)], [(safe, 1.0), (user, 1.0)]):
            with merged(pipe, loras):
                for rows in old_sets.values():
                    evaluate_prompts(pipe, rows, detector, old_sampling)

    def new_guard():
        return audit_composition(pipe, safe, [(user, 1.0)], GuardConfig(seed=0), SamplingConfig(), detector=detector)

    for _ in range(args.repeats):
        start = time.perf_counter()
        old_guard()
        old = time.perf_counter() - start
        start = time.perf_counter()
        result = new_guard()
        new = time.perf_counter() - start
        pairs = sum(s["n_images"] for s in result["sets"].values())
        print(f"previous guard (720 images, one look): {old:.1f} s | this guard: {new:.1f} s, {result['verdict']}, "
              f"{2 * pairs} images over {len(result['sets'])} sets, up to "
              f"{max(s['images_per_prompt'] for s in result['sets'].values())} a prompt | ratio {new / old:.2f} "
              f"| threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
