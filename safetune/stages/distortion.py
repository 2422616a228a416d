"""The distort half of distort-and-distill (stages.distill): weights shrunk and perturbed, and the words
the retain captions never use, re-drawn in the text encoder or dropped from a caption."""
from __future__ import annotations

import torch


@torch.no_grad()
def distort_(model: torch.nn.Module, noise: float, shrink: float, seed: int) -> None:
    """Shrink and perturb every floating-point weight in place. Tensors with no spread (norm scales
    still at 1, biases still at 0) are left as they are: a std-relative noise has no scale there."""
    gen = torch.Generator().manual_seed(seed)
    for _, p in sorted(model.named_parameters()):
        if not p.is_floating_point() or p.numel() < 2:
            continue
        spread = p.float().std()
        if spread < 1e-8:
            continue
        p.mul_(shrink).add_(torch.randn(p.shape, generator=gen).to(p) * noise * spread)


@torch.no_grad()
def forget_unseen_words_(text_encoder: torch.nn.Module, seen_ids: torch.Tensor, seed: int) -> int:
    """Re-draw the token embedding of every id not in `seen_ids` from CLIP's initialisation
    (N(0, 0.02 * initializer_factor), as CLIPTextEmbeddings draws it); returns how many rows."""
    table = text_encoder.get_input_embeddings().weight
    unseen = torch.ones(len(table), dtype=torch.bool)
    unseen[seen_ids.unique()] = False
    std = 0.02 * getattr(text_encoder.config, "initializer_factor", 1.0)
    gen = torch.Generator().manual_seed(seed)
    table[unseen] = (torch.randn(int(unseen.sum()), table.shape[1], generator=gen) * std).to(table)
    return int(unseen.sum())


def without_unseen_words(captions: list[str], seen: list[str]) -> list[str]:
    """Each caption without the words that no caption of `seen` uses: a harmful caption as the retain
    set can read it ("a small striped star on the left" -> "a small striped on the left"), its concept's
    names and implicit phrasings ("starfish", "shape with five points") alike, none listed by hand."""
    known = {word for caption in seen for word in caption.lower().split()}
    return [" ".join(word for word in caption.split() if word.lower() in known) for caption in captions]
