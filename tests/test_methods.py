"""The method registry: the API's align, the CLI's --method choices and help, and the backfire
study's safety methods all come from it, so adding a method is one register() call."""
from dataclasses import replace

import pytest

from safetune.cli import build_parser, main
from safetune.errors import SafetuneError
from safetune.stages.methods import METHODS, Method, get_method, register, safety_loras


def test_the_cli_and_the_studies_read_the_registry(capsys):
    parser = build_parser()
    align = next(a for a in parser._subparsers._group_actions[0].choices["align"]._actions if a.dest == "method")
    assert list(align.choices) == list(METHODS)
    assert main(["align", "--help"]) == 0
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even inside words
    for method in METHODS.values():
        assert "".join(f"{method.name}: {method.summary}".split()) in help_text
    assert "3,200fullstepsatlr0.001" in help_text  # dd's recipe, read from it (it once said 1,600)
    assert safety_loras() == ["esd-x", "esd-u", "esd", "sdd"]
    with pytest.raises(SafetuneError, match="choose from esd-x, esd-u, esd, sdd, lt, ng, dd"):
        get_method("magic")
    with pytest.raises(ValueError, match="registered twice"):
        register(METHODS["esd-x"])


def test_a_new_method_is_one_register_call(tmp_path, capsys):
    """A toy method (ESD-x's runner under another name, 2 steps) is at once an API method, a CLI
    choice with its help, and a safety method of the backfire study."""
    import safetune

    esd = METHODS["esd-x"]
    toy = Method("toy", "a test method", "nobody 2026", esd.make_settings, replace(esd.recipe, steps=2), "lora",
                 esd.run, fixed=esd.fixed, prepare=esd.prepare)
    register(toy)
    try:
        lora = safetune.align("shapes", "toy", concept_samples=4, batch_size=2)
        assert len(lora.factors) > 0 and lora.rank() == 4
        out = tmp_path / "toy.safetensors"
        assert main(["align", "--method", "toy", "--set", "concept_samples=4", "--batch-size", "2",
                     "--out", str(out)]) == 0
        assert out.is_file() and "toy" in safety_loras()
    finally:
        del METHODS["toy"]


def test_the_readme_worked_example_registers_a_method():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "register(Method(" in b)
    try:
        exec(block, {})
        assert METHODS["esd-strong"].make_settings().eta == 2.0 and "esd-strong" in safety_loras()
    finally:
        METHODS.pop("esd-strong", None)
