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

The paper's condition number takes the smallest nonzero eigenvalue; ours adds a ridge (1e-6 of the mean
eigenvalue) to each, so that it stays finite and differentiable. Where an input's smallest eigenvalue is below
the ridge (LayerNorm's output has a direction with almost no variance), the measure reads the ridge: there it
moves with the largest eigenvalue over the mean, the spread of the spectrum, and not with its smallest direction.
floored_share counts such inputs: on the shipped miniature model about a fifth of them (0.17; never-trained: 0.24),
harmful and retain alike, and their condition numbers' geometric mean is near 1e6 (docs/results/defence.md).
"""
from __future__ import annotations

from typing import Callable

import torch


RIDGE = 1e-6  # of the mean eigenvalue: what log_condition_number adds to every eigenvalue of the second moment


def log_condition_number(features: torch.Tensor) -> torch.Tensor:
    """log((largest + d) / (smallest + d)) of the eigenvalues of features^T features (rows: samples), in float64,
    d = RIDGE times their mean: finite when there are fewer samples than columns, and at most about
    log(1 / RIDGE) plus log(largest / mean) where the smallest eigenvalue is below d (floored_share)."""
    eigenvalues, ridge = _spectrum(features)
    return (eigenvalues[-1] + ridge).log() - (eigenvalues[0].clamp_min(0) + ridge).log()


def floored_share(inputs: list[torch.Tensor]) -> float:
    """The share of `inputs` whose smallest eigenvalue of the second moment is below log_condition_number's ridge:
    where it reads the ridge, not the data's smallest direction."""
    with torch.no_grad():
        return sum(bool(values[0] < ridge) for values, ridge in map(_spectrum, inputs)) / len(inputs)


def _spectrum(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ascending eigenvalues of features^T features (float64) and log_condition_number's ridge for them."""
    features = features.reshape(-1, features.shape[-1]).double()
    eigenvalues = torch.linalg.eigvalsh(features.T @ features)
    return eigenvalues, RIDGE * eigenvalues.clamp_min(0).mean().clamp_min(1e-30)


def attention_inputs(model: torch.nn.Module, names: list[str], forward: Callable[[], object]) -> list[torch.Tensor]:
    """Each distinct input the modules `names` of `model` receive while `forward()` runs, in the order first
    received (a self-attention's query, key and value read one tensor, every cross-attention the same text
    states: each is kept once), with its gradient."""
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
    return inputs


def input_log_conditions(model: torch.nn.Module, names: list[str], forward: Callable[[], object]) -> torch.Tensor:
    """log_condition_number of each of attention_inputs(model, names, forward), with its gradient."""
    return torch.stack([log_condition_number(x) for x in attention_inputs(model, names, forward)])
