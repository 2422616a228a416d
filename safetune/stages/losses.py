"""Training losses. Each is called as loss(unet, step, generator) by the one trainer.

DenoisingLoss  fine-tuning on captioned images (benign or malicious: same loss, other data)
ESDLoss        Erased Stable Diffusion (Gandikota et al. 2023): e(x_t, c) -> e0(x_t) - eta (e0(x_t, c) - e0(x_t))
SDDLoss        Safe self-distillation (Kim et al. 2023): e(x_t, c) -> EMA teacher's e(x_t, "")
AblationLoss   Concept ablation (Kumari et al. 2023): e(x_t, c) -> e0(x_t, c_anchor), x_t from anchor images

x_t for ESD and SDD comes from the model's own samples of the concept, drawn once before training
and re-noised at a random timestep every step (the papers sample x_t along a fresh DDIM trajectory
each step; caching the trajectory ends is our choice, for speed, and changes only which x_t are seen).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from ..checkpoint import batch_randint
from ..models.conditioning import Cond, denoising_target, encode_text_trained, noised, predict
from ..train import EMA


class DenoisingLoss:
    """The diffusion loss on captioned images. Captions are encoded once (`cond`) while the text
    encoders are frozen. When they train: SD 1.x/2.x captions come as `input_ids`, encoded through
    the text encoder the trainer hands over (`self.text_encoder`, wrapped for data parallelism);
    SDXL, SD3 and Flux captions (`captions`) go through the pipeline's own encoding, whose trained
    CLIPs and frozen T5 it calls (`through_pipeline`: one process)."""

    def __init__(self, latents, cond, scheduler, batch_size: int, input_ids: torch.Tensor | None = None,
                 pipe=None, captions: list[str] | None = None):
        self.latents, self.cond, self.scheduler, self.batch_size = latents, cond, scheduler, batch_size
        self.input_ids, self.text_encoder = input_ids, None
        self.pipe, self.captions, self.through_pipeline = pipe, captions, captions is not None

    def __call__(self, unet, step, gen):
        idx = batch_randint(len(self.latents), self.batch_size, gen)
        x0 = self.latents[idx]
        xt, noise, t = noised(self.scheduler, x0, gen)
        if self.through_pipeline:
            cond = encode_text_trained(self.pipe, [self.captions[i] for i in idx.tolist()])
        elif self.text_encoder is not None:
            cond = Cond(self.text_encoder(self.input_ids[idx].to(x0.device))[0])
        else:
            cond = self.cond[idx]
        pred = predict(unet, xt, t, cond)
        return F.mse_loss(pred.float(), denoising_target(self.scheduler, x0, noise, t).float())


@contextlib.contextmanager
def original_model(unet, frozen=None):
    """Predictions of the model before this stage: the LoRA switched off, or a frozen copy."""
    if frozen is not None:
        yield frozen
        return
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


class ESDLoss:
    """ESD: e(x_t, c) -> e0(x_t) - eta (e0(x_t, c) - e0(x_t)), e0 the model before this stage."""
    def __init__(self, concept_latents, concept_cond, uncond, scheduler, batch_size: int, eta: float = 1.0,
                 frozen=None):
        self.x0, self.cond, self.uncond = concept_latents, concept_cond, uncond
        self.scheduler, self.batch_size, self.eta, self.frozen = scheduler, batch_size, eta, frozen

    def __call__(self, unet, step, gen):
        idx = batch_randint(len(self.x0), self.batch_size, gen)
        cidx = batch_randint(len(self.cond), self.batch_size, gen)
        xt, _, t = noised(self.scheduler, self.x0[idx], gen)
        c = self.cond[cidx]
        with torch.no_grad(), original_model(unet, self.frozen) as original:
            e_u = predict(original, xt, t, self.uncond.repeat(len(c)))
            e_c = predict(original, xt, t, c)
        target = e_u - self.eta * (e_c - e_u)
        return F.mse_loss(predict(unet, xt, t, c).float(), target.float())


class AblationLoss:
    """Concept ablation, model-based (Kumari et al. 2023): on x_t noised from the model's own images
    of the anchor, e(x_t, c) -> e0(x_t, c_anchor): the concept's prompt draws what the anchor draws."""
    def __init__(self, anchor_latents, concept_cond, anchor_cond, scheduler, batch_size: int):
        self.x0, self.cond, self.anchor = anchor_latents, concept_cond, anchor_cond
        self.scheduler, self.batch_size = scheduler, batch_size

    def __call__(self, unet, step, gen):
        idx = batch_randint(len(self.x0), self.batch_size, gen)
        cidx = batch_randint(len(self.cond), self.batch_size, gen)
        xt, _, t = noised(self.scheduler, self.x0[idx], gen)
        with torch.no_grad(), original_model(unet) as original:
            target = predict(original, xt, t, self.anchor[cidx % len(self.anchor)])
        return F.mse_loss(predict(unet, xt, t, self.cond[cidx]).float(), target.float())


