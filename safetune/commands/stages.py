"""align and finetune: the training stages, each with its recipe's settings as flags."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from ..config import ESD_X, FINETUNE, SET_IMAGES, SHAPES_CONCEPTS, TrainConfig
from ..models.inference import save_inference
from ..options import apply_overrides, describe
from ..errors import SafetuneError
from ..stages.methods import METHODS
from . import _args

CLEAN_DATA, HARMFUL_DATA = "clean", "harmful"  # align lt/ng/dd: the ShapesWorld sets used unless told
# finetune --recipe NAME: the studies' own fine-tuning recipes, so a study's run can be redone by hand
RECIPE_NAMES = ("finetune", "backfire-full", "backfire-lora", "forgetting-full", "forgetting-lora", "forgetting-benign")


def named_recipes() -> dict[str, TrainConfig]:
    """Each named fine-tuning recipe, read from the studies' configs (one home; their names are also in
    RECIPE_NAMES, because --help must not import the studies)."""
    from ..studies.backfire import BackfireConfig
    from ..studies.forgetting import ForgettingStudyConfig

    b, f = BackfireConfig(), ForgettingStudyConfig()
    steps = max(f.attack_steps)
    return {
        "finetune": FINETUNE,
        "backfire-full": b.train_config("full", 0),  # its seeds: --set seed=N
        "backfire-lora": b.train_config("lora", 0),  # lora-on-top with --on-top SAFE, modular without
        "forgetting-full": replace(f.full_attack, steps=steps, save_at=list(f.attack_steps)),  # lr per run: --set lr=
        "forgetting-lora": replace(f.lora_attack, steps=steps, save_at=list(f.attack_steps)),
        "forgetting-benign": f.benign,
    }


def _training_flags(p, recipe: TrainConfig, skip=()) -> None:
    _args.add_config_flags(p, recipe, skip=("save_at", "lr_schedule", "warmup_steps", "report_to", "logging_dir", *skip), title="training")
    p.add_argument("--report-to", default=None, choices=["tensorboard", "wandb"],
                   help="log loss and learning rate (and the harmful rate at --save-at steps) through accelerate")
    p.add_argument("--logging-dir", default=None, help="where tensorboard writes (default: OUT.logs)")


def register(sub) -> None:
    """align and finetune."""
    p = sub.add_parser("align", help="safety alignment: a safety LoRA on W0 (ESD, SDD, ...), LT/NG, or dd",
                       description="Safety alignment by one of the registered methods (safetune/stages/methods.py). "
                       "Training flags default to the method's recipe; its settings: --set NAME=VALUE, its recipe: "
                       "--set train.NAME=VALUE (--show-config lists both). Methods: " + "; ".join(
                           f"{m.name}: {m.summary} ({_recipe_words(m)}; {m.paper})" for m in METHODS.values()) + ".")
    _args.add_model_flags(p)
    p.add_argument("--method", default="esd-x", choices=list(METHODS), help="the method (default esd-x); see above")
    p.add_argument("--concept", action="append", default=None,
                   help="a prompt of the concept to erase; repeat for several phrasings (default: "
                        f"{', '.join(map(repr, SHAPES_CONCEPTS))})")
    p.add_argument("--on-top", action="append", default=[], metavar="LORA[:SCALE]",
                   help="lt/ng/dd: start from the model with this safety LoRA merged (safety reinforcement)")
    p.add_argument("--clean-data", default=None,
                   help=f"lt/ng/dd: folder or ShapesWorld set of clean (retain) images (default: {CLEAN_DATA})")
    p.add_argument("--harmful-data", default=None,
                   help=f"lt/ng: folder or ShapesWorld set of harmful images (default: {HARMFUL_DATA})")
    p.add_argument("--n", type=int, default=None, help=f"lt/ng/dd: images drawn from a ShapesWorld set (default {SET_IMAGES})")
    p.add_argument("--format", default="diffusers", choices=["diffusers", "kohya"],
                   help="layout of a LoRA output (kohya: what AUTOMATIC1111 and ComfyUI load)")
    _args.add_out(p, "file", required=False,
                  help="the LoRA file (.safetensors); a directory for dd, and for lt/ng with --mode full")
    _args.add_set(p, "method's")
    _training_flags(p, ESD_X)
    p.set_defaults(func=align)

    p = sub.add_parser("finetune", help="fine-tune on an image folder (benign or malicious: same command), full or LoRA")
    _args.add_model_flags(p)
    p.add_argument("--data", default=None, help="folder with metadata.jsonl (file_name, text), or a ShapesWorld set "
                                                "(required)")
    p.add_argument("--n", type=int, default=None, help=f"images drawn from a ShapesWorld set (default {SET_IMAGES})")
    p.add_argument("--on-top", action="append", default=[], metavar="LORA[:SCALE]",
                   help="merge this (safety) LoRA into the weights before fine-tuning (the baselines' way)")
    p.add_argument("--save-at", default=None, help="steps at which to also save the model (or LoRA), e.g. 0,20,100,200")
    p.add_argument("--format", default="diffusers", choices=["diffusers", "kohya"], help="layout of a LoRA output")
    _args.add_out(p, "file", required=False, help="LoRA file (.safetensors) for --mode lora, else a directory (required)")
    p.add_argument("--recipe", default="finetune", choices=RECIPE_NAMES,
                   help="start from a named recipe, e.g. backfire-lora (the backfire study's LoRA), forgetting-full; "
                        "flags and --set change it from there; --show-config shows it (default: finetune)")
    _args.add_set(p, "training")
    _training_flags(p, FINETUNE)
    p.set_defaults(func=finetune)


def _recipe_words(method) -> str:
    """'3,200 full steps at lr 0.001': a method's default training, as the help says it."""
    if not method.trains:
        return "closed form, no training"
    train = method.prepare(method.recipe)
    where = f", rank {train.lora_rank} on {train.targets}" if train.mode == "lora" else ""
    return f"{train.steps:,} {train.mode} steps at lr {train.lr:g}{where}"


