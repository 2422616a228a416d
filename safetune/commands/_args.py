"""What the commands share: flags generated from the config dataclasses (their defaults and help
are the dataclasses'), the model and output flags, and the checks that run before minutes of work.
Nothing here imports torch: `safetune --help` stays fast."""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path

from ..options import apply_overrides, describe, set_field
from ..errors import SafetuneError

def flag(name: str) -> str:
    """The command-line flag of a config field: lora_rank -> --lora-rank."""
    return "--" + name.replace("_", "-")


def add_config_flags(parser, config, skip: tuple[str, ...] = (), title: str | None = None) -> None:
    """One flag per field of the dataclass instance `config` (nested ones through --set), default
    and help taken from it; lists are comma-separated, flags that are booleans take no value."""
    group = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in skip or dataclasses.is_dataclass(value):
            continue
        help_text = f.metadata.get("help", "")
        if hints[f.name] is bool:
            group.add_argument(flag(f.name), dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, default=None,
                               help=f"{help_text} (default: {'yes' if value else 'no'})")
            continue
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        if "default" not in help_text:  # a help that explains its default (None: "the rank") keeps it
            help_text = f"{help_text} (default: {shown})"
        choices = [c for c in f.metadata.get("choices") or () if c is not None] or None
        group.add_argument(flag(f.name), dest=f"cfg_{f.name}", default=None, choices=choices,
                           metavar=None if choices else f.name.upper(), help=help_text)


def config_from_args(args, config, skip: tuple[str, ...] = ()):
    """A copy of `config` with the generated flags the user gave applied (cast and checked against
    each field's declaration, errors naming the flag); `skip`: the fields whose flags belong to
    another config of the same command."""
    config = dataclasses.replace(config)
    for f in dataclasses.fields(config):
        text = getattr(args, "cfg_" + f.name, None)
        if f.name not in skip and text is not None:
            set_field(config, f.name, str(text), given=f"{flag(f.name)} {text}")
    return config


def add_set(parser, what: str) -> None:
    """--set NAME=VALUE (any field, nested with dots) and --show-config."""
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help=f"set any field of the {what} settings, e.g. --set lr=1e-4 (nested: a.b=VALUE; "
                             "lists: 0,1,2); --show-config lists them")
    parser.add_argument("--show-config", action="store_true", help="print every setting with its help and exit")


def config_with_set(args, default, assignments: list[str]):
    """A copy of `default` with the generated flags and then `assignments` (NAME=VALUE) applied, checked."""
    return apply_overrides(config_from_args(args, default), assignments)


def settings_or_show(args, default):
    """A command's config from its flags and --set (checked); with --show-config it is printed and
    None returned; otherwise --out is required."""
    config = config_with_set(args, default, args.set)
    if args.show_config:
        show_config(config)
        return None
    if not args.out:
        raise SafetuneError(f"give --out DIR (see safetune {args.command} --help)")
    return config


def show_config(config) -> None:
    """Print every setting of `config` with its value and help."""
    print("\n".join(describe(config)))


def add_model_flags(parser, loras: bool = True) -> None:
    """--model, --lora (repeatable), --revision, --variant and --device."""
    parser.add_argument("--model", default="shapes",
                        help="diffusers directory, hub id, 'shapes' (the shipped miniature SD; default) or "
                             "'shapes-nostar' (the same, never trained on the harmful concept)")
    if loras:
        parser.add_argument("--lora", action="append", default=[], metavar="FILE[:SCALE]",
                            help="LoRA merged into the weights at SCALE (default 1.0); repeat to compose")
    parser.add_argument("--revision", default=None, help="hub revision of --model")
    parser.add_argument("--variant", default=None, help="weights variant of --model (e.g. fp16)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")


def add_out(parser, kind: str, required: bool = True, default: str | None = None, help: str | None = None) -> None:
    """--out (a directory, a LoRA file or a file) and --overwrite."""
    parser.add_argument("--out", required=required, default=default, help=help or {
        "dir": "output directory (new or empty; see --overwrite)",
        "lora": "the LoRA file to write (.safetensors)",
        "file": "output file"}[kind])
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what safetune wrote at --out before; files it did not write are never touched")


