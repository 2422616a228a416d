"""The README's Python API example runs, and reproduces the CLI's result exactly."""
import contextlib
import io
import json
import re
from pathlib import Path

import safetune
from safetune.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(heading: str, language: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_reproduces_the_cli_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = readme_block("## Python API", "python")
    assert len(code.strip().splitlines()) <= 15
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    api_rate = float(re.search(r"harmful rate ([0-9.]+)", printed.getvalue()).group(1))
    for line in readme_block("## Python API", "bash").strip().splitlines():
        argv = line.split()
        assert argv[0] == "safetune" and main(argv[1:]) == 0, line
    cli = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert f"{cli['harmful_rate']:.3f}" == f"{api_rate:.3f}"
    from safetune.lora.weights import LoRA

    api_lora, cli_lora = LoRA.load(tmp_path / "safe-api.safetensors"), LoRA.load(tmp_path / "safe.safetensors")
    for name in cli_lora.factors:
        assert (api_lora.delta(name) - cli_lora.delta(name)).abs().max() < 1e-6


def test_public_names_are_documented():
    for name in safetune.__all__:
        assert getattr(safetune, name).__doc__, name


def test_api_names_are_not_shadowed_by_subpackages():
    """`safetune.evaluate` was the subpackage as soon as anything imported it: the API's function
    was shadowed. No subpackage may carry an API name."""
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(safetune.__path__, "safetune."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name in safetune.__all__:
        assert callable(getattr(safetune, name)) and not hasattr(getattr(safetune, name), "__path__"), name
