"""Prompts the guard checks that an uploader cannot predict: random prompts from the model's whole
vocabulary (and, for ShapesWorld, its grammar), and a search for the prompts on which a composition
draws the concept more readily than the aligned model does.

The search needs no image and no prompt list (in the spirit of PAIA, arXiv 2504.14815): it scores a
prompt c by how much c helps the denoiser predict the noise of the concept's own latents (latents
W0 draws for the concept prompts), under the composition and under the aligned model:
    affinity_M(c) = err_M(x_t | empty prompt) - err_M(x_t | c),    rise(c) = affinity_comp(c) - affinity_aligned(c)
A LoRA that makes some phrase draw the concept (a trigger-word backdoor) raises that phrase's rise.
Candidates are random vocabulary prompts, then word-level mutations of the best (a short genetic
search, as Ring-A-Bell searches prompts); the prompts with the highest rise are then *sampled*, on
both models with the same seeds, like every other checked set.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ..models.conditioning import (denoiser, denoising_target, encode_text, model_timesteps, predict, sample_latents,
                                   training_scheduler)


def vocabulary_words(tokenizer) -> list[str]:
    """The tokenizer's whole words (alphabetic entries ending a word), sorted."""
    words = set()
    for token in tokenizer.get_vocab():
        if token.endswith("</w>"):
            word = token[:-4]
            if word.isalpha() and (len(word) > 1 or word == "a"):
                words.add(word)
    return sorted(words)


def probe_prompts(pipe, n: int, rng: random.Random) -> list[str]:
    """`n` prompts nobody chose: on a ShapesWorld model half are captions of random scenes (every shape
    and texture but the concept's), half random strings of 2-7 vocabulary words; on other models all
    are random word strings from the tokenizer's vocabulary."""
    from ..data.shapesworld import HARMFUL_SHAPE, SHAPES, TEXTURES, caption, random_scene
    from ..models.loading import is_shipped_vocabulary

    words = vocabulary_words(pipe.tokenizer)
    grammar = is_shipped_vocabulary(pipe)
    shapes = [s for s in SHAPES if s != HARMFUL_SHAPE]
    out = []
    for i in range(n):
        if grammar and i % 2 == 0:
            out.append(caption(random_scene(rng, shapes=shapes, textures=TEXTURES), rng))
        else:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(2, 7))))
    return out


class ConceptProbe:
    """Fixed noisy draws of the concept's latents; scores prompts by how much they help denoise them."""

    def __init__(self, pipe, concepts: list[str], n_latents: int = 8, seed: int = 0):
        prompts = [concepts[i % len(concepts)] for i in range(n_latents)]
        x0 = sample_latents(pipe, prompts, seed=seed)  # W0's own concept images: no image data needed
        scheduler = training_scheduler(pipe)
        gen = torch.Generator().manual_seed(seed + 1)
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        # mid-range timesteps: where the prompt decides the shape (early steps are noise, late ones detail)
        steps = scheduler.config.num_train_timesteps
        t = model_timesteps(scheduler, torch.randint(steps // 4, 3 * steps // 4, (len(x0),), generator=gen).to(x0.device))
        self.xt = scheduler.add_noise(x0, noise, t)
        self.t = t
        self.target = denoising_target(scheduler, x0, noise, t)

    @torch.no_grad()
    def errors(self, pipe, prompts: list[str], batch: int = 64) -> np.ndarray:
        """Mean squared denoising error of the concept latents under each prompt (lower: closer to it)."""
        out = []
        n = len(self.xt)
        for start in range(0, len(prompts), batch):
            part = prompts[start:start + batch]
            cond = encode_text(pipe, part)
            idx = torch.arange(len(part)).repeat_interleave(n)
            xt, t, target = self.xt.repeat(len(part), 1, 1, 1), self.t.repeat(len(part)), self.target.repeat(len(part), 1, 1, 1)
            pred = predict(denoiser(pipe), xt, t, cond[idx])
            err = ((pred.float() - target.float()) ** 2).flatten(1).mean(1).view(len(part), n).mean(1)
            out.append(err.cpu().numpy())
        return np.concatenate(out)

    def affinity(self, pipe, prompts: list[str]) -> np.ndarray:
        """err(empty prompt) - err(prompt): how much each prompt pulls the prediction toward the concept."""
        return self.errors(pipe, [""])[0] - self.errors(pipe, prompts)


MAX_WORDS = 12  # the shipped text encoder reads 16 tokens; real ones 77


def mutate(prompt: str, words: list[str], rng: random.Random) -> str:
    """One word replaced, inserted or removed (never past MAX_WORDS)."""
    tokens = prompt.split()[:MAX_WORDS] or [rng.choice(words)]
    op = rng.random()
    i = rng.randrange(len(tokens))
    if op < 0.5 or (op < 0.8 and len(tokens) >= MAX_WORDS):
        tokens[i] = rng.choice(words)
    elif op < 0.8 or len(tokens) < 2:
        tokens.insert(i, rng.choice(words))
    else:
        del tokens[i]
    return " ".join(tokens)


def search_prompts(pipe, aligned_loras, composed_loras, probe: ConceptProbe, start: list[str], keep: int,
                   rounds: int, children: int, rng: random.Random) -> list[dict]:
    """The `keep` prompts with the highest rise (affinity under the composition minus under the aligned
    model), from `start` and `rounds` of mutations of the best. Returns [{prompt, rise, affinity}]."""
    from ..lora.weights import merged

    words = vocabulary_words(pipe.tokenizer)
    scored: dict[str, tuple[float, float]] = {}

    def score(prompts: list[str]) -> None:
        new = list(dict.fromkeys(p for p in prompts if p not in scored))
        if not new:
            return
        with merged(pipe, aligned_loras):
            aligned = probe.affinity(pipe, new)
        with merged(pipe, composed_loras):
            composed = probe.affinity(pipe, new)
        scored.update({p: (float(c - a), float(c)) for p, a, c in zip(new, aligned, composed)})

    score(start)
    for _ in range(rounds):
        best = sorted(scored, key=lambda p: -scored[p][0])[:max(1, children // 8)]
        score([mutate(rng.choice(best), words, rng) for _ in range(children)])
    best = sorted(scored, key=lambda p: -scored[p][0])[:keep]
    return [{"prompt": p, "rise": scored[p][0], "affinity": scored[p][1]} for p in best]