TRAIN_PREFIX = "train."  # align's --set train.NAME=VALUE sets its training recipe; bare names its method's settings


def _recipe_sets(args) -> list[str]:
    """align's --set train.NAME=VALUE entries, as NAME=VALUE for its training recipe."""
    return [a[len(TRAIN_PREFIX):] for a in args.set if a.startswith(TRAIN_PREFIX)]


def _settings(args):
    settings = METHODS[args.method].make_settings()
    return apply_overrides(settings, [a for a in args.set if not a.startswith(TRAIN_PREFIX)])


def _output(args, lora_output: bool) -> Path:
    from ..io import check_output

    if lora_output and Path(args.out).suffix != ".safetensors":
        raise SafetuneError(f"{args.out}: a LoRA is written as a .safetensors file; end --out with .safetensors")
    if not lora_output and Path(args.out).suffix == ".safetensors":
        raise SafetuneError(f"{args.out}: this stage writes a diffusers directory, not a LoRA file; drop .safetensors")
    out = check_output(args.out, "file" if lora_output else "dir", args.overwrite)
    if lora_output:
        check_output(out.with_suffix(".json"), "file", args.overwrite)  # the side file with the settings
    return out


def _train_config(args, recipe: TrainConfig, assignments: list[str], **fixed) -> TrainConfig:
    if args.logging_dir is not None and not args.report_to:
        raise SafetuneError("--logging-dir is where --report-to writes; give --report-to tensorboard (or drop it)")
    config = replace(_args.config_with_set(args, recipe, assignments), **fixed)
    if config.mode == "token":
        raise SafetuneError("--mode token: concept inversion's own mode (safetune study relearn --set "
                            "attacks=inversion); choose lora, full or partial")
    if args.report_to:
        from ..train import check_tracker

        check_tracker(args.report_to)
        config = replace(config, report_to=args.report_to,
                         logging_dir=args.logging_dir or str(Path(args.out or "out").with_suffix("")) + ".logs")
    return config


def _check_data(args, *sources: str) -> None:
    """--n and the data sources, before any work."""
    from ..data.folder import check_data_source

    if args.n is not None and not 1 <= args.n <= 10**6:
        raise SafetuneError(f"--n {args.n}: give 1 to 1,000,000")
    for source in sources:
        check_data_source(source)


