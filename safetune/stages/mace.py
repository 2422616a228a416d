"""MACE, mass concept erasure (Lu et al., CVPR 2024, arXiv 2403.06135), on cross-attention's key and
value projections W only, so its result is a LoRA on W0:

1. closed-form refinement (CFR): the words around a concept carry it too (in a causal text encoder
   "a star on the left" differs from "a circle on the left" after "star"), so every token the concept's
   prompts share with the same prompts with the concept replaced by `mapping` is mapped, through each
   W, to what W0 gives for it there: W1 = argmin sum |W c_old - W0 c_new|^2 + ridge |W - W0|^2.
2. one LoRA per concept (the recipe: rank 1 on keys and values) trained on W1 to suppress the
   attention the image pays to the concept's tokens (and to the end tokens, the official code's
   use_pooler), loss = sum over cross-attention layers of |A[:, :, concept tokens]|, on the model's own
   images of the concept, noised at timesteps drawn with the paper's concept-focal importance sampling.
3. fusion: W* = argmin sum_i sum |W c_i - (W1 + dW_i) c_i|^2 + ridge |W - W1|^2 over every token of
   concept i's prompts: each LoRA acts on its own concept's prompts and they do not interfere.

Not built here (and why): Grounded-SAM masks of the concept (no segmentation model offline; attention
is suppressed over the whole image, the official code's use_gsam_mask=false path), GPT prompt
augmentation (fixed templates), prior-preservation caches over COCO captions (the object configs set
their scale to 0). The result W* - W0 is written as a LoRA on W0 (exact at the default rank).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import batch_randint, batch_randn
from ..config import SHAPES_CONCEPTS, MACEConfig, TrainConfig
from ..errors import SafetuneError
from ..lora.weights import LoRA, merged
from ..models.conditioning import (
    denoiser,
    encode_text,
    noised,
    predict,
    require_family,
    sample_latents,
    training_scheduler,
)
from ..models.loading import is_shipped_vocabulary
from ..train import run_stage
from .uce import EDITED, as_lora, ridge_solve

log = logging.getLogger(__name__)

# the prompts each concept is erased in: ShapesWorld's grammar, or (another model) MACE's object templates
SHAPES_TEMPLATES = ("{}", "{} on the left", "{} on the right", "{} on a gray background", "{} on a black background",
                    "{} on a purple background", "{} on the left on a gray background",
                    "{} on the right on a purple background")
PHOTO_TEMPLATES = ("{}", "a photo of {}", "an image of {}", "a painting of {}", "a drawing of {}", "a snapshot of {}",
                   "a digital rendering of {}", "{} in a photo", "a black and white image of {}", "a sketch of {}")


def importance_weights(steps: int = 1000, temperature: float = 0.05) -> np.ndarray:
    """MACE's concept-focal importance sampling f(t) = s(0.05 (t - 200)) - s(0.05 (t - 400)), normalised."""
    t = np.arange(steps)
    f = 1 / (1 + np.exp(-temperature * (t - 200))) - 1 / (1 + np.exp(-temperature * (t - 400)))
    return f / f.sum()


def _ids(pipe, texts: list[str], length: int) -> torch.Tensor:
    return pipe.tokenizer(texts, padding="max_length", max_length=length, truncation=True,
                          return_tensors="pt").input_ids


def shared_positions(old: list[int], new: list[int], length: int) -> tuple[list[int], list[int]]:
    """Positions of the tokens two prompts share (their common start and end, then the padding after
    each: the official code's find_matching_indices, extended to `length`)."""
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old) - 1, len(new) - 1
    while end_old >= start and end_new >= start and old[end_old] == new[end_new]:
        end_old, end_new = end_old - 1, end_new - 1
    a = list(range(start)) + list(range(end_old + 1, len(old)))
    b = list(range(start)) + list(range(end_new + 1, len(new)))
    tail = length - max(len(old), len(new))  # padding both prompts have
    a += list(range(len(old), len(old) + tail))
    b += list(range(len(new), len(new) + tail))
    return a, b


