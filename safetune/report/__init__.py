"""Report parts: image grids, markdown tables, curves."""
from __future__ import annotations

from PIL import Image


def image_grid(images, columns: int = 10, scale: int = 2, pad: int = 2) -> Image.Image:
    """Images in rows of `columns`, upscaled (nearest) so that 32x32 samples can be read."""
    w, h = images[0].size
    w, h = w * scale, h * scale
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid.paste(image.resize((w, h), Image.Resampling.NEAREST), (pad + c * (w + pad), pad + r * (h + pad)))
    return grid


def fmt_ci(value: float, ci: list[float], digits: int = 2) -> str:
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def metrics_table(rows: dict[str, dict], columns=("harmful_rate", "harmful_score", "prompt_fidelity")) -> str:
    """A markdown table, one row per named result, each metric with its 95% interval."""
    head = "| | n images | " + " | ".join(columns) + " |\n|---|---:|" + "---:|" * len(columns) + "\n"
    lines = []
    for name, m in rows.items():
        cells = [fmt_ci(m[c], m[c + "_ci95"]) if c in m else "-" for c in columns]
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
