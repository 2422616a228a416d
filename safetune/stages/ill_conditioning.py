"""The condition-number immunisation (`--set tamper=condition` on `safetune align --method dd`): the inputs of
the UNet's attention projections, on harmful batches, made ill-conditioned against the same inputs on retain
batches. A fine-tuning of a linear layer descends a loss whose curvature in the layer's weight is its inputs'
second moment X^T X; gradient descent converges at a rate set by that matrix's condition number, so a harmful
task whose inputs are ill-conditioned is slow to learn there, and a retain task whose inputs stay well-conditioned
is not ("Model Immunization from a Condition Number Perspective", Zheng et al., arXiv 2505.23760: proved for
linear probing, regularised on a feature extractor's output). We read it at every attention projection, the
layers the battery's LoRA attacks train (IMMA's), and push the mean gap of log condition numbers (harmful minus
retain) up to harm_margin: one objective for both of the paper's regularisers (its R_ill on the harmful
features, R_well on the pre-training ones), at the defended weights, with no simulated attack. The attacker's
Adam rescales each coordinate, which undoes an ill-conditioning along the axes and not one across them: whether
any of it survives is what the dev screen measures.
"""
from __future__ import annotations

from typing import Callable

import torch


def log_condition_number(features: torch.Tensor) -> torch.Tensor:
    """log(largest / smallest eigenvalue) of features^T features (rows: samples), in float64; a ridge of 1e-6 of
    the mean eigenvalue keeps it finite when there are fewer samples than columns."""
    features = features.reshape(-1, features.shape[-1]).double()
    moment = features.T @ features
    ridge = 1e-6 * moment.diagonal().mean().clamp_min(1e-30)
    eigenvalues = torch.linalg.eigvalsh(moment + ridge * torch.eye(len(moment), dtype=moment.dtype))
    return eigenvalues[-1].log() - eigenvalues[0].clamp_min(ridge).log()


def input_log_conditions(model: torch.nn.Module, names: list[str], forward: Callable[[], object]) -> torch.Tensor:
    """The log condition number of each distinct input the modules `names` of `model` receive while `forward()`
    runs, in the order first received (a self-attention's query, key and value read one tensor, every cross-
    attention the same text states: each is counted once), with its gradient."""
    inputs: list[torch.Tensor] = []

    def capture(module, args):
        if not any(args[0] is seen for seen in inputs):
            inputs.append(args[0])

    hooks = [model.get_submodule(name).register_forward_pre_hook(capture) for name in names]
    try:
        forward()
    finally:
        for hook in hooks:
            hook.remove()
    if not inputs:
        raise ValueError(f"none of the {len(names)} modules received an input: nothing to condition")
    return torch.stack([log_condition_number(x) for x in inputs])
