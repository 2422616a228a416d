"""Imports follow the flow of data, never back up it: a module imports only from its own layer or
the layers below (function-level imports included). The layers, bottom to top:"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "safetune"
LAYERS = [
    {"errors", "options", "config", "io", "checkpoint", "messages"},  # settings, errors, atomic output, stage messages
    {"data"},                                    # ShapesWorld, prompt sets, image folders
    {"models"},                                  # pipelines, conditioning, the miniature SD
    {"lora"},                                    # LoRAs as data, file layouts, the peft side
    {"train"},                                   # the one training loop
    {"stages"},                                  # safety alignment, fine-tuning, pretraining
    {"evaluation"},                              # sampling, detectors, metrics, the guard
    {"attacks"},                                 # adversarial prompt search
    {"report"},                                  # tables, curves, report.md/.html
    {"studies"},                                 # the experiments
    {"commands", "cli", "api", "__init__", "__main__"},  # the CLI and the Python API
]


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"safetune.{top} has no layer: add it to LAYERS in {__file__}")


def imported_tops(path: Path) -> set[str]:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("safetune."):
                    tops.add(node.module.split(".")[1])
                continue
            base = list(parts[:-1]) if parts[-1] != "__init__" else list(parts[:-1])
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # `from . import x` at the package root
                target = [alias.name for alias in node.names][:1]
            tops.add(target[0])
        elif isinstance(node, ast.Import):
            tops |= {a.name.split(".")[1] for a in node.names if a.name.startswith("safetune.")}
    return tops


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for top in imported_tops(path):
            if layer_of(top) > layer_of(own):
                upward.append(f"{path.relative_to(PACKAGE)} imports safetune.{top}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The test itself can fail: a data module importing the trainer is caught."""
    fake = PACKAGE / "data" / "_layer_probe.py"
    fake.write_text("def f():\n    from ..train import train\n")
    try:
        assert "train" in imported_tops(fake)
        assert layer_of("train") > layer_of("data")
    finally:
        fake.unlink()


def test_no_module_is_over_350_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 350}
    assert not long, long


def test_every_public_definition_has_a_docstring():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                members = [node] + [m for m in getattr(node, "body", []) if isinstance(m, ast.FunctionDef)
                                    and not m.name.startswith("_")] if isinstance(node, ast.ClassDef) else [node]
                missing += [f"{path.relative_to(PACKAGE)}:{m.lineno} {m.name}" for m in members if not ast.get_docstring(m)]
    assert not missing, missing


def test_help_imports_neither_torch_nor_diffusers():
    """`safetune --help` (and each command's) answers without loading torch: a fresh process, so that no
    other test's imports count."""
    import subprocess
    import sys

    code = ("import sys\nfrom safetune.cli import main\n"
            "for argv in (['--help'], ['study', '--help'], ['align', '--help'], ['lora', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('LOADED', 'torch' in sys.modules, 'diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED False False"
