"""Image grids of samples, one row per prompt, each row labelled with its prompt."""
from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

LABEL_WIDTH = 260  # pixels of prompt text left of each row
_CHARS_PER_LINE = 40


def image_grid(images, columns: int = 10, scale: int = 2, pad: int = 2, labels: list[str] | None = None) -> Image.Image:
    """Images in rows of `columns`, upscaled (nearest) so that 32x32 samples can be read; with
    `labels`, row r is captioned with labels[r] (the prompt its images were drawn for)."""
    w, h = images[0].size
    w, h = w * scale, h * scale
    rows = (len(images) + columns - 1) // columns
    left = LABEL_WIDTH if labels else 0
    line_height = 11
    if labels:
        h = max(h, line_height * max(len(textwrap.wrap(t, _CHARS_PER_LINE)) for t in labels))
    grid = Image.new("RGB", (left + columns * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid.paste(image.resize((w, h) if not labels else (w, w), Image.Resampling.NEAREST),
                   (left + pad + c * (w + pad), pad + r * (h + pad)))
    for r, text in enumerate(labels or []):
        for k, line in enumerate(textwrap.wrap(text, _CHARS_PER_LINE)[: h // line_height]):
            draw.text((4, pad + r * (h + pad) + k * line_height), line, fill=(0, 0, 0), font=font)
    return grid
