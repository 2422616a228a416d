"""compose, lora, audit: LoRAs as data, and the model host's guard against LoRAs that undo safety."""
from __future__ import annotations

import json
from dataclasses import fields
from ..config import GuardConfig, SamplingConfig
from ..errors import SafetuneError
from . import _args


_GUARD_OWNS = ("seed", "images_per_prompt")  # GuardConfig's flags of these names, not the sampling's


def _guard_flags(p, measure_help: str) -> None:
    g = p.add_argument_group("guard (the composition W0 + dW_safe + sum of scaled LoRAs is audited as merged)")
    _args.add_config_flags(g, GuardConfig())
    g.add_argument("--no-measure", action="store_true", help=measure_help)
    g.add_argument("--detector", default="shapes", help="'shapes', 'nudenet' or a detector directory")
    _args.add_config_flags(g, SamplingConfig(), skip=_GUARD_OWNS)


def register(sub) -> None:
    """compose, audit and lora."""
    p = sub.add_parser("compose", help="W0 + sum of scaled LoRAs, written as a merged diffusers directory")
    _args.add_model_flags(p)
    p.add_argument("--safety-lora", default=None, metavar="FILE",
                   help="added first, at scale 1; the composition of every --lora (at its scale) is audited against "
                        "it and refused unless it passes")
    p.add_argument("--force", action="store_true", help="compose even what the guard refuses")
    _args.add_out(p, "dir")
    _guard_flags(p, "skip the measured check; the guard then never passes (weights can show a LoRA harmful, not "
                    "safe), so the composition needs --force")
    p.set_defaults(func=compose)

    p = sub.add_parser("audit", help="does a composition keep the safety LoRA's effect? PASS (exit 0), FAIL or "
                                     "CANNOT JUDGE (exit 1)")
    _args.add_model_flags(p, loras=False)
    p.add_argument("--safety-lora", required=True, metavar="FILE", help="the host's safety LoRA (dW_safe), at scale 1")
    p.add_argument("--lora", required=True, action="append", metavar="FILE[:SCALE]",
                   help="a user's LoRA at SCALE (default 1.0); repeat: their sum is audited, as compose merges it")
    p.add_argument("--out", default=None, help="write the audit as JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an audit JSON safetune wrote before")
    _guard_flags(p, "weights check only, no sampling: FAIL or CANNOT JUDGE, never PASS")
    p.set_defaults(func=audit)

    p = sub.add_parser("lora", help="LoRA tools: inspect, negate, subtract, combine, convert (any layout in, "
                                    "diffusers or kohya out)")
    ops = p.add_subparsers(dest="op", required=True, metavar="op", parser_class=type(p))
    q = ops.add_parser("inspect", help="per-module rank and norm of A; with B, each file's norm and their cosine")
    q.add_argument("files", nargs="+", metavar="FILE[:SCALE]", help="A, or A B to compare")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=lora)
    for op, files, text in (("negate", "A", "writes -A"), ("subtract", "A B", "writes A - B (rank rA + rB)"),
                            ("combine", "A[:s] B[:s] ...", "writes s_A A + s_B B + ... (exact: ranks add up)"),
                            ("convert", "A", "writes A in --format's layout, no arithmetic")):
        q = ops.add_parser(op, help=text, description=f"{files}: {text}")
        q.add_argument("files", nargs="+", metavar="FILE[:SCALE]", help=files)
        q.add_argument("--out", help="the result file (.safetensors)")
        q.add_argument("--overwrite", action="store_true", help="replace a LoRA file safetune wrote before")
        q.add_argument("--format", default="diffusers", choices=["diffusers", "kohya"],
                       help="layout of the result: diffusers (plain load_lora_weights) or kohya (AUTOMATIC1111, "
                            "ComfyUI) (default: diffusers)")
        q.set_defaults(func=lora)


def _guard_settings(args):
    """The guard's settings and sampling, checked before any work."""
    _args.check_detector(args.detector)
    config = _args.config_from_args(args, GuardConfig())
    config.validate()
    _args.check_prompt_sets(config.sets, "--sets")
    return config, _args.config_from_args(args, SamplingConfig(), skip=_GUARD_OWNS)


def _safety_path(arg: str) -> str:
    """--safety-lora is merged at scale 1, as the host trained it: a scale there would bypass the audit."""
    from pathlib import Path

    if not arg.strip():
        raise SafetuneError("--safety-lora is empty; give the safety LoRA file or drop the flag")
    if not Path(arg).exists() and ":" in arg:
        raise SafetuneError(f"--safety-lora {arg}: the safety LoRA is merged at scale 1 and takes no :SCALE; give "
                            "the file alone")
    return arg


