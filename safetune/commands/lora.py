"""compose, lora, audit: LoRAs as data, and the model host's guard against LoRAs that undo safety."""
from __future__ import annotations

import json
from dataclasses import asdict

from ..config import AuditThresholds, SamplingConfig
from ..errors import SafetuneError
from . import _args


def _guard_flags(p, measure_help: str) -> None:
    g = p.add_argument_group("guard")
    _args.add_config_flags(g, AuditThresholds())
    g.add_argument("--no-measure", action="store_true", help=measure_help)
    g.add_argument("--limit", type=int, default=40, help="prompts of each checked set (N >= 1)")
    g.add_argument("--detector", default="shapes", help="'shapes', 'nudenet' or a detector directory")
    _args.add_config_flags(g, SamplingConfig(images_per_prompt=3), skip=("seed",))


def register(sub) -> None:
    """compose, audit and lora."""
    p = sub.add_parser("compose", help="W0 + sum of scaled LoRAs, written as a merged diffusers directory")
    _args.add_model_flags(p)
    p.add_argument("--safety-lora", default=None,
                   help="added first; each --lora is audited against it and refused unless it passes")
    p.add_argument("--force", action="store_true", help="compose even what the guard refuses")
    _args.add_out(p, "dir")
    _guard_flags(p, "skip the measured check (the output's safetune_compose.json says it was skipped); a LoRA "
                    "the weights alone cannot judge is then refused")
    p.set_defaults(func=compose)

    p = sub.add_parser("audit", help="does a LoRA keep the safety LoRA's effect? PASS (exit 0), FAIL or CANNOT "
                                     "JUDGE (exit 1)")
    _args.add_model_flags(p, loras=False)
    p.add_argument("--safety-lora", required=True)
    p.add_argument("--lora", required=True, help="the user's LoRA")
    p.add_argument("--out", default=None, help="write the audit as JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an audit JSON safetune wrote before")
    _guard_flags(p, "weights check only, no sampling (a LoRA on modules the safety LoRA does not cover then "
                    "gets CANNOT JUDGE)")
    p.set_defaults(func=audit)

    p = sub.add_parser("lora", help="LoRA tools: inspect (norms, cosine), negate, subtract, combine")
    p.add_argument("op", choices=["inspect", "negate", "subtract", "combine"])
    p.add_argument("files", nargs="+", metavar="FILE[:SCALE]")
    p.add_argument("--out", help="result file for negate/subtract/combine (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace a LoRA file safetune wrote before")
    p.add_argument("--format", default="diffusers", choices=["diffusers", "kohya"], help="layout of the result")
    p.add_argument("--json", action="store_true", help="inspect: print JSON")
    p.set_defaults(func=lora)


def _guard_settings(args):
    """The guard's thresholds and sampling, checked before any work."""
    if args.limit < 1:
        raise SafetuneError(f"--limit {args.limit}: must be at least 1")
    _args.check_detector(args.detector)
    return (_args.config_from_args(args, AuditThresholds()),
            _args.config_from_args(args, SamplingConfig(images_per_prompt=3)))


def _audit(args, safety_path: str, lora_path: str) -> dict:
    """The guard's answer for one LoRA against the safety LoRA (measured unless --no-measure)."""
    from ..data.prompts import read_prompts
    from ..evaluation.detectors import load_detector
    from ..evaluation.guard import CHECKED_SETS, cancel_overlap, measure, verdict
    from ..lora.weights import LoRA, check_fits, pipeline_modules

    thresholds, sampling = _guard_settings(args)
    _args.check_model_options(args)
    user, safety = LoRA.load(lora_path), LoRA.load(safety_path)
    overlap = cancel_overlap(user, safety)
    aligned = composed = None
    if not args.no_measure:
        detector = load_detector(args.detector)
        sets = {name: read_prompts(name, limit=args.limit) for name in CHECKED_SETS}
        aligned, composed = measure(args.model, safety_path, lora_path, sets, detector, sampling,
                                    device=_args.check_device(args.device))
    else:
        from ..models.loading import load_pipeline

        modules = pipeline_modules(load_pipeline(args.model))  # both must fit the model, even unmeasured
        check_fits(safety, modules, safety_path)
        check_fits(user, modules, lora_path)
    return {"lora": lora_path, "safety_lora": safety_path, "model": args.model, "thresholds": asdict(thresholds),
            "measured": not args.no_measure, **overlap, "aligned": aligned, "composed": composed,
            **verdict(overlap, aligned, composed, thresholds)}


