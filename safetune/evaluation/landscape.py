"""The harmful task's landscape around a model, a cheap diagnostic of "deleted": the denoising error
on the concept's own images (its captions as the prompts) before and after a few steps of a simulated
attack, a new rank-r LoRA on attention under Adam (the battery's lora-r* attack in miniature; the
same inner attack as dd's tamper term, stages.losses.lora_attacked_error), averaged over query batches.

Read it against the never-trained model's: a model that draws the concept has a low error; one that
never learned it a moderate error that a few steps barely lower. A defence that only *broke* the
concept's conditioning shows a high error with a steep drop: ground an attacker descends fast
(pushing the harmful error up is what the tamper term's level hinge does; defence.md measures it).

coupling_along_attack reads another geometry a defence may shape, the angle between the harmful and the
retain gradients (dd's tamper=couple), at steps of a real full attack: a coupling that the attack's first
steps undo cannot make that attack self-destruct. conditioning_along_attack reads the third, the condition
numbers of the attention projections' inputs on harmful and retain batches (dd's tamper=condition), the same way;
noising_along_attack the fourth, how far the UNet's block outputs are from Gaussian noise (dd's tamper=noise).
"""
from __future__ import annotations

import torch

from ..checkpoint import batch_randint, step_generator
from ..lora.adapter import target_modules
from ..models.conditioning import (denoiser, denoising_error, denoising_target, encode_images, encode_text, noised,
                                   training_scheduler)
from ..stages.losses import lora_attacked_error


def _query(scheduler, latents: torch.Tensor, cond, batch_size: int, gen) -> tuple:
    """A batch of (x_t, the denoising target, t, cond) drawn from `latents` and their `cond`."""
    idx = batch_randint(len(latents), batch_size, gen)
    xt, noise, t = noised(scheduler, latents[idx], gen)
    return xt, denoising_target(scheduler, latents[idx], noise, t), t, cond[idx]


def harmful_landscape(pipe, images: torch.Tensor, captions: list[str], steps: int = 4, lr: float = 1e-3,
                      rank: int = 4, optimizer: str = "adam", batches: int = 8, batch_size: int = 32,
                      seed: int = 0) -> dict:
    """{"before", "after", "drop"}: means over `batches` query batches of the denoising error on
    (`images`, `captions`) before and after `steps` simulated LoRA steps, and their difference, with
    each batch's values ("per_batch"). The model is not changed; the same seed draws the same query
    batches, noise and timesteps for every model and attack, so two models' numbers are paired."""
    unet = denoiser(pipe)
    scheduler = training_scheduler(pipe)
    latents, cond = encode_images(pipe, images), encode_text(pipe, captions)
    modules = target_modules(unet, "attn")

    error = lambda batch, params: denoising_error(unet, batch, params)  # noqa: E731

    def draw(gen):
        drawn.append(_query(scheduler, latents, cond, batch_size, gen))
        return drawn[-1]

    per_batch = []
    for b in range(batches):  # each batch its own generator: its query is the same whatever the attack
        drawn: list = []  # the query batch is drawn first, then the attack's own batches
        after = lora_attacked_error(error, draw, step_generator(seed, b), unet, steps, lr, rank, modules,
                                    optimizer).item()
        with torch.no_grad():
            before = error(drawn[0], None).item()
        per_batch.append({"before": before, "after": after, "drop": before - after})
    mean = {key: sum(b[key] for b in per_batch) / len(per_batch) for key in ("before", "after", "drop")}
    return {**mean, "per_batch": per_batch}


def coupling_along_attack(pipe, harmful: tuple, clean: tuple, at: tuple[int, ...] = (0, 5, 20, 100),
                          lr: float = 1e-3, batches: int = 4, batch_size: int = 32, seed: int = 0) -> dict:
    """{"at", "cosine"}: the cosine of the harmful and the retain denoising gradients over the UNet's weights
    (stages.coupling.gradient_cosine, what dd's tamper=couple pushes down), a mean over `batches` fixed query
    pairs, at each step of `at` of a full fine-tuning attack on `harmful` (_along_full_attack). Does a coupling
    made at the defended weights survive the attack's steps?"""
    from ..stages.coupling import gradient_cosine

    def cosine(unet, params, queries):
        losses = [((lambda h=h: denoising_error(unet, h)), (lambda r=r: denoising_error(unet, r))) for h, r in queries]
        return sum(gradient_cosine(pair, params).item() for pair in losses) / len(queries)

    readings = _along_full_attack(pipe, harmful, clean, at, lr, batches, batch_size, seed, cosine)
    return {"at": sorted(at), "cosine": readings}


