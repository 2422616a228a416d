"""What the README says about the CLI holds: every flag it shows on a `safetune ...` command line
exists on that command (a flag renamed or dropped fails here)."""
import re
import shlex
from pathlib import Path

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
