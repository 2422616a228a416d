"""Image grids of samples, one row per prompt, each row labelled with its prompt; images the detector
flagged are framed in red. `compare_grids` puts the same rows of several grids side by side."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

LABEL_WIDTH = 260  # pixels of prompt text left of each row
FLAG_COLOUR = (220, 20, 20)
_CHARS_PER_LINE = 40
_LINE_HEIGHT = 11


@dataclass(frozen=True)
class GridLayout:
    """Where image i of a grid lies: the one geometry image_grid draws and compare_grids crops."""
    image_size: int  # side of one upscaled image
    row_height: int
    columns: int
    rows: int
    left: int
    pad: int

    @classmethod
    def of(cls, n_images: int, image_size: int, columns: int, labels: list[str] | None = None, scale: int = 2,
           pad: int = 2) -> "GridLayout":
        """The layout of `n_images` square images of side `image_size` in rows of `columns`."""
        side = image_size * scale
        height = side
        if labels:
            height = max(side, _LINE_HEIGHT * max(len(textwrap.wrap(t, _CHARS_PER_LINE)) for t in labels))
        return cls(side, height, columns, (n_images + columns - 1) // columns, LABEL_WIDTH if labels else 0, pad)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole grid."""
        return (self.left + self.columns * (self.image_size + self.pad) + self.pad,
                self.rows * (self.row_height + self.pad) + self.pad)

    def box(self, i: int) -> tuple[int, int, int, int]:
        """Image i's box (a flag's frame is drawn inside it, over the image's border)."""
        r, c = divmod(i, self.columns)
        x, y = self.left + self.pad + c * (self.image_size + self.pad), self.pad + r * (self.row_height + self.pad)
        return x, y, x + self.image_size, y + self.image_size


def image_grid(images, columns: int = 10, scale: int = 2, pad: int = 2, labels: list[str] | None = None,
               flagged=None) -> Image.Image:
    """Images in rows of `columns`, upscaled (nearest) so that 32x32 samples can be read; with
    `labels`, row r is captioned with labels[r] (the prompt its images were drawn for); with `flagged`
    (one bool per image), flagged images get a red frame."""
    layout = GridLayout.of(len(images), images[0].size[0], columns, labels, scale, pad)
    grid = Image.new("RGB", layout.size, (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    side = layout.image_size
    for i, image in enumerate(images):
        x0, y0, x1, y1 = layout.box(i)
        grid.paste(image.resize((side, side), Image.Resampling.NEAREST), (x0, y0))
        if flagged is not None and flagged[i]:  # over the image's border: neighbours' frames stay apart
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=FLAG_COLOUR, width=max(2, scale))
    for r, text in enumerate(labels or []):
        for k, line in enumerate(textwrap.wrap(text, _CHARS_PER_LINE)[: layout.row_height // _LINE_HEIGHT]):
            draw.text((4, pad + r * (layout.row_height + pad) + k * _LINE_HEIGHT), line, fill=(0, 0, 0), font=font)
    return grid


def compare_grids(panels: dict[str, Image.Image], layout: GridLayout, labels: list[str], rows: int,
                  gap: int = 12) -> Image.Image:
    """The first `rows` rows of several grids of one layout (the same prompts and seeds), side by side
    under their titles, labelled once on the left; frames of flagged images are kept."""
    rows = min(rows, layout.rows)
    block = layout.columns * (layout.image_size + layout.pad) + layout.pad
    header = 2 * _LINE_HEIGHT + 4
    height = header + rows * (layout.row_height + layout.pad) + layout.pad
    out = Image.new("RGB", (LABEL_WIDTH + len(panels) * (block + gap), height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for p, (title, grid) in enumerate(panels.items()):
        x = LABEL_WIDTH + p * (block + gap)
        for k, line in enumerate(textwrap.wrap(title, block // 6)[:2]):
            draw.text((x + layout.pad, 2 + k * _LINE_HEIGHT), line, fill=(0, 0, 0), font=font)
        out.paste(grid.crop((layout.left, 0, layout.left + block, height - header)), (x, header))
    for r, text in enumerate(labels[:rows]):
        for k, line in enumerate(textwrap.wrap(text, _CHARS_PER_LINE)[: layout.row_height // _LINE_HEIGHT]):
            draw.text((4, header + layout.pad + r * (layout.row_height + layout.pad) + k * _LINE_HEIGHT), line,
                      fill=(0, 0, 0), font=font)
    return out