def check_device(device: str | None) -> str:
    """The device to run on, refused now if this machine does not have it."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise SafetuneError(f"--device {device}: not a device; use cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SafetuneError(f"--device {device}: this machine has no CUDA device (or torch is a CPU build); "
                            "use --device cpu, or install a CUDA build of torch (README)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise SafetuneError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise SafetuneError(f"--device {device}: MPS is not available here; use --device cpu")
    return device


def check_detector(name: str) -> None:
    """'shapes', 'nudenet' or a ShapesWorld detector directory: refused now rather than after sampling."""
    if name in ("shapes", "shapesworld", "nudenet"):
        return
    if not (Path(name) / "config.json").is_file():
        raise SafetuneError(f"--detector {name!r}: choose 'shapes', 'nudenet' or a directory written by "
                            "`safetune train-detector`")


def check_loras(specs: list[str], what: str = "--lora", flags: list[str] | None = None) -> list[tuple[str, float]]:
    """Parse FILE[:SCALE] arguments and refuse a file given twice (it would be added twice); `flags`
    names the flag each spec came from, for the message."""
    from ..lora.weights import parse_lora_arg

    if any(not s.strip() for s in specs):
        raise SafetuneError(f"{what}: an empty LoRA argument; give FILE or FILE:SCALE")
    parsed = [parse_lora_arg(s) for s in specs]
    seen = {}
    for (path, _), flag in zip(parsed, flags or [what] * len(parsed)):
        key = os.path.realpath(path)
        if key in seen:
            raise SafetuneError(f"{path}: given twice ({seen[key]} and {flag}); it would be added twice. Give it once, "
                                "with a scale if you mean 2x (FILE:2)")
        seen[key] = flag
    return parsed


def check_prompt_sets(names: list[str], what: str) -> None:
    """Each a built-in prompt set or a prompt file (not a literal prompt), "did you mean" for a typo."""
    import difflib

    from ..data.shapesworld import PROMPT_SETS

    for name in names:
        if name not in PROMPT_SETS and not Path(name).is_file():
            close = difflib.get_close_matches(name, PROMPT_SETS, n=1, cutoff=0.6)
            raise SafetuneError(f"{what} {name!r}: neither a prompt set nor a file; "
                                + (f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(PROMPT_SETS)}"))


def check_model_options(args) -> None:
    """--revision and --variant: for hub models, and a variant the local files have."""
    from ..models.loading import SHIPPED_MODELS

    local = args.model in SHIPPED_MODELS or Path(args.model).exists()
    for name in ("revision", "variant"):
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            raise SafetuneError(f"--{name} is empty; drop it or give a value")
    if args.revision is not None and local:
        raise SafetuneError(f"--revision {args.revision}: a revision selects a hub model's version; {args.model} is "
                            "local. Drop --revision")
    if args.variant is not None and local:
        from ..models.loading import resolve_model

        unet = Path(resolve_model(args.model)) / "unet"
        if not any(unet.glob(f"*.{args.variant}.*")):
            raise SafetuneError(f"--variant {args.variant}: {args.model} has no weights of that variant "
                                f"(no unet/*.{args.variant}.* file); drop --variant")


def pipeline(args, extra_loras: list[str] | None = None):
    """The model of `--model`, `--lora` (and `extra_loras` first) on the checked `--device`."""
    from ..lora.weights import load_with_loras

    check_model_options(args)
    device = check_device(args.device)
    return load_with_loras(args.model, (extra_loras or []) + list(getattr(args, "lora", [])), device=device,
                           revision=args.revision, variant=args.variant)


def is_main_process() -> bool:
    """Under `accelerate launch` every process samples its share; only the main one writes."""
    from accelerate import PartialState

    return PartialState().is_main_process


def warn_unknown_words(pipe, rows: list[dict], model: str) -> None:
    """The shipped models know ShapesWorld's words only: name the words a prompt uses beyond them."""
    import sys

    from ..models.loading import is_shipped_vocabulary

    if not is_shipped_vocabulary(pipe):
        return
    vocab = pipe.tokenizer.get_vocab()
    unknown = sorted({w for r in rows for w in r["prompt"].lower().replace(",", " ").split() if f"{w}</w>" not in vocab})
    if unknown:
        print(f"safetune: warning: {model} does not know the words {', '.join(unknown[:12])}"
              f"{', ...' if len(unknown) > 12 else ''}; it was trained on ShapesWorld's {len(shipped_words())} words "
              f"({', '.join(shipped_words()[:8])}, ...; `safetune world prompts` shows prompts it knows)",
              file=sys.stderr)


def shipped_words() -> list[str]:
    """The words the shipped models know (ShapesWorld's vocabulary)."""
    from ..data.shapesworld import vocabulary

    return vocabulary()


def summary_line(name: str, m: dict) -> str:
    """One line of a result: harmful rate and prompt fidelity with their intervals, n."""
    from ..report import fmt_ci

    line = f"{name}: harmful_rate {fmt_ci(m['harmful_rate'], m['harmful_rate_ci95'])}"
    if "prompt_fidelity" in m:
        line += f"  prompt_fidelity {fmt_ci(m['prompt_fidelity'], m['prompt_fidelity_ci95'])}"
    invalid = f", {m['n_invalid']} invalid" if m.get("n_invalid") else ""
    return line + f"  (n={m['n_images']}{invalid})"


def out_path(args) -> Path:
    """--out as a Path."""
    return Path(args.out)
