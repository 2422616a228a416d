"""Distort-and-distill (`--method dd`): a safety alignment that a malicious fine-tuning relearns no
faster than a model that never learned the concept. Beyond the papers; the choices are ours.

Why: erasure methods (ESD, SDD, LT/NG) move a model a short way from the original and leave what it knew in its
weights: a few fine-tuning steps on harmful data bring it back (dormant, not deleted). A model retrained without the
concept relearns it slowly. In vision classifiers, resistance to relearning tracks the distance from the original
weights and the absence of a low-loss straight path back to them ("From Dormant to Deleted", arXiv 2505.22310: the
question, and a weight distortion for classifiers). The closest recipe is UNDO ("Distillation Robustifies
Unlearning", arXiv 2506.06278: unlearn, add noise to the weights, distil from the unlearned teacher; for language
models it matches retraining from scratch at 60-80% of its compute). We adapt both to diffusion models:

1. distort: every weight of the UNet (and the text encoder) becomes
       w <- shrink * w + noise * std(w) * N(0, 1)
   (shrink-and-perturb; shrink 1 is their weight distortion, shrink 0 a fresh std-matched init);
2. distill: the distorted model is trained, full weights, to match the original model (the teacher, frozen) on the
   retain set only, captions dropped 10% of the time so that classifier-free guidance still works: student(x_t, c) ->
   teacher(x_t, c) on clean images x_0 and their captions c. The teacher's targets carry its clean knowledge back at
   a fraction of pretraining's cost; nothing carries the concept back: no harmful image, caption or target is seen.
3. optionally (concept_weight > 0), an ESD-style anchor on the concept prompts: student(x_t, concept) -> teacher(x_t,
   "") on the teacher's own concept samples, so that the concept prompts land on the unconditional prediction instead
   of whatever the distortion left there;
4. optionally (harm_margin > 0, with harmful data), a tamper term in the spirit of TAR/IMMA, of the shape `tamper`
   names (DistillConfig says each): level pushes the harmful images' denoising error after attack_sim_steps simulated
   malicious steps (stages.losses: full; a new LoRA on attention, IMMA's inner adaptation; an offset of the prompt's
   text states; each step lr * sign(grad) or the attacker's own Adam) up to harm_margin and no further; drop bounds
   the attack's progress (a flat harmful landscape); match holds the level; anchor pulls the harmful prediction after
   the attack to the model's own before it, as ResAlign (arXiv 2507.16302) and TAR (arXiv 2408.00761) measure their
   safety objectives; couple pushes the harmful and retain gradients apart (SEAM's self-destruct, stages.coupling);
   condition ill-conditions the attention inputs on harmful batches (stages.ill_conditioning); noise pulls the block
   outputs on harmful batches to Gaussian noise (RepNoise's, stages.noising). attack_sim_implicit adds ResAlign's
   implicit (Moreau-envelope) correction for a simulated LoRA; attack_sim_steps_max and attack_sim_lr_max draw each
   attack's size from a range (as ResAlign and TAR sample attacks); attack_sim_trajectory reads along the attack (as
   TAR reads its loss); tamper_from starts the term part-way (TAR's tamper-resistance phase follows its unlearning);
   tamper_projection removes the part of its gradient that opposes the retain loss's. On dev the drop hinge was met
   by drawing the concept, the level hinge by breaking its words, every anchor against a simulated full attack made
   its prompts draw noise (defence.md);
5. optionally (hold_weight > 0), a retain target on the harmful captions before any attack: student(x_t, caption) ->
   teacher(x_t, the caption without its unseen words) on retain images, so that what else the concept's prompts name
   (colour, place, size) is still drawn, not the concept.

The text encoder is distorted and distilled too (`text_encoder`): a prompt's words that never occur in the retain
captions (the concept's names and its implicit phrasings alike) get no distillation target, and distortion alone
leaves their embeddings where the original had them (on the shipped model: dd's "star" row has cosine 0.82 to the
original's, the never-trained model's 0.49); `forget_unseen_words` re-draws those rows from the text encoder's
initialisation, as in a model that never read the words. The teacher is the model being aligned unless `teacher`
names another (sharing its VAE): UNDO distils from the unlearned model, and a teacher that never drew the concept
(the never-trained model) tells how much of what an attack relearns the original's own predictions on clean
images pass on (on dev, none is shown: docs/results/defence.md).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import batch_rand, batch_randint
from ..config import DistillConfig, TrainConfig
from ..errors import SafetuneError
from ..models.conditioning import (Cond, FAMILY_NAMES, caption_ids, denoiser, denoising_error, denoising_target,
                                   encode_images, encode_text, family_of, noised, predict, sample_latents,
                                   training_scheduler)
from ..lora.adapter import target_modules
from ..train import run_stage
from .coupling import gradient_cosine
from .distortion import distort_, forget_unseen_words_, without_unseen_words
from .ill_conditioning import input_log_conditions
from .losses import (attacked_error, full_attack, lora_attacked_error, text_attacked_error, trajectory_points,
                     without_conflict)
from .noising import noise_discrepancy

# attack_sim=mixed draws one of the battery's attacks per step: (kind, LoRA rank)
MIXED = (("full", 0), ("lora", 1), ("lora", 4), ("lora", 16), ("inversion", 0))


class RetainDistillLoss:
    """student(x_t, c) -> teacher(x_t, c) on retain images, plus the optional concept, hold and tamper
    terms (module docstring). The student's prompts go through `self.text_encoder` when the trainer
    trains it (set by the trainer), else through the cached `student_cond`."""

    def __init__(self, latents, input_ids, teacher_cond: Cond, student_cond: Cond, teacher_uncond: Cond,
                 scheduler, batch_size: int, teacher_unet, config: DistillConfig, uncond_ids=None,
                 student_uncond: Cond | None = None, concept_latents=None, concept_ids=None,
                 student_concept: Cond | None = None, harmful: tuple | None = None,
                 harmful_anchor: tuple | None = None, held_target: Cond | None = None):
        self.latents, self.input_ids = latents, input_ids
        self.teacher_cond, self.student_cond, self.teacher_uncond = teacher_cond, student_cond, teacher_uncond
        self.uncond_ids, self.student_uncond = uncond_ids, student_uncond
        self.concept_latents, self.concept_ids, self.student_concept = concept_latents, concept_ids, student_concept
        self.scheduler, self.batch_size, self.teacher, self.config = scheduler, batch_size, teacher_unet, config
        self.harmful = harmful  # (latents, token ids, cached cond) of harmful images, for the tamper term
        self.harmful_anchor = harmful_anchor  # (token ids, cached cond) of their anchor captions (anchor_target)
        self.held_target = held_target  # the teacher's cond of the harmful captions without unseen words (hold)
        self._attention: list[str] | None = None  # the UNet's attention projections (a simulated LoRA attack's)
        self.text_encoder = None
        self.last: dict[str, float] = {}

    def _student_cond(self, ids: torch.Tensor, cached: Cond, idx) -> Cond:
        if self.text_encoder is not None:
            return Cond(self.text_encoder(ids.to(self.latents.device))[0])
        return cached[idx] if idx is not None else cached

    def __call__(self, unet, step, gen):
        cfg = self.config
        idx = batch_randint(len(self.latents), self.batch_size, gen)
        drop = batch_rand(self.batch_size, gen) < cfg.caption_dropout
        xt, _, t = noised(self.scheduler, self.latents[idx], gen)
        teacher_cond = self.teacher_cond[idx]
        teacher_cond.hidden[drop] = self.teacher_uncond.hidden[0]
        ids = self.input_ids[idx].clone()
        ids[drop] = self.uncond_ids[0]
        if self.text_encoder is not None:
            student_cond = self._student_cond(ids, None, None)
        else:
            student_cond = self.student_cond[idx]
            student_cond.hidden[drop] = self.student_uncond.hidden[0]
        with torch.no_grad():
            target = predict(self.teacher, xt, t, teacher_cond)
        loss = F.mse_loss(predict(unet, xt, t, student_cond).float(), target.float())
        self.last = {"retain": loss.item()}
        if cfg.concept_weight > 0 and self.concept_latents is not None:
            cidx = batch_randint(len(self.concept_latents), self.batch_size, gen)
            kidx = batch_randint(len(self.concept_ids), self.batch_size, gen)
            xc, _, tc = noised(self.scheduler, self.concept_latents[cidx], gen)
            with torch.no_grad():
                anchor = predict(self.teacher, xc, tc, self.teacher_uncond.repeat(self.batch_size))
            cond = self._student_cond(self.concept_ids[kidx], self.student_concept, kidx)
            concept = F.mse_loss(predict(unet, xc, tc, cond).float(), anchor.float())
            self.last["concept"] = concept.item()
            loss = loss + cfg.concept_weight * concept
        if cfg.hold_weight > 0:
            hold = self._hold(unet, gen)
            self.last["hold"] = hold.item()
            loss = loss + cfg.hold_weight * hold
        if cfg.harm_margin > 0 and self.harmful is not None and step >= cfg.tamper_from:
            shapes = {"couple": self._coupled, "condition": self._conditioned, "noise": self._noised}
            excess = shapes.get(cfg.tamper, self._excess)(unet, gen)
            self.last["hinge_active"] = float(excess.item() > 0)  # the share of steps the tamper term acts
            tamper = cfg.harm_weight * (excess.abs() if cfg.tamper == "match" else F.relu(excess))
            if cfg.tamper_projection and tamper.item() > 0:  # the term acts (match: on either side)
                trained = [*unet.parameters(), *(self.text_encoder.parameters() if self.text_encoder else ())]
                return without_conflict(loss, tamper, trained, self.last)
            loss = loss + tamper
        return loss

    def _excess(self, unet, gen) -> torch.Tensor:
        """How far the simulated attack's end is on the wrong side of harm_margin (tamper level, drop, anchor)."""
        cfg = self.config
        before, attacked = self._attacked(unet, gen)
        self.last["harm_attacked"] = attacked.item()
        if cfg.tamper == "drop":
            self.last["harm_drop"] = (before - attacked).item()
            return before - attacked - cfg.harm_margin
        if cfg.tamper == "anchor":  # a distance to pull down, not an error to push up
            return attacked - cfg.harm_margin
        return cfg.harm_margin - attacked

    def _coupled(self, unet, gen) -> torch.Tensor:
        """cos(harmful gradient, retain gradient) + harm_margin in the UNet's trained weights (tamper=couple), here or
        after a simulated full attack (Meta-Unlearning's reading; first-order), or its mean at points along it."""
        if not self.config.attack_sim_steps:
            trained = [p for p in unet.parameters() if p.requires_grad]
            readings = [gradient_cosine(self._harm_and_retain_errors(unet, gen), trained)]
        else:  # read at the attack's weights, not at the defended ones
            steps, lr, optimizer = self._attack_configuration(gen)
            at = trajectory_points(steps, self.config.attack_sim_trajectory)
            error = lambda batch, weights: denoising_error(unet, batch, weights)  # noqa: E731
            readings = [gradient_cosine(self._harm_and_retain_errors(unet, gen, params), list(params.values()))
                        for k, params in full_attack(error, self._draw_harm, gen, unet, steps, lr, optimizer)
                        if k in at]
        cos = torch.stack(readings).mean()
        self.last["coupling_cos"] = cos.item()
        return cos + self.config.harm_margin

    def _conditioned(self, unet, gen) -> torch.Tensor:
        """harm_margin less the mean gap of log condition numbers (harmful minus retain batches) of the attention
        projections' inputs (tamper=condition, stages.ill_conditioning)."""
        self._attention = self._attention or target_modules(unet, "attn")
        harmful, retain = (input_log_conditions(unet, self._attention, forward)
                           for forward in self._harm_and_retain_errors(unet, gen))  # each error's forward is read
        gap = (harmful - retain).mean()
        self.last["condition_gap"] = gap.item()
        return self.config.harm_margin - gap

    def _noised(self, unet, gen) -> torch.Tensor:
        """The block outputs' mean MMD to Gaussian noise on a harmful batch, less harm_margin (tamper=noise)."""
        harm = self._draw_harm(gen)
        self.last["noise_mmd"] = (mmd := noise_discrepancy(unet, lambda: denoising_error(unet, harm), gen)).item()
        return mmd - self.config.harm_margin

    def _harm_and_retain_errors(self, unet, gen, params=None):
        """The denoising errors a malicious and a benign fine-tuning descend, on fresh batches, at `params`: the
        coupling's two gradients, the conditioning's two forward passes."""
        harm = self._draw_harm(gen)
        idx = batch_randint(len(self.latents), self.batch_size, gen)
        x0 = self.latents[idx]
        xt, noise, t = noised(self.scheduler, x0, gen)

        def retain_error():
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.tamper_text_encoder):  # as _draw_harm
                cond = self._student_cond(self.input_ids[idx], self.student_cond, idx)
            return denoising_error(unet, (xt, denoising_target(self.scheduler, x0, noise, t), t, cond), params)

        return (lambda: denoising_error(unet, harm, params)), retain_error

    def _hold(self, unet, gen) -> torch.Tensor:
        """student(x_t, harmful caption) -> teacher(x_t, the caption without its unseen words) on retain
        images (never the concept's: the target cannot teach it), so that its prompts draw the rest."""
        idx = batch_randint(len(self.held_target), self.batch_size, gen)
        xt, _, t = noised(self.scheduler, self.latents[batch_randint(len(self.latents), self.batch_size, gen)], gen)
        with torch.no_grad():
            target = predict(self.teacher, xt, t, self.held_target[idx])
        cond = self._student_cond(self.harmful[1][idx], self.harmful[2], idx)
        return F.mse_loss(predict(unet, xt, t, cond).float(), target.float())

    def _attacked(self, unet, gen) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The harmful error on a query batch before (tamper=drop; else None) and after the simulated
        attack of `attack_sim` (mixed: drawn per step); tamper=anchor's query: _draw_anchor."""
        cfg = self.config
        kind, rank = cfg.attack_sim, cfg.attack_sim_rank
        if kind == "mixed":
            kind, rank = MIXED[int(batch_randint(len(MIXED), 1, gen)[0])]
        error = lambda batch, params: denoising_error(unet, batch, params)  # noqa: E731
        drawn = []  # each inner attack draws its query batch first

        def draw(gen):
            drawn.append(self._draw_anchor(unet, gen) if cfg.tamper == "anchor" and not drawn else self._draw_harm(gen))
            return drawn[-1]

        (steps, lr, optimizer), points = self._attack_configuration(gen), cfg.attack_sim_trajectory
        if kind == "full" or not steps:
            after = attacked_error(error, draw, gen, unet, steps, lr, optimizer, points)
        elif kind == "inversion":
            after = text_attacked_error(error, draw, gen, steps, lr, optimizer, points)
        else:
            self._attention = self._attention or target_modules(unet, "attn")
            after = lora_attacked_error(error, draw, gen, unet, steps, lr, rank, self._attention, optimizer,
                                        cfg.attack_sim_implicit, cfg.attack_sim_implicit_terms, self.last, points)
        return (error(drawn[0], None) if cfg.tamper == "drop" else None), after

    def _attack_configuration(self, gen) -> tuple[int, float, str]:
        """The simulated attack's (steps, lr, optimiser): fixed, or drawn per outer step within
        attack_sim_steps..attack_sim_steps_max and attack_sim_lr..attack_sim_lr_max (log-uniform), so
        that the defended model meets attacks of every size the battery may bring, not one."""
        cfg = self.config
        steps, lr = cfg.attack_sim_steps, cfg.attack_sim_lr
        if cfg.attack_sim_steps_max > steps:
            steps += int(batch_randint(cfg.attack_sim_steps_max - steps + 1, 1, gen)[0])
            self.last["sim_steps"] = float(steps)
        if cfg.attack_sim_lr_max > lr > 0:
            lr *= (cfg.attack_sim_lr_max / lr) ** float(batch_rand(1, gen)[0])
            self.last["sim_lr"] = lr
        return steps, lr, cfg.attack_sim_optimizer

    def _draw_harm(self, gen, idx=None):
        latents, ids, cond = self.harmful
        idx = batch_randint(len(latents), self.batch_size, gen) if idx is None else idx
        xt, noise, t = noised(self.scheduler, latents[idx], gen)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.tamper_text_encoder):
            return xt, noise, t, self._student_cond(ids[idx], cond, idx)

    def _draw_anchor(self, unet, gen):
        """A harmful query batch (tamper=anchor) whose target is the model's own prediction before the
        simulated attack, without gradient: for the empty prompt (SDD's target, Kim et al. 2023) or, with
        anchor_target=caption, for the caption without its unseen words (concept ablation's anchor, Kumari
        et al. 2023: what else it names still drawn; the empty target drew noise for them on dev)."""
        idx = batch_randint(len(self.harmful[0]), self.batch_size, gen)
        xt, _, t, cond = self._draw_harm(gen, idx)
        with torch.no_grad():
            if self.harmful_anchor is None:
                target = self._student_cond(self.uncond_ids, self.student_uncond, None).repeat(len(xt))
            else:
                target = self._student_cond(self.harmful_anchor[0][idx], self.harmful_anchor[1], idx)
            return xt, predict(unet, xt, t, target), t, cond


