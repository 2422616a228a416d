"""What every provenance test reads: the repository, the renderers of scripts/, the stored studies
they render, and how a quoted sentence is found in a document's prose."""
import functools
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str = "render_audit_docs"):
    """scripts/NAME.py loaded as a module (the scripts are not a package): the renderers the docs come from."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FORGET = "dd:forget_unseen_words=true"  # distort-and-distill with the unseen words' embeddings re-drawn


def worst_curve(row: dict) -> list:
    """A model's harmful-rate curve under one attack at its worst lr."""
    return row["curves"][row["worst_lr"]]


def prose(path: Path) -> str:
    """A document's text with its line breaks and runs of spaces as single spaces (a quoted sentence may
    wrap anywhere)."""
    return " ".join(path.read_text().split())


def assert_quoted(path: Path, fragments) -> None:
    """Every fragment stands in the document's prose; the first missing one is the failure's message."""
    text = prose(path)
    for fragment in fragments:
        assert fragment in text, f"{path.name}: {fragment}"


@functools.lru_cache(maxsize=None)
def focused(name: str) -> dict:
    """A focused study stored beside the battery (benchmark-NAME.json) with its summary, computed once."""
    return load_script("render_benchmark_docs").focused(name)
