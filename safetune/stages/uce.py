"""Unified Concept Editing (UCE; Gandikota et al. 2024, arXiv 2308.14761): a closed-form edit of
every cross-attention key and value projection W, no training. With the concept's text states c_e
(edited to what W gives for the guide prompt, v_e), preserved prompts' states c_p (kept) and a
ridge term that keeps W itself:

    W' = argmin sum_e |W' c_e - v_e|^2 + lp sum_p |W' c_p - W c_p|^2 + lk |W' - W|_F^2
    W' - W = sum_e (v_e - W c_e) c_e^T M^-1,   M = sum_e c_e c_e^T + lp sum_p c_p c_p^T + lk I

The difference has rank at most the number of edited states, so it is written as a LoRA on W0
(exact up to `rank`, else its truncated SVD): Modular composition, `lora` algebra and the guard
work on it as on any safety LoRA.
"""
from __future__ import annotations

import torch

from ..config import UCEConfig
from ..errors import SafetuneError
from ..lora.weights import LoRA
from ..models.conditioning import encode_text

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
    """The UCE edit of `pipe` (left unchanged) erasing `concepts`, as a LoRA on W0."""
    settings = settings or UCEConfig()
    if not concepts or not all(c.strip() for c in concepts):
        raise SafetuneError("give at least one non-empty --concept prompt")
    c_edit, c_guide = _paired_states(pipe, concepts, settings.guide, settings.tokens)
    d = c_edit.shape[0]
    m = c_edit @ c_edit.T + settings.keep_weight * torch.eye(d, dtype=torch.float64)
    if settings.preserve:
        c_keep = _states(pipe, settings.preserve, settings.tokens)
        m += settings.preserve_weight * (c_keep @ c_keep.T)
    right = torch.linalg.solve(m, c_edit).T  # [E, d] = c_e^T M^-1 (M symmetric)
    factors = {}
    for name, module in pipe.unet.named_modules():
        if name.endswith(EDITED):
            w = module.weight.double()
            delta = (w @ c_guide - w @ c_edit) @ right  # [d_out, d]
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            r = min(settings.rank, int((s > s[0] * 1e-7).sum()) if s[0] > 0 else 1)
            factors[f"unet.{name}"] = (vh[:r].float().contiguous(), (u[:, :r] * s[:r]).float().contiguous())
    if not factors:
        raise SafetuneError("uce: this UNet has no cross-attention key/value projections (attn2.to_k/to_v)")
    return LoRA(factors)
