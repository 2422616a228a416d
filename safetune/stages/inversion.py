"""Concept inversion (Pham et al. 2023, "Circumventing Concept Erasure Methods for Text-to-Image
Generative Models", arXiv 2308.01508): the attack that learns the embedding of one new token from the
concept's images, every weight of the model frozen, then prompts with that token.

An erasure that only cuts the concept's words from what the UNet hears (ESD-x edits cross-attention
on the concept's prompts) is undone by a new word the edit never saw; a model that never learned
the concept has nothing for the token to point at. The learned embedding is saved as diffusers'
textual-inversion file ({token: vector}), which plain `pipe.load_textual_inversion()` reads.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..checkpoint import batch_randint
from ..config import TrainConfig
from ..errors import SafetuneError
from ..models.conditioning import (denoiser, require_family, Cond, caption_ids, denoising_target, encode_images, noised, predict,
                                   training_scheduler)
from ..train import train

TOKEN = "<concept>"
INIT_WORD = "circle"  # the new token starts as a shape every model draws (not "shape": it evokes the star)


class InversionLoss:
    """The denoising loss on the concept's images, captioned with the new token; the only trainable
    parameter is the token's input embedding (`vector`), substituted by a hook on the text encoder's
    token embedding, so every other token and weight stays as it was."""

    def __init__(self, pipe, latents: torch.Tensor, captions: list[str], token_id: int, batch_size: int):
        require_family(pipe, ("sd",), "concept inversion", "it learns a token of one CLIP text encoder")
        embedding = pipe.text_encoder.get_input_embeddings()
        self.vector = torch.nn.Parameter(embedding.weight[token_id].detach().clone())
        self.text_encoder, self.latents, self.batch_size = pipe.text_encoder, latents, batch_size
        self.input_ids = caption_ids(pipe, captions)
        self.scheduler = training_scheduler(pipe)
        self.token_id = token_id
        self._hook = embedding.register_forward_hook(self._substitute)

    def _substitute(self, _module, inputs, output):
        mask = (inputs[0] == self.token_id).unsqueeze(-1)
        return torch.where(mask, self.vector.to(output.dtype), output)

    def parameters(self) -> list[torch.nn.Parameter]:
        """What the trainer optimises: the token's embedding alone."""
        return [self.vector]

    def close(self) -> None:
        """Write the learned vector into the embedding table and drop the hook: the pipeline then
        draws the token on its own."""
        self._hook.remove()
        with torch.no_grad():
            self.text_encoder.get_input_embeddings().weight[self.token_id] = self.vector.detach()

    def __call__(self, unet, step, gen):
        idx = batch_randint(len(self.latents), self.batch_size, gen)
        x0 = self.latents[idx]
        xt, noise, t = noised(self.scheduler, x0, gen)
        hidden = self.text_encoder(self.input_ids[idx].to(x0.device))[0]
        target = denoising_target(self.scheduler, x0, noise, t)
        return F.mse_loss(predict(unet, xt, t, Cond(hidden)).float(), target.float())


def add_token(pipe, token: str = TOKEN, init_word: str = INIT_WORD) -> int:
    """Add `token` to the tokenizer and a row for it to the text encoder, initialised as
    `init_word`; returns its id. Refuses a token the tokenizer already has."""
    tokenizer = pipe.tokenizer
    if tokenizer.add_tokens([token]) == 0:
        raise SafetuneError(f"concept inversion: the tokenizer already has {token!r}; choose another token")
    pipe.text_encoder.resize_token_embeddings(len(tokenizer))
    token_id = tokenizer.convert_tokens_to_ids(token)
    init = tokenizer(init_word, add_special_tokens=False).input_ids
    with torch.no_grad():
        weight = pipe.text_encoder.get_input_embeddings().weight
        weight[token_id] = weight[init[0]] if init else weight.mean(0)
    return token_id


def with_token(text: str, words: tuple[str, ...], token: str = TOKEN) -> str:
    """The caption or prompt with every phrase of `words` replaced by the token (longest first)."""
    for phrase in sorted(words, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(phrase)}\b", token, text)
    return text


def invert(pipe, images: torch.Tensor, texts: list[str], words: tuple[str, ...], config: TrainConfig,
           token: str = TOKEN, on_save: Callable | None = None, desc: str = "concept inversion") -> torch.Tensor:
    """Learn `token` on the concept's images (captions with `words` replaced by it), every weight
    frozen; leaves the token in `pipe` (its tokenizer and embedding table) and returns its vector.
    `on_save` snapshots see the token as learned so far."""
    captions = [with_token(t, words, token) for t in texts]
    if not any(token in c for c in captions):
        raise SafetuneError(f"concept inversion: no caption names the concept ({', '.join(words)}); give the "
                            "concept's images with captions that name it")
    latents = encode_images(pipe, images)
    loss = InversionLoss(pipe, latents, captions, add_token(pipe, token), config.batch_size)
    try:
        train(denoiser(pipe), loss, replace(config, mode="token", train_text_encoder=False), on_save=on_save, desc=desc)
    finally:
        loss.close()
    return loss.vector.detach().clone()


def save_token(path: str | Path, token: str, vector: torch.Tensor) -> None:
    """diffusers' textual-inversion file: {token: vector}, read by `pipe.load_textual_inversion()`."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    with atomic_path(Path(path)) as tmp:
        save_file({token: vector.detach().cpu().contiguous()}, str(tmp))
