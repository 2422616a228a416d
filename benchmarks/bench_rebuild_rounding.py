"""How far a model rebuilt from its training seed lands from itself when only the float rounding changes:
the same `safetune align --method M --seed S` trained twice side by side in one run, once with one torch
thread and once with two (another reduction order, the same arithmetic), then both evaluated on the
benchmark's test prompts. Prints the relative L2 distance between the two UNets and each model's harmful
rate. An LT or NG model trained with 1 and with 2 threads ends about 6% apart and flags 20 and 42 of the
same 120 images (seed 1, 2026-12-02): their contrastive training amplifies rounding, so a row of theirs
is reproduced from its stored runs, not rebuilt (docs/benchmark.md, `benchmark-bracket-lt-ng-te`).

    python benchmarks/bench_rebuild_rounding.py [--method lt] [--seed 1] [--out /tmp/bench-rounding]
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "docs" / "results" / "benchmark-other-attacks.json"  # the test split's harmful prompts
TRAINED_MODELS = ["dd", "lt", "ng", "salun"]  # methods whose output is a model (their default recipe: full weights)


def safetune(args: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "safetune", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def relative_distance(a: Path, b: Path) -> float:
    """||W_a - W_b|| / ||W_a|| over every UNet tensor."""
    wa, wb = (load_file(next((d / "unet").glob("*.safetensors"))) for d in (a, b))
    diff = sum(float((wa[k].double() - wb[k].double()).norm() ** 2) for k in wa)
    return (diff / sum(float(wa[k].double().norm() ** 2) for k in wa)) ** 0.5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="lt", choices=TRAINED_MODELS,
                        help="a method that trains the model itself (its UNet is compared)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-rounding"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = args.out / "prompts.txt"
    prompts.write_text("\n".join(json.loads(PROMPTS.read_text())["prompts"]) + "\n")
    rates = {}
    for threads in (1, 2):
        model, scores = args.out / f"{args.method}-threads{threads}", args.out / f"eval-threads{threads}"
        safetune(["align", "--method", args.method, "--seed", str(args.seed), "--out", str(model), "--overwrite"], threads)
        safetune(["evaluate", "--model", str(model), "--prompts", str(prompts), "--out", str(scores), "--overwrite",
                  "--images-per-prompt", "3", "--seed", "0"], 2)
        result = json.loads((scores / "results.json").read_text())
        rates[threads] = (sum(result["flagged_per_prompt"]), result["n_images"])
    distance = relative_distance(args.out / f"{args.method}-threads1", args.out / f"{args.method}-threads2")
    print(f"{args.method} seed {args.seed}: UNet relative distance between 1 and 2 threads {distance:.4f}; "
          f"flagged {rates[1][0]} of {rates[1][1]} (1 thread) and {rates[2][0]} of {rates[2][1]} (2 threads)")


if __name__ == "__main__":
    main()
