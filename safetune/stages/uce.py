"""Unified Concept Editing (UCE; Gandikota et al. 2024, arXiv 2308.14761): a closed-form edit of
every cross-attention key and value projection W, no training. With the concept's text states c_e
(edited to what W gives for the guide prompt, v_e), preserved prompts' states c_p (kept) and a
ridge term that keeps W itself:

    W' = argmin sum_e |W' c_e - v_e|^2 + lp sum_p |W' c_p - W c_p|^2 + lk |W' - W|_F^2
    W' - W = sum_e (v_e - W c_e) c_e^T M^-1,   M = sum_e c_e c_e^T + lp sum_p c_p c_p^T + lk I

RECE (Gong et al. 2024, arXiv 2407.12383; `rece_rounds`) then finds, in closed form, the text states
that regenerate the concept through the edited projections, and erases them too, round by round.
The difference has rank at most the number of edited states, so it is written as a LoRA on W0
(exact up to `rank`, else its truncated SVD): Modular composition, `lora` algebra and the guard
work on it as on any safety LoRA.
"""
from __future__ import annotations

import torch

from ..config import UCEConfig
from ..errors import SafetuneError
from ..lora.weights import LoRA
from ..models.conditioning import encode_text, require_family

EDITED = ("attn2.to_k", "attn2.to_v")  # the projections of the text states in cross-attention


def _ends(pipe, prompts: list[str], length: int, tokens: str) -> list[int]:
    """Per prompt, the end of its edited positions (from position 1): every position, or its words
    and end token."""
    if tokens == "all":
        return [length] * len(prompts)
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                         return_tensors="pt").input_ids
    eos = pipe.tokenizer.eos_token_id
    return [int((row == eos).nonzero()[0]) + 1 for row in ids]


def _states(pipe, prompts: list[str], tokens: str, ends: list[int] | None = None) -> torch.Tensor:
    """[d, n] text states of `prompts` at the edited positions (float64); `ends` as _ends gives."""
    hidden = encode_text(pipe, prompts).hidden.double()  # [N, T, d]
    ends = ends or _ends(pipe, prompts, hidden.shape[1], tokens)
    return torch.cat([hidden[i, 1:end] for i, end in enumerate(ends)]).T


def _paired_states(pipe, concepts: list[str], guide: str, tokens: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The concepts' states and the guide's at the same positions (the concepts')."""
    c = encode_text(pipe, concepts).hidden.double()
    ends = _ends(pipe, concepts, c.shape[1], tokens)
    concept = torch.cat([c[i, 1:end] for i, end in enumerate(ends)]).T
    return concept, _states(pipe, [guide] * len(concepts), tokens, ends)


@torch.no_grad()
def uce_lora(pipe, concepts: list[str], settings: UCEConfig | None = None) -> LoRA:
    """The UCE edit of `pipe` (left unchanged) erasing `concepts`, as a LoRA on W0; with
    `rece_rounds`, RECE: each round also erases the states that regenerate the concept through the
    edit so far (`regenerating_states`), mapped to the guide like the concept's own."""
    settings = settings or UCEConfig()
    if not concepts or not all(c.strip() for c in concepts):
        raise SafetuneError("give at least one non-empty --concept prompt")
    require_family(pipe, ("sd", "sdxl"), "uce/rece", "their closed form edits cross-attention, whose keys and values "
                   "read the text encoder's output alone; joint attention reads it through timestep-modulated "
                   "layers. Use esd-x, which trains the text stream's projections")
    weights = {name: m.weight.double() for name, m in pipe.unet.named_modules() if name.endswith(EDITED)}
    if not weights:
        raise SafetuneError("uce: this UNet has no cross-attention key/value projections (attn2.to_k/to_v)")
    concept, guide = _paired_states(pipe, concepts, settings.guide, settings.tokens)
    keep = _states(pipe, settings.preserve, settings.tokens) if settings.preserve else None
    edit, target = concept, guide
    deltas = _edit(weights, edit, target, keep, settings)
    for _ in range(settings.rece_rounds):
        edit = torch.cat([edit, regenerating_states(weights, deltas, concept, settings.rece_ridge)], dim=1)
        target = torch.cat([target, guide], dim=1)
        deltas = _edit(weights, edit, target, keep, settings)
    return as_lora(deltas, settings.rank)


def as_lora(deltas: dict[str, torch.Tensor], rank: int) -> LoRA:
    """Weight differences of UNet modules as a LoRA on W0: each one's SVD, exact up to `rank`."""
    factors = {}
    for name, delta in deltas.items():
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = min(rank, int((s > s[0] * 1e-7).sum()) if s[0] > 0 else 1)
        factors[f"unet.{name}"] = (vh[:r].float().contiguous(), (u[:, :r] * s[:r]).float().contiguous())
    return LoRA(factors)


def ridge_solve(residual: torch.Tensor, edit: torch.Tensor, ridge: float, keep: torch.Tensor | None = None,
                keep_weight: float = 0.0) -> torch.Tensor:
    """residual @ c_e^T M^-1, M = c_e c_e^T + keep_weight c_p c_p^T + ridge I: the least-squares change
    of a projection that moves its outputs on the columns of `edit` by the columns of `residual`."""
    m = edit @ edit.T + ridge * torch.eye(edit.shape[0], dtype=torch.float64)
    if keep is not None:
        m += keep_weight * (keep @ keep.T)
    return residual @ torch.linalg.solve(m, edit).T  # M symmetric


def _edit(weights: dict, edit: torch.Tensor, target: torch.Tensor, keep: torch.Tensor | None,
          settings: UCEConfig) -> dict[str, torch.Tensor]:
    """The closed form (module docstring): per projection W, the difference W' - W."""
    return {name: ridge_solve(w @ target - w @ edit, edit, settings.keep_weight, keep, settings.preserve_weight)
            for name, w in weights.items()}


def regenerating_states(weights: dict, deltas: dict, concept: torch.Tensor, ridge: float) -> torch.Tensor:
    """RECE's closed form (Gong et al. 2024, arXiv 2407.12383): the text states e that, through every
    edited projection W + dW, give what the original W gives for the concept's states c:
    argmin_e sum |(W + dW) e - W c|^2 + ridge |e|^2, one column per column of c."""
    edited = {name: w + deltas[name] for name, w in weights.items()}
    a = sum(e.T @ e for e in edited.values()) + ridge * torch.eye(concept.shape[0], dtype=torch.float64)
    b = sum(edited[name].T @ w @ concept for name, w in weights.items())
    return torch.linalg.solve(a, b)
