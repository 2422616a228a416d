"""generate, evaluate, demo: sampling with fixed seeds, and scoring with a detector."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..config import SamplingConfig
from ..errors import SafetuneError
from . import _args

GENERATE = SamplingConfig(images_per_prompt=4)  # generate's own default (a grid four images wide), its help's too
PROMPTS_HELP = ("a .csv/.txt/.jsonl file, a built-in set (harmful, harmful_implicit, clean, checkered, outline, "
                "plus, sparkle) or a prompt in quotes; text:PROMPT always means the prompt itself")


def register(sub) -> None:
    """generate, evaluate and demo."""
    p = sub.add_parser("generate", help="sample images (and a labelled grid) for prompts")
    _args.add_model_flags(p)
    p.add_argument("--prompts", required=True, help=PROMPTS_HELP)
    p.add_argument("--limit", type=int, default=None, help="the first N prompts only (N >= 1)")
    _args.add_out(p, "dir")
    _args.add_config_flags(p, GENERATE, title="sampling")
    p.set_defaults(func=generate, sampling=GENERATE)

    p = sub.add_parser("evaluate", help="sample with fixed seeds, detect, write results.json")
    _args.add_model_flags(p)
    p.add_argument("--prompts", required=True, help=PROMPTS_HELP)
    p.add_argument("--category", action="append", help="keep only rows of this I2P category (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="the first N prompts only (N >= 1)")
    p.add_argument("--detector", default="shapes",
                   help="'shapes', 'nudenet', 'q16' (with --clip and --q16) or a ShapesWorld detector directory")
    p.add_argument("--clip", default=None, help="a local CLIP model directory: adds clip_score (prompt fidelity)")
    p.add_argument("--q16", default=None, help="the Q16 prompt embeddings (safetensors) for --detector q16")
    p.add_argument("--aesthetic", default=None, help="the LAION aesthetic head (needs --clip): adds aesthetic")
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
    config = _args.config_from_args(args, getattr(args, "sampling", SamplingConfig()))
    return rows, config


def generate(args) -> None:
    """`safetune generate`: images at fixed seeds, images.json and a labelled grid."""
    from ..evaluation.grid import image_grid
    from ..evaluation.sampling import image_seeds, sample
    from ..io import check_output, output_dir, write_json

    rows, config = _rows_and_pipe(args, limit=args.limit)
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
    """`safetune evaluate`: sample, detect, score; results.json with 95% intervals."""
    from ..evaluation import evaluate_prompts
    from ..io import check_output, output_dir, write_json

    rows, config = _rows_and_pipe(args, categories=args.category, limit=args.limit)
    if args.detector != "q16":
        _args.check_detector(args.detector)
    out = check_output(args.out, "dir", args.overwrite)
    detector, scorers = _detector_and_scorers(args)  # checks the weight paths before loading anything
    pipe = _args.pipeline(args)
    _args.warn_unknown_words(pipe, rows, args.model)
    is_main = _args.is_main_process()
    with output_dir(out) as tmp:
        metrics = evaluate_prompts(pipe, rows, detector, config, tmp / "grid.png" if is_main else None, scorers)
        results = {"model": args.model, "loras": args.lora, "prompts": args.prompts, "detector": detector.name,
                   "sampling": asdict(config), **metrics}
        write_json(tmp / "results.json", results, mark=True)
    if is_main:
        print(_args.summary_line(args.prompts, metrics))


def _detector_and_scorers(args):
    """The detector, and the CLIP-based scores the user has weights for (--clip, --aesthetic)."""
    from ..evaluation.detectors import load_detector

    for flag_name, value, kind in (("--clip", args.clip, "dir"), ("--q16", args.q16, "file"),
                                   ("--aesthetic", args.aesthetic, "file")):
        if value is not None and (not value.strip() or not (Path(value).is_dir() if kind == "dir" else Path(value).is_file())):
            raise SafetuneError(f"{flag_name} {value!r}: no such {'directory' if kind == 'dir' else 'file'} "
                                "(local weights: see docs/scale.md)")
    if (args.q16 or args.aesthetic) and not args.clip:
        raise SafetuneError("--q16 and --aesthetic score CLIP embeddings: give --clip DIR too")
    if args.q16 and args.detector != "q16" or args.detector == "q16" and not args.q16:
        raise SafetuneError("Q16 is a detector: give --detector q16 with --q16 FILE and --clip DIR")
    scorers, clip = {}, None
    if args.clip:
        from ..evaluation.clip import ClipScorer

        clip = ClipScorer(args.clip, device=_args.check_device(args.device))
        scorers["clip_score"] = clip.clip_scores
    if args.aesthetic:
        from ..evaluation.clip import Aesthetic

        scorers["aesthetic"] = lambda images, prompts, head=Aesthetic(clip, args.aesthetic): head.scores(images)
    if args.detector == "q16":
        from ..evaluation.clip import Q16

        return Q16(clip, args.q16), scorers
    return load_detector(args.detector), scorers


def demo(args) -> None:
    """`safetune demo`: the shipped model evaluated, and the reduced backfire study."""
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
