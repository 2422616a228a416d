"""A generated table of bad invocations for every command: each must end with exit 2, exactly one
line on stderr, no traceback, and no file changed anywhere (its --out included).

For every option of every command (read off the parser itself, so a new flag is fuzzed the day it
is added) the values a user gets wrong: empty, wrong type, negative, zero, huge, NaN, infinite, and
paths that are a directory, a text file, a foreign or truncated safetensors file, a missing file or an
unwritable place; then random pairs of them. The base invocation of each command is valid but would
run for minutes, so only a refusal returns fast: a bad value that slips through shows up as a slow
test or a wrong exit code."""
import contextlib
import hashlib
import io
import random
from pathlib import Path

import pytest
from safetensors.torch import save_file

from safetune.cli import build_parser, main

BAD_NUMBERS = ["", "abc", "-1", "0", "nan", "inf", "1e999", "99999999999", "1.5e12"]
PATH_OPTIONS = {"--model", "--lora", "--safety-lora", "--data", "--prompts", "--out", "--on-top", "--detector",
                "--reuse", "--clean-data", "--harmful-data", "--vae-from", "--logging-dir", "--clip", "--q16",
                "--aesthetic"}
# values that are legitimately fine for an option, so not "bad" for it
ALLOWED = {("--guidance-scale", "0"), ("--guidance-scale", "-1"), ("--seed", "0"), 
           ("--overlap", "0"), ("--overlap", "-1"), ("--max-grad-norm", "0"), ("--lora-alpha", "0"),
           ("--ema-decay", "0"), ("--kl-weight", "0"), ("--lora-alpha", ""), ("--ema-decay", ""), ("--vae-from", ""),
           ("--save-at", "0"), ("--caption-dropout", "0"), ("--methods", ""), ("--reference", ""), ("--limit", "99999999999"), ("--limit", "1.5e12"),
           # the guard's searches may be switched off
           ("--probe-prompts", "0"), ("--seed", ""), ("--search-prompts", "0"), ("--search-candidates", "0"), ("--search-rounds", "0")}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """Files of every bad kind, and a valid LoRA of the shipped model for the commands that need one."""
    import torch

    from safetune.lora.weights import LoRA
    from safetune.models.loading import load_pipeline

    root = tmp_path_factory.mktemp("fuzz")
    (root / "empty_dir").mkdir()
    (root / "notes.txt").write_text("not a model, not a LoRA\n")
    (root / "empty.txt").write_text("")
    save_file({"model.weight": torch.zeros(2, 2)}, str(root / "foreign.safetensors"))
    (root / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a hea")
    pipe = load_pipeline("shapes")
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    w = dict(pipe.unet.named_modules())[name[len("unet."):]].weight
    LoRA({name: (torch.zeros(2, w.shape[1]), torch.zeros(w.shape[0], 2))}).save(root / "good.safetensors")
    LoRA({name: (torch.zeros(2, w.shape[1]), torch.ones(w.shape[0], 2) * 1e-3)}).save(root / "good2.safetensors")
    return root


def bad_paths(root: Path) -> list[str]:
    return [str(root / "empty_dir"), str(root / "notes.txt"), str(root / "empty.txt"), str(root / "foreign.safetensors"),
            str(root / "truncated.safetensors"), str(root / "missing" / "x"), "/proc/safetune-fuzz", ""]


def valid_base(command: str, root: Path) -> list[str]:
    """A valid (slow) invocation, which each case breaks in one or two places."""
    out, lora = str(root / "new_out"), str(root / "new.safetensors")
    good, good2 = str(root / "good.safetensors"), str(root / "good2.safetensors")
    return {
        "generate": ["--prompts", "a red star", "--out", out],
        "evaluate": ["--prompts", "harmful", "--out", out],
        "demo": ["--out", out],
        "pretrain-shapes": ["--out", out],
        "train-detector": ["--out", out],
        "world": ["plus", "--out", out],
        "align": ["--out", lora],
        "finetune": ["--data", "plus", "--out", lora],
        "compose": ["--lora", good, "--out", out],
        "audit": ["--safety-lora", good, "--lora", good2],
        "lora": ["combine", good, "--out", lora],
        "study": ["backfire", "--out", out],
    }[command]


def options_of(command: str) -> list:
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    if command == "lora":  # its own subcommands: fuzz combine's options (negate, subtract, convert share them)
        parser = parser._subparsers._group_actions[0].choices["combine"]
    return [a for a in parser._actions if a.option_strings and a.option_strings[0] not in ("-h",)]


def cases_for(command: str, root: Path) -> list[list[str]]:
    base = valid_base(command, root)
    cases = []
    for action in options_of(command):
        opt = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if opt in ("--overwrite", "--force", "--show-config", "--quick", "--json", "--no-measure",
                   "--train-text-encoder", "--reduced", "--help") or opt.startswith("--no-"):
            continue
        if action.nargs == 0:  # a flag given a value
            cases.append(base + [f"{opt}=yes"])
            continue
        values = bad_paths(root) if opt in PATH_OPTIONS else (["magic", ""] if action.choices else BAD_NUMBERS)
        if opt == "--prompts":
            values = [v for v in values if not v.endswith("notes.txt")]  # a text file of prompts is fine
        if opt == "--out" and command not in ("align", "finetune", "lora", "audit"):
            values = [v for v in values if not v.endswith("empty_dir")]  # an empty directory is a fine output
        if opt == "--set":
            values = ["nosuch=1", "lr=abc", "=", "lr", "steps=-5", "seeds=a,b"]
        if opt in ("--concept", "--concepts"):
            values = [""]
        if opt in ("--category",):
            values = ["no-such-category"]
        if opt in ("--device",):
            values = ["gpu", "cuda:x", "cuda", ""]
        if opt in ("--methods", "--domains", "--attack", "--steps", "--seeds", "--reference", "--ways"):
            values = ["magic", "-5", ""]
        for value in values:
            if (opt, value) in ALLOWED:
                continue
            if opt in ("--steps",) and command in ("generate", "evaluate", "demo") and value == "":
                continue
            argv = [a for a in base]
            if opt in argv and opt not in ("--lora", "--on-top", "--set", "--concept", "--category"):
                argv[argv.index(opt) + 1] = value
            else:
                argv += [opt, value]
            cases.append(argv)
    if command != "demo":  # the demo needs no argument
        cases.append(base[:1] if base and not base[0].startswith("-") else [])  # required arguments missing
    return [[command] + c for c in cases]


def all_cases(root: Path) -> list[list[str]]:
    commands = ["generate", "evaluate", "demo", "pretrain-shapes", "train-detector", "world", "align", "finetune",
                "compose", "audit", "lora", "study"]
    single = [c for command in commands for c in cases_for(command, root)]
    rng = random.Random(0)
    pairs = []
    by_command = {}
    for c in single:
        by_command.setdefault(c[0], []).append(c)
    for command, cases in by_command.items():
        for _ in range(6):  # two bad values at once: the first refusal wins, still one line
            a, b = rng.sample(cases, 2)
            pairs.append(a + [x for x in b[1:] if x not in a[1:]])
    return single + pairs


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def run_case(argv: list[str]) -> tuple[int, str]:
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = main(argv)  # an exception escaping main is a traceback: the test fails on it
    return code, stderr.getvalue()


def test_every_bad_invocation_gets_one_line_and_exit_2(sandbox):
    import time

    cases = all_cases(sandbox)
    assert len(cases) >= 300
    before = snapshot(sandbox)
    failures = []
    start = time.perf_counter()
    for argv in cases:
        code, err = run_case(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        if code != 2 or len(lines) != 1 or "Traceback" in err or not lines[0].startswith("safetune: error:"):
            failures.append((argv, code, err[-500:]))
        after = snapshot(sandbox)
        if after != before:
            changed = sorted(set(after.items()) ^ set(before.items()))[:3]
            failures.append((argv, "changed files", changed))
            before = after
    elapsed = time.perf_counter() - start
    assert not failures, "\n".join(map(str, failures[:15])) + f"\n({len(failures)} of {len(cases)} cases)"
    print(f"{len(cases)} bad invocations in {elapsed:.1f} s")