def _print_audit(result: dict) -> None:
    print(f"overlap of dW_ft with -dW_safe: {result['overlap']:+.3f} over {result['shared_modules']} shared modules "
          f"(threshold {result['thresholds']['overlap']}); {result['uncovered_modules']} modules outside dW_safe "
          f"({result['uncovered_share']:.0%} of the LoRA)")
    for name in result["aligned"] or {}:
        print(_args.summary_line(f"{name:<17} aligned ", result["aligned"][name]))
        print(_args.summary_line(f"{name:<17} composed", result["composed"][name]))
    print(f"verdict: {result['verdict']}" + (": " + "; ".join(result["reasons"]) if result["reasons"] else ""))


def audit(args) -> int:
    """`safetune audit`: the guard's verdict; exit 0 on PASS, 1 on FAIL or CANNOT JUDGE."""
    from ..io import check_output, write_json

    _args.check_loras([args.safety_lora, args.lora], "--lora")
    _guard_settings(args)
    if args.out is not None:
        check_output(args.out, "file", args.overwrite)
    result = _audit(args, args.safety_lora, args.lora)
    _print_audit(result)
    if args.out is not None:
        write_json(args.out, result, mark=True)
    return 0 if result["pass"] else 1


def compose(args) -> None:
    """`safetune compose`: W0 + LoRAs as a diffusers directory; with --safety-lora each LoRA is audited first."""
    from ..io import check_output, output_dir, write_json

    if not args.lora:
        raise SafetuneError("compose needs at least one --lora FILE[:SCALE]")
    if args.safety_lora is not None and not args.safety_lora.strip():
        raise SafetuneError("--safety-lora is empty; give the safety LoRA file or drop the flag")
    loras = ([args.safety_lora] if args.safety_lora else []) + args.lora
    _args.check_loras(loras)
    _guard_settings(args)
    out = check_output(args.out, "dir", args.overwrite)
    audits = []
    if args.safety_lora:
        for path, _ in _args.check_loras(args.lora):
            result = _audit(args, args.safety_lora, path)
            _print_audit(result)
            audits.append(result)
            if not result["pass"] and not args.force:
                raise SafetuneError(f"{path}: the guard says {result['verdict']} ({'; '.join(result['reasons'])}); "
                                    "nothing was written. Run `safetune audit` for details, or --force to compose anyway")
    pipe = _args.pipeline(args, extra_loras=[args.safety_lora] if args.safety_lora else [])
    with output_dir(out) as tmp:
        pipe.save_pretrained(tmp)
        write_json(tmp / "safetune_compose.json", {
            "model": args.model, "loras": loras, "safety_lora": args.safety_lora, "forced": args.force,
            "guard": [{k: a[k] for k in ("lora", "verdict", "reasons", "overlap", "measured")} for a in audits],
            "measured_check": "skipped (--no-measure)" if args.no_measure else "done"}, mark=True)
    print(f"wrote W0 + {' + '.join(loras)} as a diffusers directory to {args.out}")


def lora(args) -> None:
    """`safetune lora inspect|negate|subtract|combine`."""
    from ..io import check_output
    from ..lora.weights import LoRA, inspect

    specs = _args.check_loras(args.files, "the files")
    if args.op == "inspect":
        if len(args.files) > 2:
            raise SafetuneError("lora inspect takes one file, or two to compare: A [B]")
        report = inspect(LoRA.load(specs[0][0]), LoRA.load(specs[1][0]) if len(specs) > 1 else None)
        if args.json:
            print(json.dumps(report, indent=2))
            return
        for name, row in report["modules"].items():
            cos = f"  cosine {row['cosine']:+.3f}" if "cosine" in row else ""
            print(f"{name}  rank {row['rank']}  norm {row['norm']:.4f}{cos}")
        print(f"total norm {report['total_norm']:.4f}" + (f"  overall cosine {report['cosine']:+.4f}"
                                                         if len(specs) > 1 else ""))
        return
    if not args.out:
        raise SafetuneError(f"lora {args.op} writes a file: give --out RESULT.safetensors")
    if not args.out.endswith(".safetensors"):
        raise SafetuneError(f"{args.out}: a LoRA is written as a .safetensors file; end --out with .safetensors")
    if args.op == "negate" and len(specs) != 1 or args.op == "subtract" and len(specs) != 2:
        raise SafetuneError(f"lora {args.op} takes {'one file: A' if args.op == 'negate' else 'two files: A B (writes A - B)'}")
    check_output(args.out, "file", args.overwrite)
    terms = [LoRA.load(path).scaled(scale) for path, scale in specs]
    if args.op == "negate":
        result = -terms[0]
    elif args.op == "subtract":
        result = terms[0] - terms[1]
    else:
        result = terms[0]
        for term in terms[1:]:
            result = result + term
    result.save(args.out, layout=args.format)
    print(f"wrote {args.op} of {', '.join(args.files)} (rank {result.rank()}) to {args.out}")