def _data(args, pipe, source: str, seed: int = 0):
    from ..data.folder import load_training_data
    from ..models.conditioning import image_size

    return load_training_data(source, image_size(pipe), n=args.n or SET_IMAGES,
                              seed=seed)


def _on_top(args):
    from ..lora.weights import LoRA

    return [(LoRA.load(p), s) for p, s in _args.check_loras(args.on_top, "--on-top")]


def align(args) -> None:
    """`safetune align`: the registered method's safety alignment (a LoRA or the trained model)."""
    method = METHODS[args.method]
    settings = _settings(args)
    if args.show_config:
        _args.show_config(settings)
        print("\n".join(TRAIN_PREFIX + line for line in describe(method.prepare(
            _train_config(args, method.recipe, _recipe_sets(args))))))
        return
    if not args.out:
        raise SafetuneError("give --out: the LoRA file (.safetensors), or a directory for a method that trains the "
                            "model itself (dd; lt/ng with --mode full)")
    training_flags = [name for name in vars(method.recipe) if getattr(args, "cfg_" + name, None) is not None]
    if not method.trains and (training_flags or _recipe_sets(args)):
        kind = "an inference-time method" if method.output == "inference" else "a closed-form edit"
        raise SafetuneError(f"{', '.join('--' + g.replace('_', '-') for g in training_flags) or '--set train.*'}: "
                            f"{method.name} is {kind}, with no training to set; drop them (its settings: --show-config)")
    for name in method.fixed:
        if getattr(args, "cfg_" + name) is not None:
            raise SafetuneError(f"--{name}: {method.name} sets it itself (ESD-x/SDD: a LoRA on cross-attention, "
                                "ESD-u: on the rest; dd: every weight); drop it")
    config = method.prepare(_train_config(args, method.recipe, _recipe_sets(args)))
    needs = method.data(settings)
    if "clean" in needs:
        args.clean_data = CLEAN_DATA if args.clean_data is None else args.clean_data
    if args.harmful_data is not None and "harmful" not in needs and "clean" in needs:
        raise SafetuneError("--harmful-data: dd uses harmful data only for its tamper and hold terms; give --set "
                            "harm_margin=M (> 0) or hold_weight=W (> 0) too, or drop --harmful-data")
    if "harmful" in needs:
        args.harmful_data = HARMFUL_DATA if args.harmful_data is None else args.harmful_data
    if needs:
        _check_data(args, *(getattr(args, f"{kind}_data") for kind in needs))
    given = [f for f, v in (("--clean-data", args.clean_data), ("--harmful-data", args.harmful_data),
                            ("--n", args.n), ("--on-top", args.on_top or None)) if v is not None]
    if given and not needs:
        raise SafetuneError(f"{', '.join(given)}: settings of methods trained on images (lt, ng, dd); an "
                            f"{method.name} safety LoRA is trained on the model's own images of --concept")
    out = _output(args, method.returns_lora(config))
    _args.check_loras(args.lora + args.on_top)
    on_top = _on_top(args)
    pipe = _args.pipeline(args)
    concepts = args.concept or list(SHAPES_CONCEPTS)
    meta = {"method": method.name, "concepts": concepts, "settings": asdict(settings), "model": args.model,
            "loras": args.lora, "on_top": args.on_top}
    from ..lora.weights import merge_into
    from ..stages.methods import Inputs

    merge_into(pipe, on_top)
    inputs = Inputs(concepts, settings, config, checkpoint_dir=Path(str(out) + ".checkpoint"), identity=meta)
    for kind in needs:
        setattr(inputs, kind, _data(args, pipe, getattr(args, f"{kind}_data"), seed=int(kind == "harmful")))
        meta.update({f"{kind}_data": getattr(args, f"{kind}_data")})
    if needs:
        meta.update(n=args.n, train=asdict(config))
    lora = method.run(pipe, inputs)
    if kind := _save(out, lora, pipe, {**meta, "train": asdict(config)} if method.trains else meta, args.format):
        print(f"wrote safety LoRA ({len(lora.factors)} modules, rank {lora.rank()}) to {args.out}"
              if lora is not None and not needs else f"wrote the model, sampling with {method.name} (weights "
              f"unchanged), to {args.out}" if method.output == "inference" else
              f"wrote the {method.name}-trained {kind} to {args.out}")


