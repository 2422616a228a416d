"""A study as Ray tasks vs today's sequential study, side by side in one run: the same small relearn
study (16 attack runs of 100 steps) once locally (one process, torch on every core) and once as Ray
tasks (one run per core, one thread each); prints both wall times, the speed-up, the scheduler's
overhead per run and whether the numbers agree. Issue 20's targets: >= 1.4x on 2 cores, overhead
under 2% of a 100-step run.

    pip install -e '.[ray]' && python benchmarks/bench_executor.py [--out /tmp/bench-executor]
"""
import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from safetune.config import SamplingConfig
from safetune.studies.executor import ExecutorConfig
from safetune.studies.relearn import RelearnConfig, run_relearn


def study() -> RelearnConfig:
    # the two pretrained models: nothing to build, so both timings are attack runs only
    return replace(RelearnConfig.reduced(), models=["base", "never-trained"], attacks=["full", "lora-r4"],
                   attack_lrs=[1e-4, 1e-3],
                   attack_seeds=[100, 101], steps=[0, 50, 100], prompts_per_set=10,
                   sampling=SamplingConfig(images_per_prompt=2))


def run(out: Path, executor: ExecutorConfig) -> tuple[float, dict, list[float]]:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    results = run_relearn(out, study(), executor=executor)
    wall = time.perf_counter() - start
    seconds = [json.loads(p.read_text())["seconds"] for p in (out / "runs").glob("*.json")
               if json.loads(p.read_text())["spec"]["kind"] == "attack"]
    return wall, results, seconds


def rates(results: dict) -> dict:
    return {k: [p["harmful"]["harmful_rate"] for p in run.values()] for k, run in results["runs"].items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/bench-executor")
    args = ap.parse_args()
    out = Path(args.out)
    cores = torch.get_num_threads()
    local_wall, local, local_runs = run(out / "local", ExecutorConfig())
    ray_wall, remote, ray_runs = run(out / "ray", ExecutorConfig(executor="ray", cpus=1))
    n = len(local_runs)
    overhead = (ray_wall * cores - sum(ray_runs)) / len(ray_runs)
    same = rates(local) == rates(remote)
    print(f"{n} attack runs; local (1 process, {cores} threads): {local_wall:.1f} s; "
          f"ray ({cores} tasks of 1 thread): {ray_wall:.1f} s; speed-up {local_wall / ray_wall:.2f}x")
    print(f"mean run: local {sum(local_runs) / n:.1f} s, ray {sum(ray_runs) / len(ray_runs):.1f} s; "
          f"scheduler overhead per run (wall x cores - run time, per run): {overhead:.2f} s "
          f"= {100 * overhead / (sum(ray_runs) / len(ray_runs)):.1f}% of a run")
    ideal = cores * (sum(local_runs) / n) / (sum(ray_runs) / len(ray_runs))
    print(f"the ceiling with perfect packing ({cores} one-thread runs at once vs one {cores}-thread run): "
          f"{ideal:.2f}x; reached {100 * local_wall / ray_wall / ideal:.0f}% of it")
    print(f"harmful rates identical: {same} (local uses {cores} threads, Ray tasks 1: float reductions may differ)")


if __name__ == "__main__":
    main()
