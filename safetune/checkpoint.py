"""Checkpoints for long jobs: weights as safetensors, optimizer state loaded with weights_only.

A checkpoint is a directory written atomically, so a job killed mid-save keeps the previous one.
Batches are drawn from generators seeded by (seed, step), so resuming at step k replays exactly
the batches an uninterrupted run would have drawn.
"""
from __future__ import annotations

import contextlib
import json
import pickle
from pathlib import Path

import torch
from safetensors.torch import save_file

from .errors import SafetuneError
from .io import atomic_dir, read_safetensors


def save_checkpoint(path: Path, step: int, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> None:
    """Write modules' state dicts (safetensors), the optimizer and `extra` as one directory, atomically."""
    with atomic_dir(path) as tmp:
        for name, module in modules.items():
            state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(tmp / f"{name}.safetensors"))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **(extra or {})}))


def read_state(path: Path) -> dict:
    """The checkpoint's state.json (step and the settings of the run that wrote it)."""
    try:
        return json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise SafetuneError(f"{path}: checkpoint cannot be read ({exc}); delete it to start over") from exc


def load_checkpoint(path: Path, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore modules (and optimizer) in place; returns the saved state (with "step")."""
    try:
        state = json.loads((path / "state.json").read_text())
        for name, module in modules.items():
            weights = read_safetensors(path / f"{name}.safetensors", "checkpoint cannot be read",
                                       f"delete {path} to start over")
            module.load_state_dict(weights)
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise SafetuneError(f"{path}: checkpoint cannot be read ({exc}); delete it to start over") from exc
    return state


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one step's random draws: a pure function of (seed, step), so resumes are exact."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# Data parallelism: with N processes every process draws the *global* batch (N x its own) from the
# same step generator and keeps its own slice, so N processes of batch B see exactly the samples,
# noise and timesteps of one process of batch N x B, and their averaged gradients are its gradient.
_shard = (0, 1)  # (this process's index, number of processes), set by the trainer


@contextlib.contextmanager
def sharding(index: int, processes: int):
    """Draws inside are sliced to process `index` of `processes` (the trainer's data parallelism)."""
    global _shard
    previous, _shard = _shard, (index, processes)
    try:
        yield
    finally:
        _shard = previous


def _mine(draw: torch.Tensor, n: int) -> torch.Tensor:
    index, _ = _shard
    return draw[index * n:(index + 1) * n]


def batch_randint(high: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """n integers in [0, high): this process's share of the global batch's draw."""
    return _mine(torch.randint(high, (n * _shard[1],), generator=gen), n)


def batch_rand(n: int, gen: torch.Generator) -> torch.Tensor:
    """n uniforms: this process's share of the global batch's draw."""
    return _mine(torch.rand(n * _shard[1], generator=gen), n)


def batch_randn(shape, gen: torch.Generator) -> torch.Tensor:
    """Normal noise of `shape` (batch first): this process's share of the global batch's draw."""
    return _mine(torch.randn((shape[0] * _shard[1], *shape[1:]), generator=gen), shape[0])