def _save(out: Path, lora, pipe, meta: dict, layout: str = "diffusers") -> str | None:
    """A LoRA stage writes FILE.safetensors (its settings inside) and FILE.json beside it; a full
    stage writes a diffusers directory with its settings in safetune.json. Under a multi-process
    launch only the main process writes (and gets what it wrote; the others None)."""
    from ..io import output_dir, write_json

    if not _args.is_main_process():
        return None
    if lora is not None:
        lora.save(out, {"safetune": json.dumps(meta)}, layout=layout)
        write_json(out.with_suffix(".json"), meta, mark=True)
        return "LoRA"
    with output_dir(out) as tmp:
        pipe.save_pretrained(tmp)
        save_inference(pipe, tmp)  # a negative prompt or SLD travels with the weights
        write_json(tmp / "safetune.json", meta, mark=True)
    return "model (a diffusers directory)"


def finetune(args) -> None:
    """`safetune finetune`: benign or malicious fine-tuning, with snapshots at --save-at steps."""
    from ..io import atomic_dir
    from ..models.conditioning import trained_text_encoders
    from ..stages.finetuning import finetune as run
    from ..train import extract_lora

    config = _train_config(args, named_recipes()[args.recipe], args.set)
    if args.save_at is not None:
        config = replace(config, save_at=_save_at(args.save_at, config.steps))
    if args.show_config:
        return _args.show_config(config)
    for flag, value in (("--data", args.data), ("--out", args.out)):
        if not value:
            raise SafetuneError(f"finetune needs {flag} (see safetune finetune --help)")
    _check_data(args, args.data)
    out = _output(args, config.mode == "lora")
    _args.check_loras(args.lora + args.on_top)
    on_top = _on_top(args)
    pipe = _args.pipeline(args)
    images, texts = _data(args, pipe, args.data)
    snapshots = Path(str(out) + ".steps")

    def save_snapshot(step, unet):  # the attack schedule: a model (or LoRA) at each --save-at step
        if not _args.is_main_process():
            return None
        snapshots.mkdir(exist_ok=True)
        if config.mode == "lora":
            extract_lora(unet, config, trained_text_encoders(pipe)).save(snapshots / f"step{step:06d}.safetensors",
                                                                         layout=args.format)
        else:
            with atomic_dir(snapshots / f"step{step:06d}") as tmp:
                pipe.save_pretrained(tmp)
                save_inference(pipe, tmp)  # a negative prompt or SLD travels with the weights
        return _tracked_harmful_rate(pipe) if config.report_to else None

    meta = {"data": args.data, "n": args.n, "on_top": args.on_top, "model": args.model, "loras": args.lora,
            "train": asdict(config)}
    lora = run(pipe, images, texts, config, on_top=on_top, on_save=save_snapshot if config.save_at else None,
               checkpoint_dir=Path(str(out) + ".checkpoint"), identity=meta,
               desc=f"finetune {config.mode} on {args.data}" + (f" ({args.recipe} recipe)" if args.recipe != "finetune" else ""))
    if kind := _save(out, lora, pipe, meta, args.format):
        print(f"wrote the fine-tuned {kind} to {args.out}")


def _tracked_harmful_rate(pipe) -> dict:
    """The harmful rate logged at --save-at steps: 20 `harmful` prompts x 2 images (ShapesWorld models)."""
    from ..config import SamplingConfig
    from ..data.prompts import read_prompts
    from ..evaluation import evaluate_prompts
    from ..evaluation.detectors import load_detector
    from ..models.loading import is_shipped_vocabulary

    if not is_shipped_vocabulary(pipe):
        return {}
    m = evaluate_prompts(pipe, read_prompts("harmful", limit=20), load_detector("shapes"),
                         SamplingConfig(images_per_prompt=2))
    return {"harmful_rate": m["harmful_rate"]}


def _save_at(text: str, steps: int) -> list[int]:
    try:
        values = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SafetuneError(f"--save-at {text}: write steps separated by commas, e.g. 0,20,100,200") from None
    if not values or values[0] < 0 or values[-1] > steps:
        raise SafetuneError(f"--save-at {text}: steps between 0 and --steps ({steps})")
    return values