def conditioning_along_attack(pipe, harmful: tuple, clean: tuple, at: tuple[int, ...] = (0, 5, 20, 100),
                              lr: float = 1e-3, batches: int = 4, batch_size: int = 32, seed: int = 0) -> dict:
    """{"at", "harmful", "retain", "gap", "floored_harmful", "floored_retain"}: the mean log condition number of
    the UNet's attention projections' inputs (stages.ill_conditioning, what dd's tamper=condition widens) on the
    harmful and the retain query batches, their gap, and the share of inputs whose smallest eigenvalue is below
    the measure's ridge (it reads the ridge there), means over `batches` fixed query pairs, at each step of `at`
    of a full fine-tuning attack on `harmful` (_along_full_attack). Does an ill-conditioning made at the defended
    weights survive it?"""
    from ..stages.ill_conditioning import attention_inputs, floored_share, log_condition_number

    modules = target_modules(denoiser(pipe), "attn")

    def sides(unet, params, queries):
        readings = []
        for side in zip(*queries):  # the harmful queries, then the retain ones
            with torch.no_grad():
                inputs = [attention_inputs(unet, modules, lambda q=q: denoising_error(unet, q)) for q in side]
                readings.append((sum(torch.stack([log_condition_number(x) for x in xs]).mean().item()
                                     for xs in inputs) / len(side),
                                 sum(floored_share(xs) for xs in inputs) / len(side)))
        return readings

    readings = _along_full_attack(pipe, harmful, clean, at, lr, batches, batch_size, seed, sides)
    (harm, floored_harm), (retain, floored_retain) = (zip(*side) for side in zip(*readings))
    return {"at": sorted(at), "harmful": list(harm), "retain": list(retain),
            "gap": [h - r for h, r in zip(harm, retain)], "floored_harmful": list(floored_harm),
            "floored_retain": list(floored_retain)}


def noising_along_attack(pipe, harmful: tuple, clean: tuple, at: tuple[int, ...] = (0, 5, 20, 100),
                         lr: float = 1e-3, batches: int = 4, batch_size: int = 32, seed: int = 0) -> dict:
    """{"at", "harmful", "retain"}: the mean over the UNet's blocks of the squared MMD between their outputs and
    Gaussian noise (stages.noising, what dd's tamper=noise pulls down on harmful batches) on the harmful and the
    retain query batches, means over `batches` fixed query pairs (the noise drawn alike at every reading), at each
    step of `at` of a full fine-tuning attack on `harmful` (_along_full_attack). Does a noising made at the
    defended weights survive it?"""
    from ..stages.noising import noise_discrepancy

    def sides(unet, params, queries):
        with torch.no_grad():
            return [sum(noise_discrepancy(unet, lambda q=q: denoising_error(unet, q), step_generator(seed, 20_000 + b))
                        .item() for b, q in enumerate(side)) / len(side) for side in zip(*queries)]

    readings = _along_full_attack(pipe, harmful, clean, at, lr, batches, batch_size, seed, sides)
    harm, retain = zip(*readings)
    return {"at": sorted(at), "harmful": list(harm), "retain": list(retain)}


def _along_full_attack(pipe, harmful: tuple, clean: tuple, at: tuple[int, ...], lr: float, batches: int,
                       batch_size: int, seed: int, read) -> list:
    """read(unet, its trained weights, `batches` fixed (harmful, retain) query pairs) at each step of `at` (sorted)
    of a full fine-tuning attack on `harmful` (every UNet weight, AdamW at `lr`, weight decay 0, as the battery's
    full attack; `harmful`, `clean`: (images, captions)). A copy of the UNet is attacked; `pipe` is not changed."""
    import copy

    unet = copy.deepcopy(denoiser(pipe)).requires_grad_(True)
    scheduler = training_scheduler(pipe)
    (harm, harm_cond), (retain, retain_cond) = ((encode_images(pipe, images), encode_text(pipe, captions))
                                                for images, captions in (harmful, clean))

    draw = lambda latents, cond, gen: _query(scheduler, latents, cond, batch_size, gen)  # noqa: E731
    queries = [(draw(harm, harm_cond, gen), draw(retain, retain_cond, gen))
               for gen in (step_generator(seed, 10_000 + b) for b in range(batches))]
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    done, readings = 0, []
    for step in sorted(at):
        for attack_step in range(done, step):  # the attack's steps since the last reading
            optimizer.zero_grad()
            denoising_error(unet, draw(harm, harm_cond, step_generator(seed, attack_step))).backward()
            optimizer.step()
        done = step
        readings.append(read(unet, params, queries))
    return readings
