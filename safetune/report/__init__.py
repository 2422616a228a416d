"""Report parts: markdown tables, intervals, curves (image grids: evaluate.grid)."""
from __future__ import annotations

from pathlib import Path


def study_seed_runs(keyed, cfg: dict) -> dict[str, list]:
    """Per model the study compares, its entries for the study's training seeds, from (key, entry)
    pairs keyed 'name|trainT' (anything after is ignored; a seed's first entry counts); a model with
    none of those seeds (a pretrained model or closed-form edit: its one seed) gets its lowest seed's."""
    by_model: dict[str, dict[int, object]] = {}
    for key, entry in keyed:
        name, seed = key.split("|")[:2]
        if name in cfg["models"]:
            by_model.setdefault(name, {}).setdefault(int(seed.removeprefix("train")), entry)
    return {name: [by_seed[t] for t in cfg["train_seeds"] if t in by_seed] or [by_seed[min(by_seed)]]
            for name, by_seed in by_model.items()}


def wrecked_fraction(cfg: dict) -> float:
    """A relearn study's wrecked_below (studies.relearn_config); a study stored before the setting existed used 0.5."""
    return cfg.get("wrecked_below", 0.5)


def fmt_ci(value: float, ci: list[float], digits: int = 2) -> str:
    """'0.12 [0.08, 0.17]': a value with its 95% interval."""
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def metrics_table(rows: dict[str, dict], columns=("harmful_rate", "harmful_score", "prompt_fidelity"),
                  digits: int = 2) -> str:
    """A markdown table, one row per named result, each metric with its 95% interval."""
    head = "| | n images | " + " | ".join(columns) + " |\n|---|---:|" + "---:|" * len(columns) + "\n"
    lines = []
    for name, m in rows.items():
        cells = [fmt_ci(m[c], m[c + "_ci95"], digits) if c in m else "-" for c in columns]
        lines.append(f"| {name} | {m['n_images']} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Lay out, write atomically as PNG, and free the figure."""
    from ..io import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    pyplot().close(fig)


def markdown_to_html(markdown_text: str, base: Path, title: str = "safetune report") -> str:
    """The report as one self-contained HTML page: the same content, images inlined as data URIs,
    links to a report.md that has its report.html beside it pointing to the .html."""
    import base64
    import re

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "md_in_html"])

    def to_html(match):
        target = match.group(1)
        page = base / (target[: -len(".md")] + ".html")
        return f'href="{target[: -len(".md")]}.html"' if not target.startswith("http") and page.is_file() else \
            match.group(0)

    body = re.sub(r'href="([^"]+\.md)"', to_html, body)

    def inline(match):
        src = match.group(1)
        path = base / src
        if src.startswith(("data:", "http")) or not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+)"', inline, body)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}"
             "summary{cursor:pointer;font-weight:bold}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
            f"</head><body>\n{body}\n</body></html>\n")


def write_report(out: Path, markdown_text: str, name: str = "report") -> None:
    """OUT/report.md and OUT/report.html (the same content, for people who open it in a browser)."""
    from ..io import write_text

    write_text(out / f"{name}.md", markdown_text)
    first = markdown_text.lstrip().splitlines()[0].lstrip("# ") if markdown_text.strip() else "safetune report"
    write_text(out / f"{name}.html", markdown_to_html(markdown_text, out, title=first))


def replace_block(path: Path, begin: str, end: str, block: str) -> None:
    """Replace the text from the `begin` marker to the `end` marker in `path` with `block` (which
    carries both markers): a README table rendered from stored results."""
    import re

    text = path.read_text()
    pattern = re.escape(begin) + ".*?" + re.escape(end)
    if not re.search(pattern, text, flags=re.S):
        raise SystemExit(f"{path} has no {begin} block")
    path.write_text(re.sub(pattern, lambda _: block, text, flags=re.S))


def write_study(out: Path, results: dict, summarize, render) -> None:
    """A study's results.json (with its summary recomputed) and its report, written as the study goes."""
    from ..io import write_json

    results["summary"] = summarize(results)
    write_json(out / "results.json", results)
    write_report(out, render(results, out))


def stored_study(stored: Path, description: str, focused: bool = False, keep=None) -> dict:
    """A render script's input: `--from RESULTS` first stores a study's results.json at `stored`
    (its summary dropped: derived, recomputed on every render), then the stored file is read.
    focused: `--focus NAME` stores it beside, as STEM-NAME.json (a focused study: one question of the
    stored one asked with more seeds), and the main stored study is still what is returned.
    keep: what of a study is stored (a study keeps the runs of its earlier settings; its report reads
    fewer)."""
    import argparse
    import json
    import re

    from ..io import write_json

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--from", dest="source", default=None, help="a study's results.json to store first")
    if focused:
        ap.add_argument("--focus", default=None, metavar="NAME",
                        help=f"store --from as {stored.stem}-NAME.json, a focused study beside the main one")
    args = ap.parse_args()
    focus = getattr(args, "focus", None)
    if focus and not args.source:
        ap.error("--focus NAME names where --from RESULTS is stored; give --from too")
    if focus and not re.fullmatch(r"[A-Za-z0-9_-]+", focus):
        ap.error(f"--focus {focus!r}: a name of letters, digits, - and _ (it becomes {stored.stem}-NAME.json)")
    if args.source:
        results = json.loads(Path(args.source).read_text())
        results.pop("summary", None)
        results = keep(results) if keep else results
        write_json(stored.with_name(f"{stored.stem}-{focus}.json") if focus else stored, results, compact=True)
    return json.loads(stored.read_text())
