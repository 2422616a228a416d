"""pretrain-shapes, train-detector, world: the shipped miniature world, rebuilt from seeds."""
from __future__ import annotations

from ..config import SET_IMAGES, DetectorTrainConfig, PretrainConfig
from ..data.prompts import SET_PROMPTS, SET_SEED
from . import _args


def register(sub) -> None:
    """pretrain-shapes, train-detector and world."""
    p = sub.add_parser("pretrain-shapes", help="pretrain the miniature SD on ShapesWorld (checkpointed, resumable)")
    _args.add_out(p, "dir", required=False, help="output directory (required; new or empty, see --overwrite)")
    _args.add_set(p, "pretraining")
    _args.add_config_flags(p, PretrainConfig(), title="pretraining")
    p.set_defaults(func=pretrain_shapes)

    p = sub.add_parser("train-detector", help="train the ShapesWorld detector; prints held-out accuracy")
    _args.add_out(p, "dir", required=False, help="output directory (required; new or empty, see --overwrite)")
    _args.add_set(p, "detector training")
    _args.add_config_flags(p, DetectorTrainConfig(), title="training")
    p.set_defaults(func=train_detector)

    from ..data.shapesworld import DATA_SETS

    p = sub.add_parser("world", help="export ShapesWorld data (image folder + metadata.jsonl) or prompt sets")
    p.add_argument("what", choices=["prompts", *DATA_SETS])
    _args.add_out(p, "dir")
    p.add_argument("--n", type=int, default=None,
                   help=f"images (default {SET_IMAGES}) or prompts per set (default {SET_PROMPTS})")
    p.add_argument("--seed", type=int, default=None,
                   help=f"default: {SET_SEED} for prompts (the shipped sets), 0 for data")
    p.set_defaults(func=world)


def pretrain_shapes(args) -> None:
    """`safetune pretrain-shapes`: the miniature SD from a seed."""
    from ..io import check_output
    from ..stages.pretraining import pretrain

    config = _args.settings_or_show(args, PretrainConfig())
    if config is None:
        return
    if config.vae_from is not None:
        from pathlib import Path

        from ..errors import SafetuneError
        from ..models.loading import resolve_model

        if not (Path(resolve_model(config.vae_from)) / "vae").is_dir():
            raise SafetuneError(f"--vae-from {config.vae_from}: no vae/ folder there; give a diffusers directory "
                                "with a VAE, or 'shapes'")
    check_output(args.out, "dir", args.overwrite)
    pretrain(args.out, config)
    print(f"wrote the pretrained pipeline to {args.out}")


def train_detector(args) -> None:
    """`safetune train-detector`: the ShapesWorld detector, with held-out accuracy."""
    from ..evaluation.detectors import train_detector as train
    from ..io import check_output

    config = _args.settings_or_show(args, DetectorTrainConfig())
    if config is None:
        return
    check_output(args.out, "dir", args.overwrite)
    detector, metrics = train(config)
    detector.save_pretrained(args.out, metrics)
    for split in ("clean_renders", "degraded_renders"):
        accs = "  ".join(f"{k} {v:.4f}" for k, v in metrics[split].items())
        print(f"held-out {split} (n={metrics['n_test']}): {accs}")


def world(args) -> None:
    """`safetune world`: ShapesWorld prompt sets (CSV) or an image folder with metadata.jsonl."""
    from ..data.prompts import prompt_csv, prompt_set
    from ..data.shapesworld import PROMPT_SETS, export_imagefolder, make_dataset
    from ..errors import SafetuneError
    from ..io import check_output, output_dir

    if args.n is not None and not 1 <= args.n <= 10**6:
        raise SafetuneError(f"--n {args.n}: give 1 to 1,000,000")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise SafetuneError(f"--seed {args.seed}: give 0 to 4294967295")
    check_output(args.out, "dir", args.overwrite)
    if args.what == "prompts":
        with output_dir(args.out) as tmp:
            for name in PROMPT_SETS:
                seed = SET_SEED if args.seed is None else args.seed
                (tmp / f"{name}.csv").write_text(prompt_csv(prompt_set(name, n=args.n or SET_PROMPTS, seed=seed)))
        print(f"wrote {len(PROMPT_SETS)} prompt sets to {args.out}")
        return
    export_imagefolder(make_dataset(args.what, args.n or SET_IMAGES, seed=args.seed or 0), args.out)
    print(f"wrote {args.n or SET_IMAGES} images and metadata.jsonl to {args.out}")
