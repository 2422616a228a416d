"""Representation noising (`--set tamper=noise` on `safetune align --method dd`): the UNet's block outputs on
harmful batches pulled towards Gaussian noise. A fine-tuning that relearns a concept reuses what the layers
below the trained ones still say about it; where every layer's output on the concept's images is as
uninformative as noise, an attacker has to rebuild the representation, not only re-route it. RepNoise
("Representation Noising: A Defence Mechanism Against Harmful Finetuning", Rosati et al., arXiv 2405.14577)
does this for language models: the maximum mean discrepancy (MMD) between each layer's hidden states on
harmful text and Gaussian noise is minimised beside a retain loss and a bounded ascent on the harmful loss.
We keep its noising half: the mean over the UNet's down, mid and up blocks of the MMD between the block's
output vectors (one per batch element and position: a language model's per-token states) and standard normal
vectors of the same count, pulled down to harm_margin, while the distillation (and the hold) keep the retain
side. The ascent half would be the level hinge with no simulated attack beside it; the dev screen
(defence.md) reads the noising alone.

The kernel is Gaussian at three bandwidths (a quarter, one and four times the vectors' width, whose noise
vectors lie about twice the width apart in squared distance), as in the multi-bandwidth kernels of MMD
two-sample tests, so that the pull does not vanish for outputs a few widths off the noise's scale; far off
it does (vectors shifted by 10 in every channel get a gradient near 1e-9).
"""
from __future__ import annotations

from typing import Callable

import torch

BANDWIDTHS = (0.25, 1.0, 4.0)  # squared kernel widths, in units of the vectors' width


def block_outputs(unet: torch.nn.Module, forward: Callable[[], object]) -> list[torch.Tensor]:
    """The output of each of the UNet's down blocks, its mid block and its up blocks while `forward()` runs (a
    down block's first output: its hidden states, not its skip connections), with their gradient."""
    blocks = [*unet.down_blocks, *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks]
    outputs: list[torch.Tensor] = []
    hooks = [block.register_forward_hook(lambda module, args, out: outputs.append(
        out[0] if isinstance(out, tuple) else out)) for block in blocks]
    try:
        forward()
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def mmd_to_noise(features: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The squared MMD (biased estimate) between the vectors of `features` (batch, channels, positions...: one
    vector of its channels per batch element and position) and as many standard normal vectors drawn from
    `gen`, under the sum of Gaussian kernels at BANDWIDTHS; 0 when the vectors are the noise."""
    vectors = features.movedim(1, -1).reshape(-1, features.shape[1]).float()
    noise = torch.randn(vectors.shape, generator=gen)
    both = torch.cat([vectors, noise])
    squares = both.square().sum(1)
    distances = (squares[:, None] + squares[None, :] - 2 * both @ both.T).clamp_min(0)  # gradient at 0
    kernel = sum(torch.exp(-distances / (2 * width * vectors.shape[1])) for width in BANDWIDTHS)
    n = len(vectors)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def noise_discrepancy(unet: torch.nn.Module, forward: Callable[[], object], gen: torch.Generator) -> torch.Tensor:
    """The mean over the UNet's blocks of mmd_to_noise of their outputs while `forward()` runs."""
    return torch.stack([mmd_to_noise(out, gen) for out in block_outputs(unet, forward)]).mean()