def teacher_pipeline(pipe, teacher: str | None):
    """The pipeline whose predictions the student is distilled to: `pipe` itself (before its
    distortion) when `teacher` is None, else that model, refused unless it shares `pipe`'s family and
    VAE (the student's latents are the targets' inputs: another VAE is another latent space)."""
    if not teacher:
        return pipe
    from ..models.loading import load_pipeline

    weight = next(denoiser(pipe).parameters())
    try:
        other = load_pipeline(teacher, device=weight.device, dtype=weight.dtype)
    except SafetuneError as error:
        raise SafetuneError(f"teacher={teacher}: {error}") from None
    if family_of(other) != family_of(pipe):
        raise SafetuneError(f"teacher={teacher}: a {FAMILY_NAMES[family_of(other)]} model, the aligned one is "
                            f"{FAMILY_NAMES[family_of(pipe)]}; give a teacher of the same family")
    ours, theirs = pipe.vae.state_dict(), other.vae.state_dict()
    if ours.keys() != theirs.keys() or any(not torch.equal(ours[k], theirs[k]) for k in ours):
        raise SafetuneError(f"teacher={teacher}: its VAE differs from the aligned model's, so its predictions are "
                            "in another latent space; give a teacher pretrained on the same VAE (safetune "
                            "pretrain-shapes --set vae_from=<the model>), or drop teacher")
    return other