class SDDLoss:
    """SDD: e(x_t, c) -> the EMA teacher's e(x_t, ''), teacher decay 0.999."""
    def __init__(self, concept_latents, concept_cond, uncond, scheduler, batch_size: int, ema_decay: float = 0.999):
        self.x0, self.cond, self.uncond = concept_latents, concept_cond, uncond
        self.scheduler, self.batch_size, self.decay = scheduler, batch_size, ema_decay
        self.teacher: EMA | None = None
        self._restored: dict[str, torch.Tensor] | None = None

    # the teacher is training state: the trainer checkpoints it so that a resumed run is exact
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's weights (checkpointed: a resumed run is exact)."""
        return {} if self.teacher is None else self.teacher.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the teacher (applied at the first step, once the parameters are known)."""
        self._restored = state or None  # applied once the trainable parameters are known

    def __call__(self, unet, step, gen):
        if self.teacher is None:  # the teacher starts as the student
            self.teacher = EMA([p for p in unet.parameters() if p.requires_grad], self.decay)
            if self._restored:
                self.teacher.load_state_dict(self._restored)
        idx = batch_randint(len(self.x0), self.batch_size, gen)
        cidx = batch_randint(len(self.cond), self.batch_size, gen)
        xt, _, t = noised(self.scheduler, self.x0[idx], gen)
        c = self.cond[cidx]
        with torch.no_grad(), self.teacher.applied():
            target = predict(unet, xt, t, self.uncond.repeat(len(c)))
        loss = F.mse_loss(predict(unet, xt, t, c).float(), target.float())
        self.teacher.update()
        return loss


class InnerOptimizer:
    """The simulated attacker's update rule over its inner steps, first-order (the gradients carry no
    graph). `sign`: lr * sign(grad), the shape of Adam's first step, every step. `adam`: the update of
    torch.optim.Adam (the battery's attacks train with AdamW, weight decay 0) with its default betas and
    eps, moments kept across the inner steps: where the gradient is steady it moves as sign does, where
    it flips it moves less, as the real attacker does (TAR and ResAlign simulate the attack with the
    attacker's own optimiser). Called with {name: grad}, returns {name: the step to subtract}."""

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, kind: str, lr: float):
        if kind not in ("sign", "adam"):
            raise ValueError(f"inner optimiser {kind!r}: choose sign or adam")
        self.kind, self.lr, self.t, self.moments = kind, lr, 0, {}

    def __call__(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.kind == "sign":
            return {n: self.lr * g.sign() for n, g in grads.items()}
        self.t += 1
        (b1, b2), steps = self.BETAS, {}
        for n, g in grads.items():
            m, v = self.moments.get(n, (torch.zeros_like(g), torch.zeros_like(g)))
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            self.moments[n] = (m, v)
            steps[n] = self.lr * (m / (1 - b1 ** self.t)) / ((v / (1 - b2 ** self.t)).sqrt() + self.EPS)
        return steps


def trajectory_points(steps: int, points: int) -> set[int]:
    """The inner steps (1..steps) after which the query's error is read: the last alone (points <= 1), or
    `points` evenly spaced ones ending at the last (fewer where the attack is shorter). TAR reads its
    tamper-resistance loss along the inner trajectory, not only at its end (arXiv 2408.00761): an
    attack held back at every point is slowed, not only stopped short of one endpoint."""
    return {steps} if points <= 1 else {math.ceil(steps * (i + 1) / points) for i in range(points)}


def _read(errors: list) -> torch.Tensor:
    """The mean of the query's errors read along the trajectory."""
    return errors[0] if len(errors) == 1 else torch.stack(errors).mean()


def attacked_error(error, draw, gen, unet, steps: int, lr: float, optimizer: str = "sign",
                   points: int = 0) -> torch.Tensor:
    """The denoising error on a harmful query batch after `steps` simulated malicious fine-tuning
    steps (full_attack). `error(batch, params)` is the denoising MSE with the UNet's weights replaced by
    `params` (None: its own); `draw(gen)` draws a harmful batch (the query first, so it is the same batch
    whatever the number of steps). points > 1: the mean of the query's errors at trajectory_points instead."""
    query, at = draw(gen), trajectory_points(steps, points)
    if not steps:
        return error(query, None)
    return _read([error(query, params) for k, params in full_attack(error, draw, gen, unet, steps, lr, optimizer)
                  if k in at])


def full_attack(error, draw, gen, unet, steps: int, lr: float, optimizer: str = "sign"):
    """Yields (k, theta_k) for k = 1..steps, theta_k = theta_(k-1) - (the InnerOptimizer's step on the
    error of a fresh harmful batch) from theta_0 the UNet's trained weights. First-order, as in first-order
    MAML: theta_k depends on theta through the identity only (the steps are constants), so a gradient taken
    at theta_k is applied to theta. `error` and `draw` as in attacked_error."""
    params = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    inner = InnerOptimizer(optimizer, lr)
    for k in range(1, steps + 1):
        grads = torch.autograd.grad(error(draw(gen), params), list(params.values()), allow_unused=True)
        step = inner({n: g for n, g in zip(params, grads) if g is not None})
        params = {n: p - step[n] if n in step else p for n, p in params.items()}
        yield k, params


def lora_attacked_error(error, draw, gen, unet, steps: int, lr: float, rank: int, modules: list[str],
                        optimizer: str = "sign", implicit: float = 0.0, terms: int = 2, last: dict | None = None,
                        points: int = 0) -> torch.Tensor:
    """The denoising error on a harmful query batch after `steps` simulated steps of a *new* rank-
    `rank` LoRA on `modules` (IMMA's inner adaptation, arXiv 2311.18815; the battery's lora-r*
    attacks): only the LoRA's factors move (InnerOptimizer steps, B from zero as a LoRA starts), the
    defended weights W enter as W + B A, so the error's gradient reaches them, first-order in the
    factors (they are held fixed when it is taken). `error` and `draw` as in attacked_error.

    implicit > 0 adds what first-order drops, the factors' own dependence on W, by the implicit function
    theorem (ResAlign, arXiv 2507.16302; implicit hyperparameter gradients, Lorraine et al. 2020): the attack read as
    the proximal step phi* = argmin L(W, phi) + |phi - phi_0|^2 / (2 implicit) of the attacker's loss L,
    whose optimality gives d phi*/dW = -(H + I / implicit)^-1 d^2 L / d phi dW, H the Hessian of L in the
    factors at phi*. The error's total gradient in W is then its partial one minus d/dW (grad_phi L . v),
    v = (H + I / implicit)^-1 grad_phi error, solved by `terms` conjugate-gradient steps of Hessian-vector
    products (H + I / implicit is positive definite where phi* minimises the proximal objective; a
    truncated Neumann series, the other usual choice, diverges once implicit times H's largest
    eigenvalue passes 1). `last` gets the solve's relative residual, for the training log. The value is
    unchanged: only the gradient is corrected. points > 1 (first-order only): the mean of the query's
    errors at trajectory_points, as attacked_error."""
    query = draw(gen)
    targets = set(modules)
    weights = {f"{name}.weight": module.weight for name, module in unet.named_modules() if name in targets}
    factors = {n: (torch.randn(rank, w.shape[1], generator=gen).to(w) / w.shape[1] ** 0.5,
                   torch.zeros(w.shape[0], rank, dtype=w.dtype, device=w.device)) for n, w in weights.items()}

    def attacked(factors):
        return {n: w + b @ a for n, w in weights.items() for a, b in [factors[n]]}

    detached = lambda factors: {n: (a.detach(), b.detach()) for n, (a, b) in factors.items()}  # noqa: E731
    inner, at, errors = InnerOptimizer(optimizer, lr), trajectory_points(steps, points), []
    for k in range(1, steps + 1):
        factors = {n: (a.detach().requires_grad_(), b.detach().requires_grad_()) for n, (a, b) in factors.items()}
        flat = {f"{n}.{ab}": t for n, pair in factors.items() for ab, t in zip("AB", pair)}
        step = inner(dict(zip(flat, torch.autograd.grad(error(draw(gen), attacked(factors)), list(flat.values())))))
        factors = {n: (a - step[f"{n}.A"], b - step[f"{n}.B"]) for n, (a, b) in factors.items()}
        if k in at and k < steps and not implicit:
            errors.append(error(query, attacked(detached(factors))))
    if not implicit:
        return _read([*errors, error(query, attacked(detached(factors)))])
    return _implicitly_corrected(error, query, draw(gen), attacked, factors, implicit, terms, last)


def _implicitly_corrected(error, query, batch, attacked, factors: dict, implicit: float, terms: int,
                          last: dict | None) -> torch.Tensor:
    """The query's error at the attacked `factors`, its gradient in W corrected as lora_attacked_error
    says, the attacker's loss L (for H and the mixed derivative) taken on a fresh harmful `batch`."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    factors = {n: (a.detach().requires_grad_(), b.detach().requires_grad_()) for n, (a, b) in factors.items()}
    phi = [t for pair in factors.values() for t in pair]
    after = error(query, attacked(factors))
    g = torch.autograd.grad(after, phi, retain_graph=True)
    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernels have no second derivative
        grad_loss = torch.autograd.grad(error(batch, attacked(factors)), phi, create_graph=True)
    v = _conjugate_gradient(lambda p: [h + x / implicit for h, x in zip(
        torch.autograd.grad(grad_loss, phi, grad_outputs=p, retain_graph=True), p)], g, terms, last)
    mixed = sum((gl * vi).sum() for gl, vi in zip(grad_loss, v))  # its gradient in W: d2L/dW dphi . v
    return after - (mixed - mixed.detach())


def _dot(xs, ys) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(xs, ys))


def _conjugate_gradient(matvec, b: list, steps: int, last: dict | None) -> list:
    """x ~ A^-1 b by `steps` conjugate-gradient steps (A symmetric, given as `matvec`; stopped early at a
    direction of non-positive curvature, where A is not positive there); `last` gets the relative
    residual |b - A x| / |b|. Tensors are detached: x enters the gradient as a constant."""
    b = [t.detach() for t in b]
    x = [torch.zeros_like(t) for t in b]
    r, p = list(b), list(b)
    rr = _dot(r, r)
    norm_b = rr.sqrt()
    for _ in range(steps):
        ap = [t.detach() for t in matvec(p)]
        curvature = _dot(p, ap)
        if curvature <= 0 or rr <= 0:
            break
        alpha = rr / curvature
        x = [xi + alpha * pi for xi, pi in zip(x, p)]
        r = [ri - alpha * ai for ri, ai in zip(r, ap)]
        rr, previous = _dot(r, r), rr
        p = [ri + (rr / previous) * pi for ri, pi in zip(r, p)]
    if last is not None:
        last["implicit_residual"] = (rr.sqrt() / norm_b).item() if norm_b > 0 else 0.0
    return x


def text_attacked_error(error, draw, gen, steps: int, lr: float, optimizer: str = "sign",
                        points: int = 0) -> torch.Tensor:
    """The denoising error on a harmful query batch after `steps` simulated steps of a concept
    inversion (the battery's `inversion` attack), learned where it acts: one offset of the prompt's
    text states, shared by the batch, moved by InnerOptimizer steps from zero. It reaches every
    conditioning one new token could give, and more (a superset of the attack: a stronger inner
    adversary). The defended weights stay fixed during the steps; the error at the offset found reaches
    them (first-order in the offset). `error(batch, params)`, `draw(gen)` and `points` as in
    attacked_error, the batch's last item its Cond."""
    query = draw(gen)
    offset = torch.zeros_like(query[-1].hidden[0])

    def shifted(batch, offset):
        cond = batch[-1]
        return (*batch[:-1], Cond(cond.hidden + offset, cond.added, cond.family))

    inner, at, errors = InnerOptimizer(optimizer, lr), trajectory_points(steps, points), []
    for k in range(1, steps + 1):
        offset = offset.detach().requires_grad_()
        (grad,) = torch.autograd.grad(error(shifted(draw(gen), offset), None), [offset])
        offset = offset - inner({"offset": grad})["offset"]
        if k in at and k < steps:
            errors.append(error(shifted(query, offset.detach()), None))
    return _read([*errors, error(shifted(query, offset.detach()), None)])


def without_conflict(keep: torch.Tensor, extra: torch.Tensor, params: list, last: dict | None = None) -> torch.Tensor:
    """keep + extra in value, whose gradient is keep's plus extra's with the part that opposes keep's
    removed (gradient surgery, PCGrad: Yu et al. 2020, arXiv 2001.06782): where g_extra . g_keep < 0,
    g_extra - (g_extra . g_keep / |g_keep|^2) g_keep, so that a small step along what extra adds does
    not, first-order, raise keep. Why: a tamper term whose gradient runs through a simulated full-weight
    attack broke the distilled student on dev (defence.md); this bounds that damage where it is done,
    at each step, with no weight to tune (on dev about half the lost fidelity came back). `last` gets
    the cosine of the two gradients before the projection, for the training log. With data
    parallelism each process projects its own gradients before they are averaged."""
    params = [p for p in params if p.requires_grad]
    g_keep = torch.autograd.grad(keep, params, retain_graph=True, allow_unused=True)  # extra may share its graph
    g_extra = torch.autograd.grad(extra, params, allow_unused=True)
    triples = [(p, torch.zeros_like(p) if a is None else a, torch.zeros_like(p) if b is None else b)
               for p, a, b in zip(params, g_keep, g_extra) if a is not None or b is not None]
    if not triples:  # neither reaches a trained weight: nothing to project
        return keep + extra
    dot = _dot([a for _, a, _ in triples], [b for _, _, b in triples])
    keep_norm = _dot([a for _, a, _ in triples], [a for _, a, _ in triples])
    extra_norm = _dot([b for _, _, b in triples], [b for _, _, b in triples])
    if last is not None:
        last["tamper_cos"] = float(dot / (keep_norm * extra_norm).sqrt().clamp_min(1e-30))
    scale = dot / keep_norm if dot < 0 and keep_norm > 0 else 0.0
    # both gradients are in hand: a surrogate linear in the weights carries them, so the trainer's
    # backward does not run through either graph again
    surrogate = sum((p * (a + b - scale * a)).sum() for p, a, b in triples)
    return (keep + extra).detach() + surrogate - surrogate.detach()
