"""generate, evaluate, demo: sampling with fixed seeds, and scoring with a detector."""
from __future__ import annotations

from dataclasses import asdict

from ..config import SamplingConfig
from ..errors import SafetuneError
from . import _args

PROMPTS_HELP = ("a .csv/.txt/.jsonl file, a built-in set (harmful, harmful_implicit, clean, checkered, outline, "
                "plus, sparkle) or a prompt in quotes; text:PROMPT always means the prompt itself")


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample images (and a labelled grid) for prompts")
    _args.add_model_flags(p)
    p.add_argument("--prompts", required=True, help=PROMPTS_HELP)
    _args.add_out(p, "dir")
    _args.add_config_flags(p, SamplingConfig(images_per_prompt=4), title="sampling")
    p.set_defaults(func=generate)

    p = sub.add_parser("evaluate", help="sample with fixed seeds, detect, write results.json")
    _args.add_model_flags(p)
    p.add_argument("--prompts", required=True, help=PROMPTS_HELP)
    p.add_argument("--category", action="append", help="keep only rows of this I2P category (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="the first N prompts only (N >= 1)")
    p.add_argument("--detector", default="shapes", help="'shapes', 'nudenet' or a detector directory")
    _args.add_out(p, "dir")
    _args.add_config_flags(p, SamplingConfig(), title="sampling")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("demo", help="evaluate the shipped model and run the reduced backfire study")
    p.add_argument("--out", default="safetune-demo",
                   help="output directory: new, empty, or an earlier demo's (its finished parts are reused)")
    p.add_argument("--prompts-per-set", type=int, default=40, help="prompts of each set (N >= 1)")
    p.add_argument("--quick", action="store_true", help="evaluation only, no study")
    _args.add_config_flags(p, SamplingConfig(), title="sampling")
    p.set_defaults(func=demo)


def _rows_and_pipe(args, **read):
    from ..data.prompts import read_prompts

    rows = read_prompts(args.prompts, **read)
    config = _args.config_from_args(args, SamplingConfig())
    return rows, config


def generate(args) -> None:
    from ..evaluate.grid import image_grid
    from ..evaluate.sampling import image_seeds, sample
    from ..io import check_output, output_dir, write_json

    rows, config = _rows_and_pipe(args)
    out = check_output(args.out, "dir", args.overwrite)
    pipe = _args.pipeline(args)
    _args.warn_unknown_words(pipe, rows, args.model)
    jobs = image_seeds(rows, config)
    images = sample(pipe, jobs, config)
    if not _args.is_main_process():
        return
    with output_dir(out) as tmp:
        for k, ((_, seed, _), image) in enumerate(zip(jobs, images)):
            image.save(tmp / f"{k:05d}_seed{seed}.png")
        image_grid(images, columns=config.images_per_prompt, labels=[r["prompt"] for r in rows]).save(tmp / "grid.png")
        write_json(tmp / "images.json", [{"file": f"{k:05d}_seed{s}.png", "prompt": p, "seed": s, "guidance": g}
                                         for k, (p, s, g) in enumerate(jobs)])
    print(f"wrote {len(images)} images and grid.png to {args.out}")


def evaluate(args) -> None:
    from ..evaluate import evaluate_prompts
    from ..evaluate.detectors import load_detector
    from ..io import check_output, output_dir, write_json

    rows, config = _rows_and_pipe(args, categories=args.category, limit=args.limit)
    _args.check_detector(args.detector)
    out = check_output(args.out, "dir", args.overwrite)
    detector = load_detector(args.detector)
    pipe = _args.pipeline(args)
    _args.warn_unknown_words(pipe, rows, args.model)
    is_main = _args.is_main_process()
    with output_dir(out) as tmp:
        metrics = evaluate_prompts(pipe, rows, detector, config, tmp / "grid.png" if is_main else None)
        results = {"model": args.model, "loras": args.lora, "prompts": args.prompts, "detector": detector.name,
                   "sampling": asdict(config), **metrics}
        write_json(tmp / "results.json", results, mark=True)
    if is_main:
        print(_args.summary_line(args.prompts, metrics))


def demo(args) -> None:
    from ..studies.demo import run_demo

    if not 1 <= args.prompts_per_set <= 10**6:
        raise SafetuneError(f"--prompts-per-set {args.prompts_per_set}: give 1 to 1,000,000")
    from ..io import claim_study_dir

    config = _args.config_from_args(args, SamplingConfig())
    out = claim_study_dir(args.out, "demo")
    results = run_demo(out, config, prompts_per_set=args.prompts_per_set, include_backfire=not args.quick)
    for name, m in results["sets"].items():
        print(_args.summary_line(name, m))
    print(f"report: {args.out}/report.md (and report.html)")