def distill_train(pipe, clean: tuple, concepts: list[str], distill, config: TrainConfig,
                  checkpoint_dir: Path | None = None, on_save=None, identity: dict | None = None,
                  harmful: tuple | None = None) -> None:
    """Distort-and-distill (module docstring): the UNet (and text encoder) of `pipe` are distorted, then
    trained in place, full weights, to match the undistorted model on the retain set `clean`
    (`harmful`: images and captions for the optional tamper term, harm_margin > 0)."""
    if distill.text_encoder and family_of(pipe) != "sd":
        raise SafetuneError(f"dd: distilling the text encoders of {FAMILY_NAMES[family_of(pipe)]} is not supported yet; "
                            "give --set text_encoder=false (distort and distill the denoiser alone)")
    if (distill.harm_margin > 0 or distill.hold_weight > 0) and harmful is None:
        raise SafetuneError("harm_margin > 0 and hold_weight > 0 need harmful data (--harmful-data)")
    distill.validate(config.steps)
    images, texts = clean
    source = teacher_pipeline(pipe, distill.teacher)
    teacher = copy.deepcopy(denoiser(source)).requires_grad_(False).eval()
    latents = encode_images(pipe, images)
    teacher_cond, teacher_uncond = encode_text(source, texts), encode_text(source, [""])
    held = encode_text(source, without_unseen_words(harmful[1], texts)) if distill.hold_weight > 0 else None
    del source  # its denoiser copied, its captions encoded: nothing else of it is needed
    concept_latents = None
    if distill.concept_weight > 0:
        prompts = [concepts[i % len(concepts)] for i in range(128)]
        concept_latents = sample_latents(pipe, prompts, seed=config.seed + 17)
    def ids(captions):  # token ids feed a distilled text encoder; without one, a placeholder per caption
        return caption_ids(pipe, captions) if distill.text_encoder else torch.zeros(len(captions), 1, dtype=torch.long)

    retain_ids, uncond_ids = ids(texts), ids([""])
    if distill.unet:
        distort_(denoiser(pipe), distill.noise, distill.shrink, config.seed)
    if distill.text_encoder:
        distort_(pipe.text_encoder, distill.noise, distill.shrink, config.seed + 1)
        if distill.forget_unseen_words:
            forget_unseen_words_(pipe.text_encoder, torch.cat([retain_ids, uncond_ids]), config.seed + 2)
    harm = harm_anchor = None  # the VAE is never distorted; the captions are encoded by the (distorted) student
    if distill.harm_margin > 0 or held is not None:
        harm = (encode_images(pipe, harmful[0]), ids(harmful[1]), encode_text(pipe, harmful[1]))
        if distill.anchor_target == "caption":
            anchors = without_unseen_words(harmful[1], texts)
            harm_anchor = (ids(anchors), encode_text(pipe, anchors))
    loss = RetainDistillLoss(latents, retain_ids, teacher_cond, encode_text(pipe, texts), teacher_uncond,
                             training_scheduler(pipe), config.batch_size, teacher, distill,
                             uncond_ids=uncond_ids, student_uncond=encode_text(pipe, [""]),
                             concept_latents=concept_latents, concept_ids=ids(concepts),
                             student_concept=encode_text(pipe, concepts), harmful=harm, harmful_anchor=harm_anchor,
                             held_target=held)
    run_stage(denoiser(pipe), loss, replace(config, mode="full", train_text_encoder=distill.text_encoder), checkpoint_dir,
              on_save=on_save, desc="align dd", text_encoders=[pipe.text_encoder],
              identity={"distill": asdict(distill), "concepts": concepts, **(identity or {})})
