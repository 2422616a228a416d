"""`safetune <command>`: one entry point; every command has --help.

Errors a user can fix come out as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
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


def _is_main() -> bool:
    """Under `accelerate launch` every process samples its share; only the main one writes."""
    from accelerate import PartialState

    return PartialState().is_main_process


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
    if not _is_main():
        return
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
    metrics = evaluate_prompts(pipe, rows, detector, config, out / "grid.png" if _is_main() else None)
    if not _is_main():
        return
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
                            pool=args.pool, checkpoint_every=args.checkpoint_every,
                            exclude_harmful=args.exclude_harmful, vae_from=args.vae_from)
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


def _train_config(args, **overrides):
    from .train import TrainConfig

    save_at = [int(x) for x in args.save_at.split(",")] if getattr(args, "save_at", None) else []
    return TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       mixed_precision=args.mixed_precision, ema_decay=args.ema, seed=args.seed,
                       lora_rank=args.rank, lora_alpha=args.alpha,
                       checkpoint_every=args.checkpoint_every, save_at=save_at,
                       gradient_checkpointing=args.gradient_checkpointing, **overrides)


def _add_training(p, steps=400, lr=1e-3, batch_size=32):
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the trained weights (off by default)")
    p.add_argument("--rank", type=int, default=4, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--gradient-checkpointing", action="store_true", help="less memory, more compute")


def _lora_out(path: str) -> Path:
    from .io import ensure_parent

    out = ensure_parent(path)
    if out.suffix != ".safetensors":
        raise SafetuneError(f"{out}: a LoRA is written as a .safetensors file; end --out with .safetensors")
    return out


def cmd_align(args) -> None:
    if args.method in ("lt", "ng"):
        return _align_forgetting(args)
    if args.method == "dd":
        return _align_distill(args)
    from .align import align_lora
    from .io import write_json

    out = _lora_out(args.out)
    pipe = _pipeline(args)
    config = _train_config(args)
    args.concept = args.concept or ["a star"]
    lora = align_lora(pipe, args.method, args.concept, config, eta=args.eta,
                      checkpoint_dir=out.with_name(out.name + ".checkpoint"),
                      identity={"model": args.model, "loras": args.lora})
    lora.save(out, {"safetune_method": args.method, "safetune_concepts": json.dumps(args.concept)})
    write_json(out.with_suffix(".json"), {"method": args.method, "concepts": args.concept, "eta": args.eta,
                                          "model": args.model, "train": vars_of(config)})
    print(f"wrote safety LoRA ({len(lora.factors)} modules, rank {lora.rank()}) to {out}")


def _align_forgetting(args) -> None:
    from dataclasses import asdict

    from .align import forgetting_train
    from .align.forgetting import ForgettingConfig
    from .data.folder import load_training_data
    from .lora.weights import LoRA
    from .models.loading import parse_lora_arg

    out = _lora_out(args.out) if args.mode == "lora" else _out_dir(args.out)
    pipe = _pipeline(args)
    if args.on_top:  # safety reinforcement: start from an aligned model (e.g. W0 + dW_esd)
        from .lora.weights import merge_into

        merge_into(pipe, [(LoRA.load(p), s) for p, s in map(parse_lora_arg, args.on_top)])
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    clean = load_training_data(args.clean_data, resolution, n=args.n)
    harmful = load_training_data(args.harmful_data, resolution, n=args.n, seed=1)
    fcfg = ForgettingConfig(variant=args.method, mode=args.contrastive, noise=args.noise, lambda1=args.lambda1,
                            lambda_total=args.lambda_total, margin=args.margin, harm_margin=args.harm_margin,
                            harm_weight=args.harm_weight, attack_sim_steps=args.attack_sim_steps,
                            attack_sim_lr=args.attack_sim_lr)
    config = _train_config(args, mode=args.mode, targets=args.targets)
    meta = {"method": args.method, "forgetting": asdict(fcfg), "model": args.model, "on_top": args.on_top,
            "clean_data": args.clean_data, "harmful_data": args.harmful_data, "n": args.n, "train": vars_of(config)}
    lora = forgetting_train(pipe, clean, harmful, fcfg, config, checkpoint_dir=Path(str(out) + ".checkpoint"),
                            identity=meta)
    kind = _save_stage_output(out, lora, pipe, meta, "safetune_align.json")
    print(f"wrote {args.method} safe-trained {kind} to {out}")


def _align_distill(args) -> None:
    from dataclasses import asdict

    from .align import distill_train
    from .align.distill import DistillConfig
    from .config import apply_overrides
    from .data.folder import load_training_data

    out = _out_dir(args.out)
    distill = apply_overrides(DistillConfig(), [a[len("distill."):] if a.startswith("distill.") else a
                                                for a in (args.set or [])])
    pipe = _pipeline(args)
    clean = load_training_data(args.clean_data, pipe.unet.config.sample_size * pipe.vae_scale_factor, n=args.n)
    config = _train_config(args, mode="full")
    concepts = args.concept or ["a star", "a pentagram"]
    meta = {"method": "dd", "distill": asdict(distill), "model": args.model, "loras": args.lora,
            "clean_data": args.clean_data, "n": args.n, "concepts": concepts, "train": vars_of(config)}
    distill_train(pipe, clean, concepts, distill, config, checkpoint_dir=Path(str(out) + ".checkpoint"), identity=meta)
    _save_stage_output(out, None, pipe, meta, "safetune_align.json")
    print(f"wrote the distort-and-distill model (a diffusers directory) to {out}")


def _save_stage_output(out: Path, lora, pipe, meta: dict, meta_name: str) -> str:
    """A LoRA stage writes FILE.safetensors (its metadata inside) and FILE.json beside it; a full
    stage writes a diffusers directory with the config inside. Returns what was written."""
    from .io import atomic_dir, write_json

    if lora is not None:
        lora.save(out, {"safetune": json.dumps(meta)})
        write_json(out.with_suffix(".json"), meta)
        return "LoRA"
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp)
        write_json(tmp / meta_name, meta)
    return "pipeline"


def vars_of(config):
    from dataclasses import asdict

    return asdict(config)


def cmd_finetune(args) -> None:
    from .data.folder import load_training_data
    from .finetune import finetune
    from .io import atomic_dir
    from .lora.weights import LoRA
    from .models.loading import parse_lora_arg

    out = _lora_out(args.out) if args.mode == "lora" else _out_dir(args.out)
    pipe = _pipeline(args)
    images, texts = load_training_data(args.data, pipe.unet.config.sample_size * pipe.vae_scale_factor, n=args.n)
    on_top = [(LoRA.load(p), s) for p, s in map(parse_lora_arg, args.on_top)]
    config = _train_config(args, mode=args.mode, targets=args.targets, train_text_encoder=args.train_text_encoder)
    snapshots = Path(str(out) + ".steps")

    def save_snapshot(step, unet):  # the attack schedule: a model (or LoRA) at each --save-at step
        snapshots.mkdir(exist_ok=True)
        if args.mode == "lora":
            from .train import extract_lora

            extract_lora(unet, config, pipe.text_encoder).save(snapshots / f"step{step:06d}.safetensors")
        else:
            with atomic_dir(snapshots / f"step{step:06d}") as tmp:
                pipe.save_pretrained(tmp)

    meta = {"data": args.data, "n": args.n, "mode": args.mode, "on_top": args.on_top, "model": args.model,
            "loras": args.lora, "train": vars_of(config)}
    lora = finetune(pipe, images, texts, config, on_top=on_top, on_save=save_snapshot if config.save_at else None,
                    checkpoint_dir=Path(str(out) + ".checkpoint"), identity=meta)
    kind = _save_stage_output(out, lora, pipe, meta, "safetune_finetune.json")
    print(f"wrote fine-tuned {kind} to {out}")


def cmd_compose(args) -> None:
    from .audit import cancel_overlap
    from .io import atomic_dir, write_json
    from .lora.weights import LoRA
    from .models.loading import parse_lora_arg

    out = _out_dir(args.out)
    if not args.lora:
        raise SafetuneError("compose needs at least one --lora FILE[:SCALE]")
    if args.safety_lora:
        safety = LoRA.load(args.safety_lora)
        for path, _ in map(parse_lora_arg, args.lora):
            overlap = cancel_overlap(LoRA.load(path), safety)["overlap"]
            if overlap > args.threshold and not args.force:
                raise SafetuneError(f"{path}: overlaps -dW_safe by {overlap:.3f} (> {args.threshold}): it would cancel "
                                    "the safety LoRA; run `safetune audit`, or pass --force to compose anyway")
        args.lora = [args.safety_lora] + args.lora
    pipe = _pipeline(args)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp)
        write_json(tmp / "safetune_compose.json", {"model": args.model, "loras": args.lora})
    print(f"wrote W0 + {' + '.join(args.lora)} as a diffusers directory to {out}")


def cmd_audit(args) -> int:
    from dataclasses import asdict

    from .audit import AuditThresholds, cancel_overlap, verdict
    from .io import write_json
    from .lora.weights import LoRA

    thresholds = AuditThresholds(overlap=args.threshold, max_increase=args.max_increase)
    overlap = cancel_overlap(LoRA.load(args.lora), LoRA.load(args.safety_lora))
    aligned = composed = None
    if not args.no_measure:
        from .data.prompts import read_prompts
        from .evaluate import evaluate_prompts
        from .evaluate.detectors import load_detector
        from .models.loading import load_pipeline

        rows = read_prompts(args.prompts, limit=args.limit)
        config = _sampling_config(args)
        detector = load_detector(args.detector)
        aligned = evaluate_prompts(load_pipeline(args.model, [args.safety_lora]), rows, detector, config)
        composed = evaluate_prompts(load_pipeline(args.model, [args.safety_lora, args.lora]), rows, detector, config)
    result = verdict(overlap["overlap"], aligned, composed, thresholds)
    print(f"overlap of dW_ft with -dW_safe: {overlap['overlap']:+.3f} over {overlap['shared_modules']} shared modules "
          f"(threshold {thresholds.overlap})")
    if aligned:
        print(_summary_line("aligned  W0 + dW_safe        ", aligned))
        print(_summary_line("composed W0 + dW_safe + dW_ft", composed))
    print("verdict: " + ("PASS" if result["pass"] else "FAIL: " + "; ".join(result["reasons"])))
    if args.out:
        write_json(_out_dir(args.out), {"lora": args.lora, "safety_lora": args.safety_lora, "model": args.model,
                                        "thresholds": asdict(thresholds), **overlap, "aligned": aligned,
                                        "composed": composed, **result})
    return 0 if result["pass"] else 1


def cmd_lora(args) -> None:
    from .lora.weights import LoRA, inspect
    from .models.loading import parse_lora_arg

    if args.op == "inspect":
        lora = LoRA.load(args.files[0])
        against = LoRA.load(args.files[1]) if len(args.files) > 1 else None
        report = inspect(lora, against)
        if args.json:
            print(json.dumps(report, indent=2))
            return
        for name, row in report["modules"].items():
            cos = f"  cosine {row['cosine']:+.3f}" if "cosine" in row else ""
            print(f"{name}  rank {row['rank']}  norm {row['norm']:.4f}{cos}")
        print(f"total norm {report['total_norm']:.4f}" + (f"  overall cosine {report['cosine']:+.4f}" if against else ""))
        return
    out = _lora_out(args.out)
    if args.op == "negate":
        result = -LoRA.load(args.files[0])
    elif args.op == "combine":
        result = None
        for path, scale in map(parse_lora_arg, args.files):
            term = LoRA.load(path).scaled(scale)
            result = term if result is None else result + term
    else:  # subtract
        if len(args.files) != 2:
            raise SafetuneError("lora subtract takes two files: A B (writes A - B)")
        result = LoRA.load(args.files[0]) - LoRA.load(args.files[1])
    result.save(out)
    print(f"wrote {args.op} of {', '.join(args.files)} (rank {result.rank()}) to {out}")


def cmd_study(args) -> None:
    out = _out_dir(args.out)
    reuse = Path(args.reuse) if args.reuse else None
    if args.name == "adversarial":
        from .studies.adversarial import AdversarialStudyConfig, run_adversarial

        config = AdversarialStudyConfig()
        if args.methods:
            config.models = args.methods.split(",")
        if args.prompts:
            config.n_prompts = args.prompts
        run_adversarial(out, config, model=args.model, reuse=reuse)
        print(f"report: {out / 'report.md'}")
        return
    if args.name == "audit":
        from .studies.audit import AuditStudyConfig, run_audit_study

        result = run_audit_study(out, AuditStudyConfig(), model=args.model, reuse=reuse)
        print(f"threshold {result['threshold']:.3f}: caught {result['test_catch_rate']:.2f} of held-out cancelling "
              f"LoRAs, passed {result['test_pass_rate']:.2f} of held-out benign ones")
        return
    if args.name == "forgetting":
        from .config import apply_overrides
        from .studies.forgetting import ForgettingStudyConfig, run_forgetting

        config = ForgettingStudyConfig.reduced() if args.reduced else ForgettingStudyConfig()
        shortcuts = {"models": args.methods, "attack_steps": args.steps, "attacks": args.attack,
                     "sampling.images_per_prompt": args.images_per_prompt}
        apply_overrides(config, [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + (args.set or []))
        run_forgetting(out, config, model=args.model)
        print(f"report: {out / 'report.md'}")
        return
    from .config import apply_overrides
    from .studies.backfire import BackfireConfig, run_backfire

    config = BackfireConfig.reduced() if args.reduced else BackfireConfig()
    shortcuts = {"methods": args.methods, "domains": args.domains, "save_at": args.steps, "ways": args.ways,
                 "seeds": args.seeds, "sampling.images_per_prompt": args.images_per_prompt,
                 "reference": args.reference}
    apply_overrides(config, [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + (args.set or []))
    if args.train_text_encoder:
        config.full.train_text_encoder = config.lora.train_text_encoder = True
    run_backfire(out, config, model=args.model)
    print(f"report: {out / 'report.md'}")


def cmd_world(args) -> None:
    from .data.shapesworld import PROMPT_SETS, export_imagefolder, make_dataset, prompt_csv, prompt_set
    from .io import write_text

    out = _out_dir(args.out)
    if args.what == "prompts":
        out.mkdir(exist_ok=True)
        for name in PROMPT_SETS:
            seed = 1234 if args.seed is None else args.seed  # 1234: the shipped prompt sets
            write_text(out / f"{name}.csv", prompt_csv(prompt_set(name, n=args.n or 40, seed=seed)))
        print(f"wrote {len(PROMPT_SETS)} prompt sets to {out}")
    else:
        export_imagefolder(make_dataset(args.what, args.n or 1000, seed=args.seed or 0), out)
        print(f"wrote {args.n or 1000} images and metadata.jsonl to {out}")


def _overlap_threshold() -> float:
    from .audit import DEFAULT_OVERLAP_THRESHOLD

    return DEFAULT_OVERLAP_THRESHOLD


def build_parser() -> argparse.ArgumentParser:
    from .data.shapesworld import DATA_SETS

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
    p.add_argument("--exclude-harmful", action="store_true",
                   help="no star image and no star word: the never-trained reference model (shapes-nostar)")
    p.add_argument("--vae-from", default=None, metavar="MODEL",
                   help="reuse this model's VAE (e.g. 'shapes') and skip the VAE phase")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train-detector", help="train the ShapesWorld detector; prints held-out accuracy")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000)
    p.set_defaults(func=cmd_train_detector)

    p = sub.add_parser("align", help="train a safety LoRA (dW_safe) on the base weights: ESD or SDD")
    _add_model(p)
    p.add_argument("--method", default="esd-x", choices=["esd-x", "esd-u", "esd", "sdd", "lt", "ng", "dd"],
                   help="ESD/SDD safety LoRA; LT/NG forgetting-based safe training; dd: distort-and-distill "
                        "(full weights, resists malicious fine-tuning)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="dd: distill settings, e.g. --set noise=1.0 --set text_encoder=false")
    p.add_argument("--concept", action="append", default=None,
                   help="prompt of the concept to erase; repeat for several phrasings (default: 'a star')")
    p.add_argument("--eta", type=float, default=1.0, help="ESD negative guidance")
    p.add_argument("--out", required=True, help="the LoRA file (.safetensors); a directory for lt/ng --mode full")
    g = p.add_argument_group("lt / ng")
    g.add_argument("--mode", default="lora", choices=["lora", "full"], help="lt/ng: train a LoRA or the full UNet")
    g.add_argument("--targets", default="attn")
    g.add_argument("--clean-data", default="clean", help="folder or ShapesWorld set of clean images")
    g.add_argument("--harmful-data", default="harmful", help="folder or ShapesWorld set of harmful images")
    g.add_argument("--n", type=int, default=1000, help="images drawn for a ShapesWorld set")
    g.add_argument("--contrastive", default="contrastive", choices=["contrastive", "off", "reference"])
    g.add_argument("--noise", default="changing", choices=["changing", "fixed"])
    g.add_argument("--lambda1", type=float, default=1.0)
    g.add_argument("--lambda-total", type=float, default=0.1)
    g.add_argument("--margin", type=float, default=1.0)
    g.add_argument("--harm-margin", type=float, default=0.0,
                   help="> 0: keep the harmful images' denoising error above this (bounded ascent; beyond the paper)")
    g.add_argument("--harm-weight", type=float, default=1.0)
    g.add_argument("--attack-sim-steps", type=int, default=0,
                   help="> 0: apply --harm-margin after this many simulated malicious fine-tuning steps")
    g.add_argument("--attack-sim-lr", type=float, default=1e-3, help="size of each simulated attack step")
    g.add_argument("--on-top", action="append", default=[], metavar="LORA[:SCALE]",
                   help="safety reinforcement: merge this safety LoRA first")
    _add_training(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("finetune", help="fine-tune on an image folder (benign or malicious), full or LoRA")
    _add_model(p)
    p.add_argument("--data", required=True, help="folder with metadata.jsonl, or a ShapesWorld set name")
    p.add_argument("--n", type=int, default=1000, help="images drawn for a ShapesWorld set")
    p.add_argument("--mode", default="lora", choices=["lora", "full", "partial"])
    p.add_argument("--targets", default="attn", help="modules for lora/partial: attn, xattn, non-xattn")
    p.add_argument("--on-top", action="append", default=[], metavar="LORA[:SCALE]",
                   help="merge this (safety) LoRA into the weights before fine-tuning")
    p.add_argument("--save-at", default=None, help="steps at which to also save the model, e.g. 0,20,100,200")
    p.add_argument("--train-text-encoder", action="store_true",
                   help="train the text encoder too (full mode: all of it; lora mode: a LoRA on its attention)")
    p.add_argument("--out", required=True, help="LoRA file (.safetensors) for --mode lora, else a directory")
    _add_training(p, lr=1e-4)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("compose", help="W0 + sum of scaled LoRAs, written as a merged diffusers directory")
    _add_model(p)
    p.add_argument("--safety-lora", default=None, help="added first; a --lora that would cancel it is refused")
    p.add_argument("--threshold", type=float, default=_overlap_threshold(), help="overlap with -dW_safe that is refused")
    p.add_argument("--force", action="store_true", help="compose even a LoRA that cancels the safety LoRA")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_compose)

    p = sub.add_parser("audit", help="does a LoRA keep the safety LoRA's effect? verdict, exit 1 on fail")
    p.add_argument("--model", default="shapes")
    p.add_argument("--safety-lora", required=True)
    p.add_argument("--lora", required=True, help="the user's LoRA")
    p.add_argument("--threshold", type=float, default=_overlap_threshold())
    p.add_argument("--max-increase", type=float, default=0.05, help="tolerated rise of the harmful rate")
    p.add_argument("--no-measure", action="store_true", help="weights check only, no sampling")
    p.add_argument("--prompts", default="harmful")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--detector", default="shapes")
    p.add_argument("--out", default=None, help="write the audit as JSON to this file")
    p.add_argument("--device", default=None)
    _add_sampling(p, images_per_prompt=3)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("lora", help="LoRA tools: inspect (norms, cosine), negate, subtract, combine")
    p.add_argument("op", choices=["inspect", "negate", "subtract", "combine"])
    p.add_argument("files", nargs="+", metavar="FILE[:SCALE]")
    p.add_argument("--out", help="result file for negate/subtract/combine")
    p.add_argument("--json", action="store_true", help="inspect: print JSON")
    p.set_defaults(func=cmd_lora)

    p = sub.add_parser("study", help="run a study: backfire, forgetting, adversarial, audit")
    p.add_argument("name", choices=["backfire", "forgetting", "adversarial", "audit"])
    p.add_argument("--reuse", default=None, help="a backfire study directory whose safety LoRAs to reuse")
    p.add_argument("--prompts", type=int, default=None, help="adversarial: number of harmful prompts")
    p.add_argument("--model", default="shapes")
    p.add_argument("--out", required=True)
    p.add_argument("--reduced", action="store_true", help="the reduced version the demo runs")
    p.add_argument("--methods", default=None,
                   help="backfire: e.g. esd-x,sdd; forgetting: models, e.g. base,esd,lt,ng,esd+lt,lt:reference")
    p.add_argument("--domains", default=None, help="comma list of ShapesWorld domains or data folders")
    p.add_argument("--steps", default=None, help="fine-tuning (attack) steps to evaluate at, e.g. 0,20,100,200")
    p.add_argument("--images-per-prompt", type=int, default=None)
    p.add_argument("--attack", default=None, help="forgetting: attacks, e.g. full,lora (default both)")
    p.add_argument("--ways", default=None, help="backfire: e.g. full,lora-on-top,modular (learning rates: "
                   "--set full.lr=1e-4 --set lora.lr=1e-3)")
    p.add_argument("--seeds", default=None, help="backfire: fine-tuning seeds, e.g. 0,1,2 (default 3 seeds)")
    p.add_argument("--reference", default=None,
                   help="backfire: never-trained model fine-tuned the same ways (default shapes-nostar; '' for none)")
    p.add_argument("--train-text-encoder", action="store_true", help="backfire: fine-tune the text encoder too")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="set any field of the study's config, e.g. --set full.lr=1e-3 --set save_at=0,300,1000")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("world", help="export ShapesWorld data (image folder + metadata.jsonl) or prompt sets")
    p.add_argument("what", choices=["prompts", *DATA_SETS])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="default: 1234 for prompts (the shipped sets), 0 for data")
    p.set_defaults(func=cmd_world)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not args.verbose:  # library notices (e.g. "torchvision not installed") are not our output
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        code = args.func(args)
    except (SafetuneError, FloatingPointError) as exc:
        print(f"safetune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("safetune: interrupted; completed outputs and checkpoints are kept", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