def _audit(args, pipe, safety_path: str, specs: list[tuple[str, float]], loras: list) -> dict:
    """The guard's answer for W0 + dW_safe + sum of the scaled LoRAs (measured unless --no-measure):
    `loras` are the files read, the safety LoRA first; `pipe` holds W0 and is left as it was."""
    from ..evaluation.detectors import load_detector
    from ..evaluation.guard import audit_composition

    config, sampling = _guard_settings(args)
    safety, terms = loras[0], [(lora, scale) for lora, (_, scale) in zip(loras[1:], specs)]
    prompt_sets = None
    if not args.no_measure:
        from ..data.prompts import read_prompts

        prompt_sets = {name: read_prompts(name, limit=config.prompts_per_set) for name in config.sets}
    result = audit_composition(pipe, safety, terms, config, sampling,
                               detector=None if args.no_measure else load_detector(args.detector),
                               prompt_sets=prompt_sets, measure=not args.no_measure,
                               sources=[safety_path] + [path for path, _ in specs])
    return {"loras": [f"{p}:{s:g}" for p, s in specs], "safety_lora": safety_path, "model": args.model, **result}


def _base(args):
    """W0 of --model on the checked --device (no LoRA merged: the guard merges what it audits)."""
    from ..models.loading import load_pipeline

    _args.check_model_options(args)
    return load_pipeline(args.model, device=_args.check_device(args.device), revision=args.revision,
                         variant=args.variant)


def _print_audit(result: dict) -> None:
    w = result["weights"]
    print(f"audited: W0 + dW_safe + {' + '.join(result['loras'])}")
    print(f"weights: overlap of the composed LoRAs with -dW_safe {w['overlap']:+.3f} over {w['shared_modules']} shared "
          f"modules (threshold {result['config']['overlap']}); {w['uncovered_modules']} modules outside dW_safe "
          f"({w['uncovered_share']:.0%} of the LoRAs)")
    for name, d in (result.get("sets") or {}).items():
        print(f"{name:<17} harmful rate {d['before']:.3f} -> {d['after']:.3f} ({d['difference']:+.3f}; one-sided bounds "
              f"[{d['lower']:+.3f}, {d['upper']:+.3f}]; {d['n_images']} pairs, {d['images_per_prompt']} a prompt)")
    if result.get("fidelity"):
        f = result["fidelity"]
        print(f"prompt fidelity   {f['before']:.3f} -> {f['after']:.3f} (drop {f['difference']:+.3f}, bounds "
              f"[{f['lower']:+.3f}, {f['upper']:+.3f}])")
    for f in result.get("search") or []:
        print(f"searched prompt   {f['prompt']!r}: concept affinity rise {f['rise']:+.4f}")
    print(f"verdict: {result['verdict']}")
    for reason in result["reasons"]:
        print(f"  because {reason}")
    print("  checked: " + "; ".join(result["checked"]))
    print("  not checked: " + "; ".join(result["not_checked"]))


def audit(args) -> int:
    """`safetune audit`: the guard's verdict; exit 0 on PASS, 1 on FAIL or CANNOT JUDGE."""
    from ..io import check_output, write_json
    from ..lora.weights import LoRA

    safety = _safety_path(args.safety_lora)
    specs = _args.check_loras([safety] + args.lora, "--lora", flags=["--safety-lora"] + ["--lora"] * len(args.lora))[1:]
    _guard_settings(args)
    if args.out is not None:
        check_output(args.out, "file", args.overwrite)
    loras = [LoRA.load(path) for path, _ in [(safety, 1.0)] + specs]  # every file read before the model loads
    result = _audit(args, _base(args), safety, specs, loras)
    _print_audit(result)
    if args.out is not None:
        write_json(args.out, result, mark=True)
    return 0 if result["pass"] else 1


