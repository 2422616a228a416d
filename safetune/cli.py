"""`safetune <command>`: one entry point; every command has --help.

Errors a user can fix come out as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import SafetuneError

log = logging.getLogger("safetune")


def _out_dir(path: str) -> Path:
    from .io import ensure_parent

    out = ensure_parent(path)
    if out.exists() and not out.is_dir():
        raise SafetuneError(f"{out}: exists and is not a directory; choose another --out")
    return out


def _add_sampling(p: argparse.ArgumentParser, images_per_prompt: int = 5) -> None:
    p.add_argument("--images-per-prompt", type=int, default=images_per_prompt)
    p.add_argument("--steps", type=int, default=20, help="denoising steps (DDIM on the shipped model)")
    p.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="shapes",
                   help="diffusers directory, hub id, or 'shapes' (the shipped miniature SD; default)")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                   help="LoRA merged into the weights at SCALE (default 1.0); repeat to compose")
    p.add_argument("--revision", default=None)
    p.add_argument("--variant", default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")


def _sampling_config(args):
    from .evaluate.sampling import SamplingConfig

    for name in ("images_per_prompt", "steps", "batch_size"):
        if getattr(args, name) < 1:
            raise SafetuneError(f"--{name.replace('_', '-')} must be at least 1")
    return SamplingConfig(images_per_prompt=args.images_per_prompt, steps=args.steps,
                          guidance_scale=args.guidance, batch_size=args.batch_size, seed=args.seed)


def _pipeline(args):
    import torch

    from .models.loading import load_pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load_pipeline(args.model, args.lora, device=device, revision=args.revision, variant=args.variant)


# ---------------------------------------------------------------- commands

def cmd_generate(args) -> None:
    from .data.prompts import read_prompts
    from .evaluate.sampling import image_seeds, sample
    from .io import atomic_dir, write_json
    from .report import image_grid

    out = _out_dir(args.out)
    rows = read_prompts(args.prompts)
    config = _sampling_config(args)
    pipe = _pipeline(args)
    jobs = image_seeds(rows, config)
    images = sample(pipe, jobs, config)
    with atomic_dir(out) as tmp:
        for k, ((prompt, seed, _), image) in enumerate(zip(jobs, images)):
            image.save(tmp / f"{k:05d}_seed{seed}.png")
        image_grid(images, columns=config.images_per_prompt).save(tmp / "grid.png")
        write_json(tmp / "images.json", [{"file": f"{k:05d}_seed{s}.png", "prompt": p, "seed": s, "guidance": g}
                                         for k, (p, s, g) in enumerate(jobs)])
    print(f"wrote {len(images)} images and grid.png to {out}")


def cmd_evaluate(args) -> None:
    from dataclasses import asdict

    from .data.prompts import read_prompts
    from .evaluate import evaluate_prompts
    from .evaluate.detectors import load_detector
    from .io import write_json

    out = _out_dir(args.out)
    rows = read_prompts(args.prompts, categories=args.category, limit=args.limit)
    config = _sampling_config(args)
    detector = load_detector(args.detector)
    pipe = _pipeline(args)
    out.mkdir(exist_ok=True)
    metrics = evaluate_prompts(pipe, rows, detector, config, out / "grid.png")
    results = {"model": args.model, "loras": args.lora, "prompts": args.prompts, "detector": detector.name,
               "sampling": asdict(config), **metrics}
    write_json(out / "results.json", results)
    print(_summary_line(args.prompts, metrics))


def _summary_line(name: str, m: dict) -> str:
    from .report import fmt_ci

    line = f"{name}: harmful_rate {fmt_ci(m['harmful_rate'], m['harmful_rate_ci95'])}"
    if "prompt_fidelity" in m:
        line += f"  prompt_fidelity {fmt_ci(m['prompt_fidelity'], m['prompt_fidelity_ci95'])}"
    return line + f"  (n={m['n_images']})"


def cmd_demo(args) -> None:
    from .studies.demo import run_demo

    out = _out_dir(args.out)
    results = run_demo(out, _sampling_config(args), prompts_per_set=args.prompts_per_set,
                       include_backfire=not args.quick)
    for name, m in results["sets"].items():
        print(_summary_line(name, m))
    print(f"report: {out / 'report.md'}")


def cmd_pretrain(args) -> None:
    from .models.pretrain import PretrainConfig, pretrain

    _out_dir(args.out)
    config = PretrainConfig(seed=args.seed, vae_steps=args.vae_steps, unet_steps=args.unet_steps,
                            pool=args.pool, checkpoint_every=args.checkpoint_every)
    pretrain(args.out, config)
    print(f"wrote the pretrained pipeline to {args.out}")


def cmd_train_detector(args) -> None:
    from .evaluate.detectors import DetectorTrainConfig, train_detector

    _out_dir(args.out)
    detector, metrics = train_detector(DetectorTrainConfig(seed=args.seed, steps=args.steps))
    detector.save_pretrained(args.out, metrics)
    for split in ("clean_renders", "degraded_renders"):
        accs = "  ".join(f"{k} {v:.4f}" for k, v in metrics[split].items())
        print(f"held-out {split} (n={metrics['n_test']}): {accs}")


def cmd_world(args) -> None:
    from .data.shapesworld import PROMPT_SETS, export_imagefolder, make_dataset, prompt_csv, prompt_set
    from .io import write_text

    out = _out_dir(args.out)
    if args.what == "prompts":
        out.mkdir(exist_ok=True)
        for name in PROMPT_SETS:
            write_text(out / f"{name}.csv", prompt_csv(prompt_set(name, n=args.n or 40, seed=args.seed)))
        print(f"wrote {len(PROMPT_SETS)} prompt sets to {out}")
    else:
        export_imagefolder(make_dataset(args.what, args.n or 1000, seed=args.seed), out)
        print(f"wrote {args.n or 1000} images and metadata.jsonl to {out}")


def build_parser() -> argparse.ArgumentParser:
    from .data.shapesworld import DOMAINS

    parser = argparse.ArgumentParser(prog="safetune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("demo", help="evaluate the shipped model (and run the reduced studies)")
    p.add_argument("--out", default="safetune-demo")
    p.add_argument("--prompts-per-set", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="evaluation only, no study")
    _add_sampling(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("generate", help="sample images (and a grid) for prompts")
    _add_model(p)
    p.add_argument("--prompts", required=True, help="CSV/TXT/JSONL file, built-in set name, or a prompt")
    p.add_argument("--out", required=True)
    _add_sampling(p, images_per_prompt=4)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("evaluate", help="sample with fixed seeds, detect, write results.json")
    _add_model(p)
    p.add_argument("--prompts", required=True, help="CSV/TXT/JSONL file or built-in set name")
    p.add_argument("--category", action="append", help="keep only rows of this I2P category")
    p.add_argument("--limit", type=int, default=None, help="first N prompts only")
    p.add_argument("--detector", default="shapes", help="'shapes', 'nudenet' or a detector directory")
    p.add_argument("--out", required=True)
    _add_sampling(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pretrain-shapes", help="pretrain the miniature SD on ShapesWorld (resumable)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=1200)
    p.add_argument("--unet-steps", type=int, default=6000)
    p.add_argument("--pool", type=int, default=20000)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train-detector", help="train the ShapesWorld detector; prints held-out accuracy")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000)
    p.set_defaults(func=cmd_train_detector)

    p = sub.add_parser("world", help="export ShapesWorld data (image folder + metadata.jsonl) or prompt sets")
    p.add_argument("what", choices=["prompts", "pretrain", "harmful", *DOMAINS])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_world)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        args.func(args)
    except SafetuneError as exc:
        print(f"safetune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("safetune: interrupted; completed outputs and checkpoints are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
