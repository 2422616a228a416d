"""What the README says about the CLI holds: every flag it shows on a `safetune ...` command line
exists on that command (a flag renamed or dropped fails here)."""
import re
import shlex
from pathlib import Path

import pytest

from safetune.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def readme_command_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    spans = re.findall(r"`(safetune [^`]+)`", text)
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    for block in blocks:
        spans += [m.group(0) for line in block.splitlines() for m in re.finditer(r"safetune [^&|;\n]+", line)]
    return [s.replace("\\|", "|") for s in spans]


def parser_for(words: list[str]):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    command = next((w for w in words if w in sub), None)
    if command is None:
        return None, None
    p = sub[command]
    if p._subparsers is not None:  # lora's operations
        ops = p._subparsers._group_actions[0].choices
        op = next((w for w in words[words.index(command) + 1:] if w.split("|")[0] in ops), None)
        if op is not None:
            p = ops[op.split("|")[0]]
    return command, p


def test_every_flag_the_readme_shows_exists_on_its_command():
    lines = readme_command_lines()
    assert len(lines) >= 20
    missing = []
    for line in lines:
        try:
            words = shlex.split(line.replace("[", " ").replace("]", " "))
        except ValueError:
            words = line.replace("[", " ").replace("]", " ").split()
        command, parser = parser_for(words[1:])
        if parser is None:
            continue
        known = {o for a in parser._actions for o in a.option_strings} | {"--threads", "--verbose", "-v"}
        for word in words:
            flag = word.split("=")[0]
            if flag.startswith("--") and flag not in known:
                missing.append(f"{flag} on `safetune {command}` ({line[:80]})")
    assert not missing, "\n".join(missing)


# ---------------------------------------------------------------- defaults: what help and README state is the code's

DEFAULT_IN_HELP = re.compile(r"\(default:? ([^()]*(?:\([^()]*\))?[^()]*)\)")


def every_action(parser=None, path="safetune"):
    parser = parser or build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield from every_action(sub, f"{path} {name}")
        elif action.option_strings:
            yield path, action


def shown(value) -> str:
    """A value as the generated flags' help writes it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def show_config(argv: list[str]) -> dict[str, object]:
    import ast
    import contextlib
    import io

    from safetune.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv + ["--show-config"]) == 0
    values = {}
    for line in out.getvalue().splitlines():
        name, _, rest = line.partition(" = ")
        values[name.strip()] = ast.literal_eval(rest.split("    #")[0].strip())
    return values


def test_an_argparse_default_stated_in_help_is_the_default_argparse_uses():
    checked = 0
    for path, action in every_action():
        if action.default in (None, [], False) or action.dest.startswith("cfg_"):
            continue
        for stated in DEFAULT_IN_HELP.findall((action.help or "") % {"default": action.default}):
            assert stated == shown(action.default), f"{path} {action.option_strings[0]}: help says {stated!r}"
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("command,prefix", [(["finetune"], ""), (["align"], "train."), (["pretrain-shapes"], ""),
                                            (["train-detector"], "")])
def test_every_training_flag_states_the_default_the_command_runs_with(command, prefix):
    """The help of each generated flag against --show-config: the values the command would run with."""
    values = show_config(command)
    parser = parser_for(command)[1]
    checked = 0
    for action in parser._actions:
        if not action.dest.startswith("cfg_"):
            continue
        field = prefix + action.dest[len("cfg_"):]
        stated = DEFAULT_IN_HELP.findall(action.help)
        assert field in values, f"{command[0]} {action.option_strings[0]}: not in --show-config"
        if stated and not stated[-1].startswith(("the ", "new ")):  # a default explained in words
            assert stated[-1] == shown(values[field]), f"{command[0]} {action.option_strings[0]}: help {stated[-1]!r}, " \
                                                       f"runs with {values[field]!r}"
            checked += 1
    assert checked >= 5


def test_generate_makes_the_images_per_prompt_its_help_states(tmp_path):
    from safetune.cli import main

    help_text = next(a.help for a in parser_for(["generate"])[1]._actions if a.dest == "cfg_images_per_prompt")
    stated = int(DEFAULT_IN_HELP.findall(help_text)[-1])
    assert main(["generate", "--prompts", "a red star", "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    assert len(list((tmp_path / "g").glob("*_seed*.png"))) == stated


def test_handwritten_defaults_are_the_codes():
    from safetune.config import SET_IMAGES, SHAPES_CONCEPTS
    from safetune.data.prompts import SET_PROMPTS, prompt_set
    from safetune.lora.weights import parse_lora_arg

    helps = {(path, a.option_strings[-1]): a.help for path, a in every_action()}
    assert parse_lora_arg("x.safetensors")[1] == 1.0 and "(default 1.0)" in helps[("safetune generate", "--lora")]
    assert f"(default {SET_IMAGES})" in helps[("safetune finetune", "--n")]
    assert f"(default {SET_PROMPTS})" in helps[("safetune world", "--n")] and len(prompt_set("harmful")) == SET_PROMPTS
    assert all(repr(c) in helps[("safetune align", "--concept")] for c in SHAPES_CONCEPTS)


def test_defaults_the_readme_states_are_the_codes():
    from safetune.config import GuardConfig
    from safetune.studies.backfire import BackfireConfig

    text = " ".join((ROOT / "README.md").read_text().split())
    guard, backfire = GuardConfig(), BackfireConfig()
    assert f"`--max-increase` (default {guard.max_increase:.2f}; at the default budget of " \
           f"{guard.max_images_per_prompt} images" in text
    looks = [guard.images_per_prompt * 2 ** k for k in range(3)]
    assert looks[-1] == guard.max_images_per_prompt and f"({', '.join(map(str, looks))} a prompt)" in text
    claim = re.search(r"`safetune study backfire` \(defaults: ESD-x safety LoRA, full fine-tuning at lr (\S+) and "
                      r"LoRAs at (\S+), batch (\d+), (\d+) fine-tuning seeds, (\d+) harmful prompts x (\d+) images", text)
    assert claim, "the README's sentence on the backfire study's defaults changed: update this test"
    assert backfire.methods == ["esd-x"] and float(claim[1]) == backfire.full.lr and float(claim[2]) == backfire.lora.lr
    assert int(claim[3]) == backfire.full.batch_size == backfire.lora.batch_size
    assert int(claim[4]) == len(backfire.seeds) and int(claim[5]) == backfire.prompts_per_set
    assert int(claim[6]) == backfire.sampling.images_per_prompt
