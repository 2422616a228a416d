"""The self-destruct coupling (`--set tamper=couple` on `safetune align --method dd`): the cosine of the
harmful loss's gradient and the retain loss's, pushed down. Where the two point apart, every descent step
on harmful data is, first-order, an ascent step on the retain data: a malicious fine-tuning that brings the
concept back breaks what else the model draws, and an attacker gets a broken model, not a restored one.

An objective on the landscape at the defended weights, not on the error after a simulated attack (the
hinges of stages.losses): SEAM ("Self-Destructive Language Models", arXiv 2505.12186) couples harmful and
benign gradients so for language models; Meta-Unlearning (arXiv 2410.12777) asks a diffusion model's
related benign knowledge to self-destruct under a simulated relearning step, whose first-order expansion
is the same inner product. We differentiate the cosine exactly (double backpropagation: two Hessian-vector
products of the UNet per step) where SEAM estimates it by finite differences.
"""
from __future__ import annotations

from typing import Callable

import torch


def gradient_cosine(losses: tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]],
                    params: list[torch.nn.Parameter]) -> torch.Tensor:
    """cos(grad of the first loss, grad of the second) over `params`, with its own gradient (the two
    losses are computed here, under attention kernels that have a second derivative)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernels have no second derivative
        grads = [torch.autograd.grad(loss(), params, create_graph=True, allow_unused=True) for loss in losses]
    pairs = [(a, b) for a, b in zip(*grads) if a is not None and b is not None]
    if not pairs:
        raise ValueError("the two losses share no parameter with a gradient: their cosine is undefined")
    dot = sum((a * b).sum() for a, b in pairs)
    norms = [sum((g * g).sum() for g in side) for side in zip(*pairs)]
    return dot / (norms[0] * norms[1]).sqrt().clamp_min(1e-30)
