"""Pretraining throughput of the miniature SD (images/s per phase), measured on a short run.

    python benchmarks/bench_pretrain.py [--steps 30]
"""
import argparse
import tempfile
import time
from pathlib import Path

from safetune.stages import pretraining as pt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    phase_time = {}
    real = pt._run_phase

    def timed(name, *a, **k):
        t = time.perf_counter(); real(name, *a, **k); phase_time[name] = time.perf_counter() - t

    pt._run_phase = timed
    config = pt.PretrainConfig(pool=2000, vae_steps=args.steps, unet_steps=args.steps, checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        pt.pretrain(Path(tmp) / "m", config)
    for name, batch in (("vae", config.vae_batch), ("unet", config.unet_batch)):
        print(f"{name:5s} {args.steps * batch / phase_time[name]:8.1f} images/s  ({args.steps} steps of {batch})")


if __name__ == "__main__":
    main()