def concept_positions(pipe, prompts: list[str], concept_words: str, length: int) -> torch.Tensor:
    """[N, length] True at the concept's tokens and at every end token (the official use_pooler)."""
    ids = _ids(pipe, prompts, length)
    words = pipe.tokenizer(concept_words, add_special_tokens=False).input_ids
    mask = ids == pipe.tokenizer.eos_token_id
    for row in range(len(ids)):
        seq = ids[row].tolist()
        for i in range(len(seq) - len(words) + 1):
            if seq[i:i + len(words)] == words:
                mask[row, i:i + len(words)] = True
    return mask


class AttentionSuppressionLoss:
    """MACE's LoRA loss: the norm of the attention the image pays to the concept's tokens, summed over
    every cross-attention layer, on the model's own concept images at importance-sampled timesteps."""

    def __init__(self, latents, cond, positions: torch.Tensor, scheduler, batch_size: int, weights: np.ndarray | None):
        self.latents, self.cond, self.positions, self.scheduler = latents, cond, positions, scheduler
        self.batch_size, self.weights = batch_size, weights

    def __call__(self, unet, step, gen):
        idx = batch_randint(len(self.latents), self.batch_size, gen)
        pidx = batch_randint(len(self.cond), self.batch_size, gen)
        if self.weights is None:
            xt, _, t = noised(self.scheduler, self.latents[idx], gen)
        else:  # the concept-focal timesteps instead of uniform ones
            x0 = self.latents[idx]
            t = torch.multinomial(torch.as_tensor(self.weights), len(idx), replacement=True, generator=gen)
            xt = self.scheduler.add_noise(x0, batch_randn(x0.shape, gen).to(x0), t.to(x0.device))
        mask = self.positions[pidx].to(xt.dtype)  # [B, T]
        with recorded_cross_attention(unet) as maps:
            predict(unet, xt, t.to(xt.device), self.cond[pidx])
        n = len(idx)  # each layer's probabilities are [batch x its heads, queries, tokens]
        return sum(torch.linalg.vector_norm(a.view(n, a.shape[0] // n, *a.shape[1:]) * mask[:, None, None, :])
                   for a in maps)


@contextlib.contextmanager
def recorded_cross_attention(unet):
    """The attention probabilities [batch x heads, queries, tokens] of every cross-attention layer
    while the block runs (diffusers' explicit AttnProcessor, its scores recorded)."""
    from diffusers.models.attention_processor import AttnProcessor

    maps, layers = [], [m for n, m in unet.named_modules() if n.endswith("attn2")]
    saved = [m.processor for m in layers]
    for layer in layers:
        layer.set_processor(AttnProcessor())
        scores = layer.get_attention_scores

        def record(query, key, attention_mask=None, _scores=scores):
            probs = _scores(query, key, attention_mask)
            maps.append(probs)
            return probs

        layer.get_attention_scores = record
    try:
        yield maps
    finally:
        for layer, processor in zip(layers, saved):
            del layer.get_attention_scores  # the instance's recorder: the class's method again
            layer.set_processor(processor)


@torch.no_grad()
def _states_at(pipe, prompts: list[str], positions: list[list[int]]) -> torch.Tensor:
    hidden = encode_text(pipe, prompts).hidden.double()
    return torch.cat([hidden[i, pos] for i, pos in enumerate(positions)]).T  # [d, n]


def _weights(pipe) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().double().clone() for name, m in pipe.unet.named_modules() if name.endswith(EDITED)}


def mace_lora(pipe, concepts: list[str], config: TrainConfig, settings: MACEConfig | None = None,
              checkpoint_dir: Path | None = None, identity: dict | None = None) -> LoRA:
    """MACE on `pipe` (left unchanged) erasing each of `concepts`: the refined, fused edit as a LoRA on W0."""
    settings = settings or MACEConfig()
    if not concepts or not all(c.strip() for c in concepts):
        raise SafetuneError("give at least one non-empty --concept prompt")
    require_family(pipe, ("sd", "sdxl"), "mace", "its closed-form refinement and fusion edit cross-attention, whose "
                   "keys and values read the text encoder's output alone; use esd-x on SD3/Flux")
    if settings.mapping == MACEConfig().mapping and sorted(concepts) != sorted(SHAPES_CONCEPTS):
        log.warning("mace: the mapping %r is ShapesWorld's default; for the concept %r give its own "
                    "(--set mapping=...)", settings.mapping, concepts[0])
    templates = SHAPES_TEMPLATES if is_shipped_vocabulary(pipe) else PHOTO_TEMPLATES
    length = pipe.tokenizer.model_max_length
    prompts = {c: [t.format(c) for t in templates] for c in concepts}

    # 1. closed-form refinement of the words around each concept
    w0 = _weights(pipe)
    pairs = [(t.format(c), t.format(settings.mapping)) for c in concepts for t in templates]
    positions = [shared_positions(pipe.tokenizer(a).input_ids, pipe.tokenizer(b).input_ids, length) for a, b in pairs]
    c_old = _states_at(pipe, [a for a, _ in pairs], [pa for pa, _ in positions])
    c_new = _states_at(pipe, [b for _, b in pairs], [pb for _, pb in positions])
    refined = {n: ridge_solve(w @ c_new - w @ c_old, c_old, settings.ridge) for n, w in w0.items()}  # W1 - W0
    cfr = as_lora(refined, settings.rank)

    # 2. one attention-suppressing LoRA per concept, trained on W0 + the refinement
    scheduler = training_scheduler(pipe)
    weights = importance_weights(scheduler.config.num_train_timesteps) if settings.importance_sampling else None
    loras = {}
    with merged(pipe, [(cfr, 1.0)]):
        for k, concept in enumerate(concepts):
            x0 = sample_latents(pipe, [concept] * settings.concept_samples, seed=config.seed + 17 + 1000 * k)
            loss = AttentionSuppressionLoss(x0, encode_text(pipe, prompts[concept]),
                                            concept_positions(pipe, prompts[concept], concept, length), scheduler,
                                            config.batch_size, weights)
            run_identity = {"method": "mace", "concept": concept, "settings": asdict(settings), **(identity or {})}
            loras[concept] = run_stage(denoiser(pipe), loss, config,
                                       checkpoint_dir / f"concept{k}" if checkpoint_dir else None,
                                       desc=f"align mace ({concept})", identity=run_identity)
        w1 = _weights(pipe)

    # 3. fusion: each LoRA's effect on its own concept's prompts, in closed form
    every_token = [list(range(length))] * len(templates)
    contexts = [_states_at(pipe, prompts[concept], every_token) for concept in loras]
    deltas = [{n: lora.delta(f"unet.{n}").double().reshape(w.shape) for n, w in w1.items() if f"unet.{n}" in lora.factors}
              for lora in loras.values()]
    fused = fuse({n: w.shape for n, w in w1.items()}, deltas, contexts, settings.ridge)
    return as_lora({n: refined[n] + fused[n] for n in w1}, settings.rank)


def fuse(shapes: dict[str, torch.Size], deltas: list[dict[str, torch.Tensor]], contexts: list[torch.Tensor],
         ridge: float) -> dict[str, torch.Tensor]:
    """MACE's multi-LoRA fusion: per projection, the one change D minimising
    sum_i |D c_i - dW_i c_i|^2 + ridge |D|^2 (c_i: [d, n_i] text states of concept i's prompts, dW_i its
    LoRA's change of that projection, zero where it has none)."""
    every = torch.cat(contexts, dim=1)
    out = {}
    for name, shape in shapes.items():
        moves = [d[name] @ c if name in d else torch.zeros(shape[0], c.shape[1], dtype=torch.float64)
                 for d, c in zip(deltas, contexts)]
        out[name] = ridge_solve(torch.cat(moves, dim=1), every, ridge)
    return out