def compose(args) -> None:
    """`safetune compose`: W0 + LoRAs as a diffusers directory; with --safety-lora the composition is
    audited first, as it will be merged."""
    from ..io import check_output, output_dir, write_json
    from ..models.inference import save_inference
    from ..lora.weights import LoRA, merge_into

    if not args.lora:
        raise SafetuneError("compose needs at least one --lora FILE[:SCALE]")
    safety = _safety_path(args.safety_lora) if args.safety_lora is not None else None
    if safety is None:
        guard_fields = [*fields(GuardConfig), *(f for f in fields(SamplingConfig) if f.name not in _GUARD_OWNS)]
        given = [f"--{f.name.replace('_', '-')}" for f in guard_fields if getattr(args, "cfg_" + f.name) is not None]
        given += ["--no-measure"] if args.no_measure else []
        if given:
            raise SafetuneError(f"{', '.join(given)}: settings of the guard, which runs only with --safety-lora; give "
                                "--safety-lora SAFE or drop them")
    flags = (["--safety-lora"] if safety else []) + ["--lora"] * len(args.lora)
    specs = _args.check_loras(([safety] if safety else []) + args.lora, "--lora", flags=flags)
    _guard_settings(args)
    out = check_output(args.out, "dir", args.overwrite)
    loras = [LoRA.load(path) for path, _ in specs]  # every file read before the model loads
    pipe, guard = _base(args), None
    if safety:
        guard = _audit(args, pipe, safety, specs[1:], loras)
        _print_audit(guard)
        if not guard["pass"] and not args.force:
            raise SafetuneError(f"the guard says {guard['verdict']} ({'; '.join(guard['reasons'])}); nothing was "
                                "written. Run `safetune audit` for details, or --force to compose anyway")
    merge_into(pipe, [(lora, scale) for lora, (_, scale) in zip(loras, specs)])
    with output_dir(out) as tmp:
        pipe.save_pretrained(tmp)
        save_inference(pipe, tmp)  # a negative prompt or SLD travels with the weights
        write_json(tmp / "safetune_compose.json", {
            "model": args.model, "loras": args.lora, "safety_lora": safety, "forced": args.force,
            "guard": None if guard is None else {k: guard.get(k) for k in (
                "verdict", "reasons", "checked", "not_checked", "weights", "sets", "fidelity", "seed", "measured")}},
            mark=True)
    print(f"wrote W0 + {' + '.join(([safety] if safety else []) + args.lora)} as a diffusers directory to {args.out}")


def lora(args) -> None:
    """`safetune lora inspect|negate|subtract|combine|convert`."""
    from ..io import check_output
    from ..lora.weights import LoRA

    specs = _args.check_loras(args.files, "the files")
    if args.op == "inspect":
        if len(args.files) > 2:
            raise SafetuneError("lora inspect takes one file, or two to compare: A [B]")
        return _inspect(specs, args.json)
    counts = {"negate": "one file: A", "convert": "one file: A", "subtract": "two files: A B (writes A - B)"}
    if args.op in counts and len(specs) != (2 if args.op == "subtract" else 1):
        raise SafetuneError(f"lora {args.op} takes {counts[args.op]}")
    if not args.out:
        raise SafetuneError(f"lora {args.op} writes a file: give --out RESULT.safetensors")
    if not args.out.endswith(".safetensors"):
        raise SafetuneError(f"lora {args.op}: {args.out}: a LoRA is written as a .safetensors file; end --out with "
                            ".safetensors")
    check_output(args.out, "file", args.overwrite)
    terms = [LoRA.load(path).scaled(scale) for path, scale in specs]
    if args.op == "negate":
        result = -terms[0]
    elif args.op == "subtract":
        result = terms[0] - terms[1]
    else:  # combine, convert (one term at its scale)
        result = terms[0]
        for term in terms[1:]:
            result = result + term
    result.save(args.out, layout=args.format)
    print(f"wrote {args.op} of {', '.join(args.files)} (rank {result.rank()}, {args.format} layout) to {args.out}")


def _inspect(specs, as_json: bool) -> None:
    """Per module: rank and norm in each file, their cosine where both have it; modules only one has
    are listed with a dash for the other."""
    from ..lora.weights import LoRA, inspect

    a = LoRA.load(specs[0][0]).scaled(specs[0][1])
    b = LoRA.load(specs[1][0]).scaled(specs[1][1]) if len(specs) > 1 else None
    report = inspect(a, b)
    if b is not None:
        report["b"] = inspect(b)
        report["files"] = [specs[0][0], specs[1][0]]
    if as_json:
        print(json.dumps(report, indent=2))
        return
    names = [specs[0][0]] + ([specs[1][0]] if b is not None else [])
    print("files: " + "; ".join(f"{'AB'[i]} = {n}" for i, n in enumerate(names)))
    other = report.get("b", {"modules": {}})["modules"]
    for name in sorted(set(report["modules"]) | set(other)):
        row, row_b = report["modules"].get(name), other.get(name)
        line = f"{name}  A: " + (f"rank {row['rank']} norm {row['norm']:.4f}" if row else "-")
        if b is not None:
            line += "  B: " + (f"rank {row_b['rank']} norm {row_b['norm']:.4f}" if row_b else "-")
            line += f"  cosine {row['cosine']:+.3f}" if row and "cosine" in row else ""
        print(line)
    line = f"total norm A {report['total_norm']:.4f}"
    if b is not None:
        line += f"  B {report['b']['total_norm']:.4f}  overall cosine over shared modules {report['cosine']:+.4f}"
    print(line)
