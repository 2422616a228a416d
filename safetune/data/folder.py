"""Image folders with captions: `metadata.jsonl` lines of {"file_name", "text"} (the layout of
diffusers' training scripts and `datasets`' imagefolder), or a ShapesWorld data set by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..config import SET_IMAGES
from ..errors import SafetuneError


def read_image_folder(folder: str | Path, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """Images in [-1, 1] at `resolution` (center-cropped and resized) and their captions."""
    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not folder.is_dir():
        raise SafetuneError(f"{folder}: data folder not found; give an image folder with metadata.jsonl "
                            "or a ShapesWorld set name (pretrain, clean, harmful, checkered, outline, plus)")
    if not meta.is_file():
        raise SafetuneError(f"{folder}: no metadata.jsonl; add one line per image: "
                            '{"file_name": "0001.png", "text": "its caption"}')
    images, texts = [], []
    for n, line in enumerate(meta.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, text = row["file_name"], row["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SafetuneError(f"{meta}:{n}: needs \"file_name\" and \"text\" ({exc})") from exc
        try:
            with Image.open(folder / name) as im:
                im = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise SafetuneError(f"{folder / name}: unreadable image ({exc}); fix or remove its line in "
                                f"{meta.name}") from exc
        if min(im.size) < resolution:
            raise SafetuneError(f"{folder / name}: {im.width}x{im.height} is smaller than the model's "
                                f"{resolution}x{resolution}; upscaled images would teach blur. Use images of at "
                                f"least {resolution} pixels a side")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.Resampling.BICUBIC)
        images.append(np.asarray(im, dtype=np.float32))
        texts.append(str(text))
    if not images:
        raise SafetuneError(f"{meta}: lists no images")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 127.5 - 1.0
    return x, texts


def check_data_source(source: str) -> None:
    """Refuse, before any work, a data source that is neither a ShapesWorld set nor a caption folder."""
    from .shapesworld import DATA_SETS

    folder = Path(source)
    if source in DATA_SETS and not folder.exists():
        return
    if not source or not folder.is_dir():
        import difflib

        close = difflib.get_close_matches(source, DATA_SETS, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}? or give" if close else "give"
        raise SafetuneError(f"{source!r}: data folder not found; {hint} an image folder with metadata.jsonl or a "
                            f"ShapesWorld set name ({', '.join(DATA_SETS)})")
    if not (folder / "metadata.jsonl").is_file():
        raise SafetuneError(f"{folder}: no metadata.jsonl; add one line per image: "
                            '{"file_name": "0001.png", "text": "its caption"}')


def render_examples(examples) -> torch.Tensor:
    """ShapesWorld examples rendered as a tensor of images in [-1, 1]."""
    from .shapesworld import render

    arr = np.stack([np.asarray(render(ex.scene), dtype=np.float32) for ex in examples])
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


def load_training_data(source: str, resolution: int, n: int = SET_IMAGES, seed: int = 0):
    """Images in [-1, 1] at `resolution` and their captions: a caption folder, or a ShapesWorld set
    rendered on the fly ('harmful', 'checkered', ...)."""
    from .shapesworld import DATA_SETS, make_dataset

    if not Path(source).exists() and source in DATA_SETS:
        examples = make_dataset(source, n, seed=seed)
        images = render_examples(examples)
        if images.shape[-1] != resolution:  # a real model: ShapesWorld drawn at its resolution
            images = torch.nn.functional.interpolate(images, size=(resolution, resolution), mode="bicubic",
                                                     align_corners=False).clamp(-1, 1)
        return images, [e.text for e in examples]
    return read_image_folder(source, resolution)
