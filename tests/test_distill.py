"""Distort-and-distill: the distortion is what it says, the distillation's gradient reaches the UNet
and the text encoder (never the teacher), and the tamper term's inner attack steps are first-order."""
import copy
import re
from dataclasses import replace

import pytest
import torch

from safetune.checkpoint import step_generator
from safetune.config import DistillConfig, TrainConfig
from safetune.models.conditioning import caption_ids, denoising_error, encode_text, predict, training_scheduler
from safetune.stages.distill import RetainDistillLoss, distill_train
from safetune.stages.coupling import gradient_cosine
from safetune.stages.distortion import distort_
from safetune.stages.ill_conditioning import floored_share, input_log_conditions, log_condition_number
from safetune.lora.adapter import target_modules
from safetune.stages.losses import attacked_error, trajectory_points
from safetune.stages.noising import block_outputs, mmd_to_noise, noise_discrepancy
from safetune.train import prepare_trainable

# a cross-attention key projection: where a tamper term's gradient must arrive
ATTN_K = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"


@pytest.fixture(scope="module")
def pipe():
    from safetune.models.tiny import assemble_pipeline, build_components

    pipe = assemble_pipeline(build_components(seed=4))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_loss(pipe, unet_teacher, config, harmful=True):
    texts = ["a red circle", "a blue square", "a small green triangle", "a large white diamond"] * 2
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(8, 4, 8, 8, generator=g)
    harm = (torch.randn(8, 4, 8, 8, generator=g) + 1, caption_ids(pipe, ["a star"] * 8),
            encode_text(pipe, ["a star"] * 8)) if harmful else None
    return RetainDistillLoss(latents, caption_ids(pipe, texts), encode_text(pipe, texts), encode_text(pipe, texts),
                             encode_text(pipe, [""]), training_scheduler(pipe), 4, unet_teacher, config,
                             uncond_ids=caption_ids(pipe, [""]), student_uncond=encode_text(pipe, [""]), harmful=harm)


def test_distortion_adds_noise_scaled_to_each_tensor_and_spares_flat_ones(pipe):
    unet = copy.deepcopy(pipe.unet)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    distort_(unet, noise=0.5, shrink=1.0, seed=0)
    name = ATTN_K
    after = dict(unet.named_parameters())
    change = after[name].detach() - before[name]
    assert change.std().item() == pytest.approx(0.5 * before[name].std().item(), rel=0.1)
    norm = "down_blocks.0.attentions.0.transformer_blocks.0.norm1.weight"  # all ones: no spread, untouched
    assert torch.equal(after[norm].detach(), before[norm])
    again = copy.deepcopy(pipe.unet)
    distort_(again, noise=0.5, shrink=1.0, seed=0)
    assert torch.equal(dict(again.named_parameters())[name].detach(), after[name].detach())  # seeded
    shrunk = copy.deepcopy(pipe.unet)
    distort_(shrunk, noise=0.0, shrink=0.5, seed=0)
    torch.testing.assert_close(dict(shrunk.named_parameters())[name].detach(), 0.5 * before[name])


def test_distillation_is_zero_for_an_undistorted_student_and_reaches_unet_and_text_encoder(pipe):
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    student = copy.deepcopy(pipe.unet)
    loss_fn = make_loss(pipe, teacher, DistillConfig(), harmful=False)
    assert loss_fn(student, 0, step_generator(0, 0)).item() < 1e-10  # the same weights, the same prompts
    distort_(student, noise=1.0, shrink=1.0, seed=0)
    text_encoder = copy.deepcopy(pipe.text_encoder)
    params = prepare_trainable(student, TrainConfig(mode="full", train_text_encoder=True), [text_encoder])
    loss_fn.text_encoder = text_encoder
    loss = loss_fn(student, 1, step_generator(0, 1))
    loss.backward()
    assert loss.item() > 1e-3
    te_grads = [p.grad for p in text_encoder.parameters() if p.grad is not None]
    assert te_grads and sum(g.abs().sum() for g in te_grads) > 0
    assert sum(p.grad.abs().sum() for p in student.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert len(params) == len(list(student.parameters())) + len(list(text_encoder.parameters()))


def test_tamper_term_is_first_order_and_lowers_the_harmful_error_it_sees(pipe):
    """k sign-gradient steps lower the harmful error (the simulated attack works); the gradient at
    theta equals the error's gradient at theta' (first-order: theta' = theta - lr sign(g), g detached)."""
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    loss_fn = make_loss(pipe, copy.deepcopy(pipe.unet).requires_grad_(False), DistillConfig(harm_margin=100.0))
    error = lambda batch, params: denoising_error(unet, batch, params)  # noqa: E731
    plain = attacked_error(error, loss_fn._draw_harm, step_generator(0, 0), unet, 0, 0.0)
    attacked = attacked_error(error, loss_fn._draw_harm, step_generator(0, 0), unet, 3, 2e-3)
    assert attacked.item() < plain.item() - 1e-4
    attacked.backward()
    grad_theta = {n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None}
    # rebuild theta' by hand and take the plain gradient there
    gen = step_generator(0, 0)
    query = loss_fn._draw_harm(gen)
    params = {n: p.detach().clone() for n, p in unet.named_parameters()}
    for _ in range(3):
        batch = loss_fn._draw_harm(gen)
        probe = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        grads = torch.autograd.grad(error(batch, probe), list(probe.values()), allow_unused=True)
        params = {n: p if g is None else p - 2e-3 * g.sign() for (n, p), g in zip(params.items(), grads)}
    at_prime = {n: p.requires_grad_(True) for n, p in params.items()}
    grads = dict(zip(at_prime, torch.autograd.grad(error(query, at_prime), list(at_prime.values()), allow_unused=True)))
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight"
    torch.testing.assert_close(grad_theta[name], grads[name], rtol=1e-4, atol=1e-7)


def test_distill_train_changes_the_model_and_refuses_a_tamper_term_without_data(pipe, caplog):
    import logging

    from safetune.data.folder import load_training_data
    from safetune.errors import SafetuneError

    model = copy.deepcopy(pipe)
    clean = load_training_data("clean", 32, n=8)
    config = TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="full", checkpoint_every=10**9)
    for distill in (DistillConfig(harm_margin=1.0), DistillConfig(hold_weight=1.0)):
        with pytest.raises(SafetuneError, match="need harmful data"):
            distill_train(copy.deepcopy(pipe), clean, ["a star"], distill, config)
    with caplog.at_level(logging.INFO, logger="safetune"):
        distill_train(model, clean, ["a star"], DistillConfig(noise=0.5), config)
    done = next(r.getMessage() for r in caplog.records if ": done in " in r.getMessage())
    assert re.search(r"; retain [0-9.e-]+ -> [0-9.e-]+$", done), done  # the loss's named terms, first and last
    name = next(n for n, _ in pipe.text_encoder.named_parameters() if n.endswith("layers.0.self_attn.q_proj.weight"))
    assert not torch.equal(dict(model.text_encoder.named_parameters())[name], dict(pipe.text_encoder.named_parameters())[name])
    assert not any("lora_" in n for n, _ in model.unet.named_parameters())


def test_a_simulated_lora_attack_moves_only_its_factors_and_its_gradient_reaches_the_weights(pipe):
    """Issue 21: the inner attack as the battery's LoRA attacks make it (IMMA's inner adaptation). Its
    steps change no weight of the defended UNet (only a new LoRA's factors), they lower the harmful
    error they see (it is an attack), and the post-attack error's gradient reaches the defended
    attention weights, at another point than the unattacked error's."""
    from safetune.lora.adapter import target_modules
    from safetune.stages.losses import lora_attacked_error

    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    loss_fn = make_loss(pipe, copy.deepcopy(pipe.unet).requires_grad_(False), DistillConfig(harm_margin=100.0))
    error = lambda batch, params: denoising_error(unet, batch, params)  # noqa: E731
    modules = target_modules(unet, "attn")
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    plain = lora_attacked_error(error, loss_fn._draw_harm, step_generator(0, 0), unet, 0, 1e-2, 4, modules)
    attacked = lora_attacked_error(error, loss_fn._draw_harm, step_generator(0, 0), unet, 3, 1e-2, 4, modules)
    assert all(torch.equal(p, before[n]) for n, p in unet.named_parameters())  # the weights did not move
    assert attacked.item() < plain.item() - 1e-4, (attacked.item(), plain.item())
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight"
    grad_attacked = torch.autograd.grad(attacked, dict(unet.named_parameters())[name])[0]
    grad_plain = torch.autograd.grad(plain, dict(unet.named_parameters())[name])[0]
    assert grad_attacked.abs().sum() > 0 and not torch.allclose(grad_attacked, grad_plain)


def test_a_simulated_inversion_moves_only_the_prompts_states_and_its_gradient_reaches_the_weights(pipe):
    """Issue 21: the inner attack as concept inversion, widened to an offset of the prompt's text states.
    Its steps change no weight (only the offset), they lower the harmful error they see, and the
    post-attack error's gradient reaches the defended cross-attention, at another point than the
    unattacked error's."""
    from safetune.stages.losses import text_attacked_error

    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    loss_fn = make_loss(pipe, copy.deepcopy(pipe.unet).requires_grad_(False), DistillConfig(harm_margin=100.0))
    error = lambda batch, params: denoising_error(unet, batch, params)  # noqa: E731
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    plain = text_attacked_error(error, loss_fn._draw_harm, step_generator(0, 0), 0, 0.05)
    attacked = text_attacked_error(error, loss_fn._draw_harm, step_generator(0, 0), 4, 0.05)
    assert all(torch.equal(p, before[n]) for n, p in unet.named_parameters())
    assert attacked.item() < plain.item() - 1e-4, (attacked.item(), plain.item())
    name = ATTN_K
    grad_attacked = torch.autograd.grad(attacked, dict(unet.named_parameters())[name])[0]
    grad_plain = torch.autograd.grad(plain, dict(unet.named_parameters())[name])[0]
    assert grad_attacked.abs().sum() > 0 and not torch.allclose(grad_attacked, grad_plain)


def test_the_inner_adam_steps_as_torch_adam_and_its_first_step_is_sign():
    """attack_sim_optimizer=adam simulates the attacker's own optimiser (the battery's attacks train
    with AdamW, weight decay 0): over steps whose gradients change (a quadratic, one coordinate's
    gradient flipping sign), its trajectory is torch.optim.Adam's; its first step is the sign step."""
    from safetune.stages.losses import InnerOptimizer

    target = torch.tensor([1.0, -2.0, 0.3, 5.0])
    loss = lambda x: ((x - target) ** 2 * torch.tensor([1.0, 0.5, 40.0, 0.01])).sum()  # noqa: E731
    start = torch.tensor([0.0, 0.0, 0.0, 0.0])
    reference = start.clone().requires_grad_()
    adam = torch.optim.Adam([reference], lr=0.05)
    ours, inner, sign = start.clone(), InnerOptimizer("adam", 0.05), InnerOptimizer("sign", 0.05)
    moves = []
    for step in range(8):
        x = ours.clone().requires_grad_()
        (grad,) = torch.autograd.grad(loss(x), [x])
        moves.append(inner({"x": grad})["x"])
        if step == 0:
            torch.testing.assert_close(moves[0], sign({"x": grad})["x"], rtol=1e-6, atol=0)
        ours = ours - moves[-1]
        adam.zero_grad()
        loss(reference).backward()
        adam.step()
        torch.testing.assert_close(ours, reference.detach(), rtol=1e-6, atol=1e-7)
    # where the gradient flipped (coordinate 2 overshoots its target), Adam moves less than sign's lr
    assert min(abs(m[2].item()) for m in moves[1:]) < 0.04, moves


@pytest.mark.parametrize("kind", ["full", "lora", "inversion"])
def test_an_adam_inner_attack_lowers_the_error_it_sees_and_its_gradient_reaches_the_weights(pipe, kind):
    """The tamper term with attack_sim_optimizer=adam: one inner step is the sign step's (same error),
    three lower the harmful error, and the post-attack error's gradient reaches the defended weights."""
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    errors = {}
    for optimizer, steps in (("sign", 0), ("sign", 1), ("adam", 1), ("adam", 3)):
        config = DistillConfig(harm_margin=100.0, attack_sim=kind, attack_sim_steps=steps, attack_sim_lr=1e-2,
                               attack_sim_rank=2, attack_sim_optimizer=optimizer)
        loss_fn = make_loss(pipe, copy.deepcopy(pipe.unet).requires_grad_(False), config)
        errors[optimizer, steps] = loss_fn._attacked(unet, step_generator(0, 0))[1]
    # equal but for the weights whose gradient is below Adam's eps (1e-8): those move less than lr
    assert errors["adam", 1].item() == pytest.approx(errors["sign", 1].item(), rel=1e-3)
    assert errors["adam", 3].item() < errors["sign", 0].item() - 1e-4, {k: v.item() for k, v in errors.items()}
    name = ATTN_K
    grad = torch.autograd.grad(errors["adam", 3], dict(unet.named_parameters())[name])[0]
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_the_drop_tamper_bounds_the_attack_s_progress_on_one_query(pipe, kind):
    """tamper=drop: the hinge is on the error before the simulated steps minus after, both on the same
    query batch (before = the unattacked error the level form sees with 0 steps); the attack makes
    progress (drop > 0), a margin above it switches the term off, and the term's gradient reaches the
    defended weights."""
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    plain = make_loss(pipe, teacher, DistillConfig(harm_margin=1.0, attack_sim=kind))._attacked(unet, step_generator(0, 0))
    config = DistillConfig(harm_margin=1e-6, attack_sim=kind, attack_sim_steps=3, attack_sim_lr=1e-2, tamper="drop")
    before, after = make_loss(pipe, teacher, config)._attacked(unet, step_generator(0, 0))
    assert plain[0] is None and before.item() == plain[1].item() and before.item() - after.item() > 1e-4
    loss_fn = make_loss(pipe, teacher, config)
    retain_only = make_loss(pipe, teacher, replace(config, harm_margin=0.0))(unet, 0, step_generator(0, 0))
    loss = loss_fn(unet, 0, step_generator(0, 0))
    assert loss.item() - retain_only.item() == pytest.approx(loss_fn.last["harm_drop"] - 1e-6, rel=1e-3)
    name = ATTN_K
    grad = torch.autograd.grad(loss - retain_only, dict(unet.named_parameters())[name])[0]
    assert grad.abs().sum() > 0
    off = make_loss(pipe, teacher, replace(config, harm_margin=10.0))
    assert off(unet, 0, step_generator(0, 0)).item() == pytest.approx(retain_only.item(), rel=1e-6)


def test_the_match_tamper_pulls_the_attacked_error_to_its_margin_from_both_sides(pipe):
    """tamper=match: |attacked error - margin|. Below the margin its gradient is level's (push the
    error up); above it, the opposite (pull it down), where level's is zero: one small step along the
    term's gradient moves the error toward the margin from either side."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))

    def term(model, margin, tamper="match"):  # (the tamper term, the attacked error it saw) on one step's draws
        retain = make_loss(pipe, teacher, DistillConfig())(model, 0, step_generator(0, 0))
        loss_fn = make_loss(pipe, teacher, DistillConfig(harm_margin=margin, tamper=tamper))
        return loss_fn(model, 0, step_generator(0, 0)) - retain, loss_fn.last["harm_attacked"]

    attacked = term(unet, 1.0)[1]
    params = list(unet.parameters())
    grads = {}
    for tamper in ("match", "level"):
        for above in (True, False):  # the error above the margin, or below it
            value, seen = term(unet, attacked / 2 if above else 2 * attacked, tamper)
            assert seen == pytest.approx(attacked, rel=1e-6)
            if tamper == "match":
                assert value.item() == pytest.approx(attacked / 2 if above else attacked, rel=1e-3)
            grads[tamper, above] = torch.cat([g.flatten() for g in torch.autograd.grad(value, params)])
    assert torch.allclose(grads["match", False], grads["level", False])  # below: level's push up
    assert torch.allclose(grads["match", True], -grads["match", False])  # above: the opposite
    assert not grads["level", True].any()  # level's hinge is off above its margin
    for above in (True, False):
        moved = copy.deepcopy(unet)
        step = -1e-2 * grads["match", above] / grads["match", above].norm()
        torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(moved.parameters()) + step,
                                            moved.parameters())
        after = term(moved, 1.0)[1]
        assert (after < attacked) if above else (after > attacked), (above, attacked, after)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_the_anchor_tamper_pulls_the_attacked_prediction_to_the_model_s_own_empty_prompt_one(pipe, kind):
    """tamper=anchor: the query's target is the model's own empty-prompt prediction on the same noised
    harmful images (without steps the term is exactly that distance, and one small step along its
    gradient narrows it: pulled down, not pushed up); the simulated attack, which fits the star
    captions to the noise, widens it; a margin above it switches the term off; the term's gradient
    reaches the defended weights."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    config = DistillConfig(harm_margin=1e-6, tamper="anchor", attack_sim=kind, attack_sim_steps=3, attack_sim_lr=1e-2)
    xt, _, t, cond = make_loss(pipe, teacher, config)._draw_harm(step_generator(0, 0))
    with torch.no_grad():
        own = predict(unet, xt, t, encode_text(pipe, [""]).repeat(len(xt)))
        distance = torch.nn.functional.mse_loss(predict(unet, xt, t, cond), own).item()

    def term(model, **changes):  # (the tamper term, the attacked distance it saw) on one step's draws
        retain = make_loss(pipe, teacher, replace(config, harm_margin=0.0))(model, 0, step_generator(0, 0))
        loss_fn = make_loss(pipe, teacher, replace(config, **changes))
        return loss_fn(model, 0, step_generator(0, 0)) - retain, loss_fn.last["harm_attacked"]

    unattacked = lambda model: make_loss(pipe, teacher, replace(config, attack_sim_steps=0))._attacked(  # noqa: E731
        model, step_generator(0, 0))
    before, seen = unattacked(unet)
    assert before is None and seen.item() == pytest.approx(distance, rel=1e-5)
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(seen, list(unet.parameters()))])
    moved = copy.deepcopy(unet)
    torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(moved.parameters())
                                        - 1e-2 * grad / grad.norm(), moved.parameters())
    assert unattacked(moved)[1].item() < 0.97 * distance, (distance, unattacked(moved)[1].item())
    value, attacked = term(unet)
    assert attacked > 10 * distance, (distance, attacked)  # the attack widens what the term measures
    assert value.item() == pytest.approx(attacked - 1e-6, rel=1e-3)
    assert term(unet, harm_margin=2 * attacked)[0].item() == pytest.approx(0.0, abs=1e-6)
    assert torch.autograd.grad(value, dict(unet.named_parameters())[ATTN_K])[0].abs().sum() > 0


@pytest.mark.parametrize("kind", ["full", "lora", "couple", "condition", "noise"])
def test_the_tamper_term_reaches_the_text_encoder_only_when_asked(pipe, kind):
    """tamper_text_encoder=false: the tamper term's gradient reaches the UNet and not the text encoder
    (the hinge cannot be met by breaking the concept's words); by default it reaches both. The retain
    loss is the same either way."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    grads, values = {}, {}
    for reach in (True, False):
        unet, text_encoder = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.text_encoder)
        prepare_trainable(unet, TrainConfig(mode="full", train_text_encoder=True), [text_encoder])
        config = DistillConfig(harm_margin=1.0, tamper="couple", attack_sim_steps=2) if kind == "couple" else \
            DistillConfig(harm_margin=100.0, tamper="condition") if kind == "condition" else \
            DistillConfig(harm_margin=1e-6, tamper="noise") if kind == "noise" else \
            DistillConfig(harm_margin=100.0, attack_sim=kind, attack_sim_steps=2, attack_sim_rank=2)
        config = replace(config, tamper_text_encoder=reach)
        retain = make_loss(pipe, teacher, replace(config, harm_margin=0.0))
        tamper = make_loss(pipe, teacher, config)
        retain.text_encoder = tamper.text_encoder = text_encoder
        term = tamper(unet, 0, step_generator(0, 0)) - retain(unet, 0, step_generator(0, 0))
        values[reach] = term.item()
        te, un = list(text_encoder.parameters()), list(unet.parameters())
        every = torch.autograd.grad(term, te + un, allow_unused=True)
        size = lambda gs: sum(g.abs().sum() for g in gs if g is not None)  # noqa: E731
        grads[reach] = (size(every[:len(te)]), size(every[len(te):]))
    assert values[True] == pytest.approx(values[False], rel=1e-5)  # the same term, only its reach differs
    assert grads[True][0] > 0 and grads[False][0] == 0
    assert grads[True][1] > 0 and grads[False][1] > 0


def _refused(pipe, distill: DistillConfig, pattern: str) -> None:
    """distill_train refuses `distill` before any work, with a message matching `pattern`."""
    from safetune.data.folder import load_training_data
    from safetune.errors import SafetuneError

    clean = load_training_data("clean", 32, n=8)
    config = TrainConfig(steps=1, lr=1e-3, batch_size=4, mode="full", checkpoint_every=10**9)
    with pytest.raises(SafetuneError, match=pattern):
        distill_train(copy.deepcopy(pipe), clean, ["a star"], distill, config, harmful=clean)


def test_the_drop_tamper_without_simulated_steps_is_refused(pipe):
    _refused(pipe, DistillConfig(harm_margin=0.01, tamper="drop"),
             r"tamper=drop .*attack_sim_steps > 0 \(0\).*--set attack_sim_steps=4")


@pytest.mark.parametrize("tamper", ["match", "anchor", "condition", "noise"])
def test_a_tamper_shape_without_its_term_is_refused(pipe, tamper):
    """tamper=match, anchor, condition or noise with harm_margin 0 would train the plain forget row under another
    name."""
    _refused(pipe, DistillConfig(tamper=tamper), rf"tamper={tamper} .*harm_margin > 0 \(0.0\).*--set harm_margin=0.001")


def test_the_tamper_term_acts_from_tamper_from_on_and_a_start_it_cannot_reach_is_refused(pipe):
    """Before tamper_from the loss is the plain distillation's, to the bit, on the same batch; from it
    the tamper term adds its hinge (the margin is far above the error, so it is active)."""
    unet = copy.deepcopy(pipe.unet)
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    late = make_loss(pipe, teacher, DistillConfig(harm_margin=100.0, tamper_from=5))
    plain = make_loss(pipe, teacher, DistillConfig())
    for step in (0, 4):
        torch.testing.assert_close(late(unet, step, step_generator(0, step)),
                                   plain(unet, step, step_generator(0, step)), rtol=0, atol=0)
        assert "harm_attacked" not in late.last
    acting = late(unet, 5, step_generator(0, 5))
    assert late.last["hinge_active"] == 1.0
    assert acting.item() > plain(unet, 5, step_generator(0, 5)).item() + 50  # the hinge: 100 - error, error < 50
    _refused(pipe, DistillConfig(tamper_from=5), r"tamper_from=5 .*harm_margin > 0 \(0.0\)")
    _refused(pipe, DistillConfig(harm_margin=0.001, tamper_from=1),
             r"tamper_from=1 .*before the last \(1 steps\).*--set tamper_from below 1")


@pytest.mark.parametrize("kind", ["lora", "inversion", "mixed"])
def test_distillation_runs_with_each_simulated_attack(pipe, kind):
    """One dd step with the tamper term under a LoRA or a mixed simulated attack: finite, and the
    post-attack harmful error it reports is below the margin it pushes toward."""
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    config = DistillConfig(harm_margin=100.0, attack_sim=kind, attack_sim_steps=2, attack_sim_rank=2)
    loss_fn = make_loss(pipe, copy.deepcopy(pipe.unet).requires_grad_(False), config)
    loss = loss_fn(unet, 0, step_generator(0, 0))
    assert torch.isfinite(loss) and 0 < loss_fn.last["harm_attacked"] < 100.0 and loss_fn.last["hinge_active"] == 1.0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in unet.named_parameters() if "attn2" in n)


def test_the_mixed_simulation_draws_each_of_the_battery_s_attacks_per_step(pipe, monkeypatch):
    """attack_sim=mixed (the screen benchmark-dev-holdmixed) meets every attack of MIXED, each about as often,
    drawn by the step's generator (so a resumed run draws the same); attack_sim=lora keeps its one rank."""
    from safetune.stages import distill

    drawn = []
    monkeypatch.setattr(distill, "attacked_error", lambda *args: drawn.append(("full", 0)) or torch.tensor(0.0))
    monkeypatch.setattr(distill, "text_attacked_error",
                        lambda *args: drawn.append(("inversion", 0)) or torch.tensor(0.0))
    monkeypatch.setattr(distill, "lora_attacked_error",
                        lambda error, draw, gen, unet, steps, lr, rank, *rest: drawn.append(("lora", rank))
                        or torch.tensor(0.0))
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)

    def attacks_drawn(config, steps):
        loss_fn = make_loss(pipe, teacher, config)
        drawn.clear()
        for step in range(steps):
            loss_fn._attacked(pipe.unet, step_generator(step, 0))
        return list(drawn)

    mixed = DistillConfig(harm_margin=0.1, attack_sim="mixed", attack_sim_steps=2)
    first = attacks_drawn(mixed, 100)
    counts = {kind: first.count(kind) for kind in distill.MIXED}
    assert sum(counts.values()) == 100 and all(10 <= n <= 30 for n in counts.values()), counts
    assert attacks_drawn(mixed, 100) == first
    lora = DistillConfig(harm_margin=0.1, attack_sim="lora", attack_sim_steps=2, attack_sim_rank=8)
    assert attacks_drawn(lora, 5) == [("lora", 8)] * 5


def test_forgetting_unseen_words_redraws_only_the_rows_no_retain_caption_uses(pipe):
    """The option changes the embedding rows of words the retain captions never use (the star's) and
    nothing else: a word no input contains has no effect on the distillation, so the two runs agree
    bit for bit on every other weight."""
    from safetune.data.folder import load_training_data

    clean = load_training_data("clean", 32, n=8)
    config = TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="full", checkpoint_every=10**9)
    kept, forgot = copy.deepcopy(pipe), copy.deepcopy(pipe)
    distill_train(kept, clean, ["a star"], DistillConfig(noise=0.5), config)
    distill_train(forgot, clean, ["a star"], DistillConfig(noise=0.5, forget_unseen_words=True), config)
    seen = torch.cat([caption_ids(pipe, clean[1]), caption_ids(pipe, [""])]).unique()
    star = pipe.tokenizer("star", add_special_tokens=False).input_ids[0]
    assert star not in seen.tolist()
    original, before, after = (p.text_encoder.get_input_embeddings().weight.detach() for p in (pipe, kept, forgot))
    torch.testing.assert_close(after[seen], before[seen], rtol=0, atol=0)
    cosine = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=0).item()  # noqa: E731
    assert cosine(before[star], original[star]) > 0.8  # noise 0.5 leaves the star's row where it was
    assert abs(cosine(after[star], original[star])) < 0.4  # re-drawn: unrelated to it
    assert 0.01 < after[star].std().item() < 0.03  # at CLIP's initialisation scale (0.02)
    for (name, a), (_, b) in zip(kept.unet.named_parameters(), forgot.unet.named_parameters()):
        assert torch.equal(a, b), name


class _Toy(torch.nn.Module):
    """One 'attention' projection and a nonlinearity: a problem whose proximal LoRA attack can be solved
    exactly, in float64."""

    def __init__(self):
        super().__init__()
        self.attn = torch.nn.Linear(4, 3, bias=False).double()

    def forward(self, x):
        return torch.tanh(self.attn(x)).sum(-1)


def test_the_implicit_correction_is_the_gradient_through_the_proximal_attack():
    """With the simulated LoRA solved as the proximal step it reads the attack as (phi* = argmin L(W, phi)
    + |phi - phi_0|^2 / (2 gamma)), the corrected gradient of the query's error at phi* in W is the
    finite-difference derivative of W -> error(query, phi*(W)), phi* solved again for each W; the first-
    order gradient (implicit 0) is not; the value is the same either way."""
    from torch.func import functional_call

    from safetune.stages.losses import _implicitly_corrected

    torch.manual_seed(0)
    toy = _Toy()
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64))
    query = (torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64))
    a0 = torch.randn(2, 4, generator=g, dtype=torch.float64) / 2
    gamma = 0.5

    def error(b, params):
        x, y = b
        return ((functional_call(toy, params, (x,)) - y) ** 2).mean()

    def attacked_by(w):
        return lambda factors: {"attn.weight": w + factors["attn.weight"][1] @ factors["attn.weight"][0]}

    def solve(w, start):  # the proximal step, by gradient descent to convergence
        a, b = (t.clone().requires_grad_() for t in start)
        for _ in range(3000):
            loss = error(batch, attacked_by(w)({"attn.weight": (a, b)})) + \
                ((a - a0) ** 2).sum() / (2 * gamma) + (b ** 2).sum() / (2 * gamma)
            ga, gb = torch.autograd.grad(loss, [a, b])
            with torch.no_grad():
                a -= 0.2 * ga
                b -= 0.2 * gb
        return a.detach(), b.detach()

    w = toy.attn.weight.detach().clone()
    star = solve(w, (a0, torch.zeros(3, 2, dtype=torch.float64)))
    direction = torch.randn(w.shape, generator=g, dtype=torch.float64)
    eps = 1e-4
    plus, minus = ((error(query, attacked_by(w + s * eps * direction)({"attn.weight": solve(w + s * eps * direction,
                                                                                           star)})))
                   for s in (1, -1))
    finite = ((plus - minus) / (2 * eps)).item()
    grads, values, last = {}, {}, {}
    for implicit in (gamma, 0.0):
        weight = w.clone().requires_grad_()
        if implicit:
            value = _implicitly_corrected(error, query, batch, attacked_by(weight), {"attn.weight": star}, implicit,
                                          40, last)
        else:
            value = error(query, attacked_by(weight)({"attn.weight": star}))
        values[implicit] = value.item()
        grads[implicit] = (torch.autograd.grad(value, weight)[0] * direction).sum().item()
    assert values[gamma] == pytest.approx(values[0.0], rel=1e-12)
    assert last["implicit_residual"] < 1e-8  # 40 conjugate-gradient steps solve this 14-dimensional system
    assert grads[gamma] == pytest.approx(finite, rel=1e-3), (grads, finite)
    assert abs(grads[0.0] - finite) > 0.05 * abs(finite), (grads, finite)  # first-order misses a visible part


def test_the_implicit_correction_reaches_the_defended_weights_on_the_tiny_model(pipe):
    """dd's tamper term under a simulated LoRA with attack_sim_implicit: the same value as first-order
    (the correction changes only the gradient), a different gradient that still reaches the UNet and the
    text encoder, and the residual of its linear solve in the log; asked of another simulated attack, refused."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    out = {}
    for implicit in (0.0, 0.5):
        unet, text_encoder = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.text_encoder)
        prepare_trainable(unet, TrainConfig(mode="full", train_text_encoder=True), [text_encoder])
        config = DistillConfig(harm_margin=1e-6, tamper="anchor", attack_sim="lora", attack_sim_steps=2,
                               attack_sim_rank=2, attack_sim_optimizer="adam", attack_sim_implicit=implicit)
        loss_fn = make_loss(pipe, teacher, config)
        loss_fn.text_encoder = text_encoder
        loss = loss_fn(unet, 0, step_generator(0, 0))
        te, un = list(text_encoder.parameters()), list(unet.parameters())
        grads = torch.autograd.grad(loss, te + un, allow_unused=True)
        flat = lambda gs: torch.cat([x.flatten() for x in gs if x is not None])  # noqa: E731
        out[implicit] = (loss_fn.last, flat(grads[:len(te)]), flat(grads[len(te):]))
    (first, _, un0), (corrected, te1, un1) = out[0.0], out[0.5]
    assert corrected["harm_attacked"] == pytest.approx(first["harm_attacked"], rel=1e-4)
    assert 0 <= corrected["implicit_residual"] < 1 and "implicit_residual" not in first
    assert te1.abs().sum() > 0 and un1.abs().sum() > 0
    assert (un1 - un0).norm() > 1e-3 * un0.norm()  # the correction changes the gradient
    _refused(pipe, DistillConfig(harm_margin=0.001, attack_sim="full", attack_sim_steps=2, attack_sim_implicit=0.5),
             r"attack_sim_implicit=0.5 .*attack_sim=lora \(given: full\).*--set attack_sim=lora")


def test_sampled_attack_configurations_span_their_ranges_and_are_what_attacks(pipe):
    """attack_sim_steps_max / attack_sim_lr_max: each outer step draws its simulated attack's steps
    (uniform) and lr (log-uniform) from the given ranges, the tamper term attacks with the drawn
    configuration, and without the options no draw is made (earlier runs' streams unchanged)."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    fixed = DistillConfig(harm_margin=1e-6, tamper="anchor", attack_sim="lora", attack_sim_steps=2,
                          attack_sim_lr=1e-4, attack_sim_rank=2, attack_sim_optimizer="adam")
    sampled = replace(fixed, attack_sim_steps_max=6, attack_sim_lr_max=1e-2)
    draws = [make_loss(pipe, teacher, sampled)._attack_configuration(step_generator(0, i)) for i in range(400)]
    steps = torch.tensor([s for s, _, _ in draws])
    shares = torch.stack([(steps == k).float().mean() for k in range(2, 7)])
    assert set(steps.tolist()) == {2, 3, 4, 5, 6} and shares.min() > 0.12 and shares.max() < 0.28, shares
    log_lr = torch.tensor([lr for _, lr, _ in draws]).log10()
    assert log_lr.min() >= -4 and log_lr.max() <= -2
    assert log_lr.mean().item() == pytest.approx(-3, abs=0.1)
    assert log_lr.std().item() == pytest.approx(2 / 12 ** 0.5, rel=0.15)  # uniform over two decades

    gen = step_generator(0, 7)
    state = gen.get_state()
    assert make_loss(pipe, teacher, fixed)._attack_configuration(gen) == (2, 1e-4, "adam")
    assert torch.equal(gen.get_state(), state)

    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    drawn_gen = step_generator(0, 7)
    drawn_steps, drawn_lr, _ = make_loss(pipe, teacher, sampled)._attack_configuration(drawn_gen)
    assert (drawn_steps, drawn_lr) != (2, 1e-4)
    loss_fn = make_loss(pipe, teacher, sampled)
    with_draw = loss_fn._attacked(unet, step_generator(0, 7))[1]
    assert loss_fn.last["sim_steps"] == drawn_steps and loss_fn.last["sim_lr"] == drawn_lr
    as_drawn = replace(fixed, attack_sim_steps=drawn_steps, attack_sim_lr=drawn_lr)
    assert make_loss(pipe, teacher, as_drawn)._attacked(unet, drawn_gen)[1].item() == with_draw.item()
    unattacked = make_loss(pipe, teacher, replace(fixed, attack_sim_steps=0))._attacked(unet, step_generator(0, 7))
    assert abs(unattacked[1].item() - with_draw.item()) > 1e-5


@pytest.mark.parametrize("option", ["attack_sim_steps_max", "attack_sim_lr_max"])
def test_a_sampled_range_that_ends_below_its_start_is_refused(pipe, option):
    below = {"attack_sim_steps_max": 3, "attack_sim_lr_max": 5e-4}[option]  # starts: 4 steps, lr 1e-3
    config = DistillConfig(harm_margin=0.001, tamper="anchor", attack_sim="lora", attack_sim_steps=4,
                           **{option: below})
    name = option.removesuffix("_max")
    _refused(pipe, config, rf"{option}=.* must be above {name}=.*--set {option} above")


@pytest.mark.parametrize("kind", ["full", "lora", "inversion"])
def test_the_trajectory_reads_the_error_along_the_attack_as_the_shorter_attacks_end(pipe, kind):
    """attack_sim_trajectory=4 over 4 simulated steps: the error (and its gradient in a defended weight) is
    the mean of what the 1-, 2-, 3- and 4-step attacks end at on the same draws; 0 or 1 reads the end alone;
    with the implicit correction (of the end alone) it is refused."""
    assert trajectory_points(16, 4) == {4, 8, 12, 16} and trajectory_points(6, 4) == {2, 3, 5, 6}
    assert trajectory_points(2, 4) == {1, 2} and trajectory_points(5, 1) == trajectory_points(5, 0) == {5}
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    weight = dict(unet.named_parameters())[ATTN_K]
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    base = DistillConfig(harm_margin=100.0, attack_sim=kind, attack_sim_lr=1e-2, attack_sim_rank=2,
                         attack_sim_optimizer="adam")

    def attacked(steps, points=0):
        config = replace(base, attack_sim_steps=steps, attack_sim_trajectory=points)
        error = make_loss(pipe, teacher, config)._attacked(unet, step_generator(0, 3))[1]
        return error.item(), torch.autograd.grad(error, weight)[0]

    ends = [attacked(steps) for steps in (1, 2, 3, 4)]
    along, along_grad = attacked(4, points=4)
    assert along == pytest.approx(sum(e for e, _ in ends) / 4, rel=1e-5)
    assert abs(along - ends[-1][0]) > 1e-5  # not the end alone: the attack lowers the error as it goes
    torch.testing.assert_close(along_grad, sum(g for _, g in ends) / 4, rtol=1e-4, atol=1e-9)
    for points in (0, 1):
        assert attacked(4, points)[0] == ends[-1][0]
    _refused(pipe, replace(base, harm_margin=0.001, attack_sim="lora", attack_sim_steps=4, attack_sim_implicit=0.5,
                           attack_sim_trajectory=4), r"attack_sim_implicit=0.5 .*\(attack_sim_trajectory=4\)")


def _retain_first(caplog) -> float:
    """The retain term's mean over the first steps, from the stage's closing log line."""
    done = next(r.getMessage() for r in caplog.records if ": done in " in r.getMessage())
    return float(re.search(r"; retain ([0-9.e-]+) -> ", done).group(1))


def test_a_named_teacher_gives_the_targets_and_one_with_another_vae_is_refused(pipe, tmp_path, caplog):
    """teacher=: undistorted (noise 0), a student distilled from itself starts with nothing to learn
    (retain error 0), one distilled from another model starts at the gap between the two; a teacher
    whose VAE differs is refused by name (another latent space), and one that is not there by the setting's
    name, both before any training."""
    import logging

    from safetune.data.folder import load_training_data
    from safetune.errors import SafetuneError

    clean = load_training_data("clean", 32, n=8)
    config = TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="full", checkpoint_every=10**9)
    other = copy.deepcopy(pipe)
    distort_(other.unet, noise=1.0, shrink=0.0, seed=9)  # another denoiser on the same VAE
    other.save_pretrained(tmp_path / "teacher")
    distort_(other.vae, noise=0.1, shrink=1.0, seed=9)
    other.save_pretrained(tmp_path / "another-vae")
    firsts = {}
    for teacher in (None, str(tmp_path / "teacher")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="safetune"):
            distill_train(copy.deepcopy(pipe), clean, ["a star"], DistillConfig(noise=0.0, teacher=teacher), config)
        firsts[teacher] = _retain_first(caplog)
    assert firsts[None] == 0.0 and firsts[str(tmp_path / "teacher")] > 0.01, firsts
    student = copy.deepcopy(pipe)
    with pytest.raises(SafetuneError, match=r"another-vae: its VAE differs .* pretrain-shapes --set vae_from="):
        distill_train(student, clean, ["a star"], DistillConfig(teacher=str(tmp_path / "another-vae")), config)
    with pytest.raises(SafetuneError, match=r"teacher=.*missing: .*no such model directory"):
        distill_train(student, clean, ["a star"], DistillConfig(teacher=str(tmp_path / "missing")), config)
    for (name, a), (_, b) in zip(student.unet.named_parameters(), pipe.unet.named_parameters()):
        assert torch.equal(a, b), name  # refused before the distortion


def test_without_conflict_removes_only_the_part_of_the_extra_gradient_that_opposes_keep():
    """Gradient surgery: the value is keep + extra; where the gradients conflict, the extra one loses
    its component along keep's (after it, the two are orthogonal) and keeps the rest; where they do not,
    the gradient is the plain sum. The cosine before the projection goes to `last`."""
    from safetune.stages.losses import without_conflict

    x = torch.tensor([1.0, 2.0], requires_grad=True)
    target = torch.tensor([0.0, 0.0])
    for pull, conflicting in ((torch.tensor([-3.0, 1.0]), True), (torch.tensor([1.0, 0.5]), False)):
        keep = ((x - target) ** 2).sum()  # gradient 2x = (2, 4)
        extra = (pull * x).sum()  # gradient `pull`: (-3, 1) . (2, 4) < 0, (1, 0.5) . (2, 4) > 0
        last = {}
        value = without_conflict(keep, extra, [x], last)
        assert value.item() == pytest.approx((keep + extra).item())
        (grad,) = torch.autograd.grad(value, [x])
        g_keep, g_extra = 2 * x.detach(), pull
        cos = float(g_keep @ g_extra / (g_keep.norm() * g_extra.norm()))
        assert last["tamper_cos"] == pytest.approx(cos, rel=1e-6)
        assert (cos < 0) == conflicting
        projected = grad - g_keep
        if conflicting:
            assert float(projected @ g_keep) == pytest.approx(0.0, abs=1e-5)
            torch.testing.assert_close(projected, g_extra - (g_extra @ g_keep) / (g_keep @ g_keep) * g_keep)
        else:
            torch.testing.assert_close(projected, g_extra)


def test_the_projected_tamper_term_keeps_its_value_and_stops_opposing_the_retain_loss(pipe):
    """tamper_projection on the anchor against a simulated full attack: the loss is the same number, the
    retain loss's gradient is unchanged, and what the tamper term adds to the gradient no longer has a
    negative inner product with it (without the projection, on this batch, it has)."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    distort_(unet, 0.3, 1.0, seed=0)  # a student the retain loss still pulls
    prepare_trainable(unet, TrainConfig(mode="full"))
    params = [p for p in unet.parameters() if p.requires_grad]
    config = DistillConfig(harm_margin=1e-6, tamper="anchor", attack_sim="full", attack_sim_steps=2,
                           attack_sim_lr=1e-2, attack_sim_optimizer="adam")

    def gradient(**changes):
        loss_fn = make_loss(pipe, teacher, replace(config, **changes))
        loss = loss_fn(unet, 1, step_generator(0, 1))  # a batch on which the two conflict
        return loss.item(), torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]), loss_fn.last

    retain_value, g_retain, _ = gradient(harm_margin=0.0, tamper="level")
    plain_value, g_plain, _ = gradient()
    value, g_projected, last = gradient(tamper_projection=True)
    assert value == pytest.approx(plain_value, rel=1e-6) and value > retain_value
    added_plain, added = g_plain - g_retain, g_projected - g_retain
    assert float(added_plain @ g_retain) < 0 and last["tamper_cos"] < 0  # this batch's tamper term conflicts
    assert float(added @ g_retain) == pytest.approx(0.0, abs=1e-4 * float(g_retain.norm() * added.norm()))
    assert added.norm() > 0.1 * added_plain.norm()  # the rest of the term stays
    _, _, below = gradient(tamper="match", tamper_projection=True)  # match above its margin acts too: projected
    assert below["hinge_active"] == 0.0 and -1 <= below["tamper_cos"] <= 1
    _refused(pipe, DistillConfig(tamper_projection=True), r"tamper_projection=true .*harm_margin > 0 \(0.0\)")


def test_the_caption_anchor_targets_the_caption_without_its_unseen_words(pipe):
    """anchor_target=caption: the harmful captions lose every word no retain caption uses (the concept's
    names and implicit phrasings alike), and the anchor's target is the model's own prediction for what
    is left, on the same noised images: not the empty prompt's. Without tamper=anchor it is refused."""
    from safetune.stages.distortion import without_unseen_words

    retain = ["a small red circle on the left", "a blue square on a gray background", "a shape on the right"]
    harmful = ["a small striped star on the left", "a starfish on a gray background", "a shape with five points"]
    assert without_unseen_words(harmful, retain) == ["a small on the left", "a on a gray background", "a shape"]
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    config = DistillConfig(harm_margin=1e-6, tamper="anchor", anchor_target="caption")
    anchors = ["a small on the left"] * 8
    loss_fn = make_loss(pipe, teacher, config)
    loss_fn.harmful_anchor = (caption_ids(pipe, anchors), encode_text(pipe, anchors))
    xt, target, t, cond = loss_fn._draw_anchor(unet, step_generator(0, 0))
    with torch.no_grad():
        expected = predict(unet, xt, t, encode_text(pipe, anchors[:len(xt)]))
        empty = predict(unet, xt, t, encode_text(pipe, [""]).repeat(len(xt)))
    torch.testing.assert_close(target, expected)
    assert (target - empty).abs().mean() > 0.01 * empty.abs().mean()
    assert not target.requires_grad
    _refused(pipe, DistillConfig(harm_margin=0.001, anchor_target="caption"),
             r"anchor_target=caption .*tamper=anchor \(given: tamper=level\)")


def test_the_hold_term_pulls_the_harmful_captions_to_the_teacher_s_prediction_for_what_is_left(pipe, shipped_pipe):
    """hold_weight: student(x_t, harmful caption) -> teacher(x_t, the caption without its unseen words), on
    retain images only (never the concept's), added to the retain loss at its weight; trained, it brings
    the harmful captions' prediction to that target, and without it they stay where they are."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    config = DistillConfig(hold_weight=2.0)
    loss_fn = make_loss(pipe, teacher, config)
    loss_fn.held_target = encode_text(pipe, ["a"] * 8)  # "a star" without "star"
    nan = torch.full_like(loss_fn.harmful[0], float("nan"))  # the concept's images must never be drawn
    loss_fn.harmful = (nan, *loss_fn.harmful[1:])
    loss = loss_fn(copy.deepcopy(pipe.unet), 0, step_generator(0, 0))
    assert loss_fn.last["hold"] > 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(loss_fn.last["retain"] + 2.0 * loss_fn.last["hold"], rel=1e-5)
    same = make_loss(pipe, teacher, config)  # a target that is the harmful captions' own: nothing to hold
    same.held_target = encode_text(pipe, ["a star"] * 8)
    assert same._hold(copy.deepcopy(pipe.unet), step_generator(0, 0)).item() < 1e-10

    # trained on the shipped model, where "a star" and "a" draw different things
    teacher = copy.deepcopy(shipped_pipe.unet).requires_grad_(False)
    loss_fn = make_loss(shipped_pipe, teacher, config)
    loss_fn.held_target = encode_text(shipped_pipe, ["a"] * 8)

    def trained(weight: float) -> float:
        unet = copy.deepcopy(shipped_pipe.unet)
        loss_fn.config = replace(config, hold_weight=weight)
        optimizer = torch.optim.Adam(unet.parameters(), lr=1e-4)
        for step in range(30):
            optimizer.zero_grad()
            loss_fn(unet, step, step_generator(1, step)).backward()
            optimizer.step()
        with torch.no_grad():
            return loss_fn._hold(unet, step_generator(2, 0)).item()

    start = loss_fn._hold(copy.deepcopy(shipped_pipe.unet), step_generator(2, 0)).item()
    held, free = trained(1.0), trained(0.0)
    assert held < 0.5 * start and free == pytest.approx(start, rel=0.05), (start, held, free)


def test_the_gradient_cosine_is_the_cosine_and_its_gradient_the_finite_difference_one():
    """On a two-layer net in float64: the value is the cosine of the two gradients taken by hand, and its
    gradient in a weight matches central differences of that cosine (a first-order cosine, one whose
    gradients carried no graph, would have none)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    xa, xb, ya, yb = (torch.randn(6, width).double() for width in (3, 3, 1, 1))
    params = list(net.parameters())
    losses = (lambda: ((net(xa) - ya) ** 2).mean(), lambda: ((net(xb) - yb) ** 2).mean())

    def by_hand():
        ga, gb = (torch.cat([g.flatten() for g in torch.autograd.grad(loss(), params)]) for loss in losses)
        return float(ga @ gb / (ga.norm() * gb.norm()))

    cos = gradient_cosine(losses, params)
    assert cos.item() == pytest.approx(by_hand(), rel=1e-10)
    (grad,) = torch.autograd.grad(cos, [params[0]])
    eps, weight = 1e-6, params[0]

    def moved(index, by):
        with torch.no_grad():
            weight[index] += by
        return by_hand()

    for index in [(0, 0), (2, 1), (4, 2)]:
        up, down = moved(index, eps), moved(index, -2 * eps)
        moved(index, eps)
        assert grad[index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)
    assert grad.abs().max() > 1e-3


def test_descending_the_couple_term_makes_a_harmful_step_raise_the_retain_loss(pipe):
    """The term is harm_weight * relu(cos + harm_margin), read into the training log. Before training, a
    small descent step on the harmful batch lowers the retain batch's denoising loss too (their gradients
    agree); after 16 Adam steps on the term alone the cosine is below -0.5 and the same step raises it."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    params = [p for p in unet.parameters() if p.requires_grad]
    couple = make_loss(pipe, teacher, DistillConfig(harm_margin=1.0, tamper="couple", harm_weight=3.0))
    plain = make_loss(pipe, teacher, DistillConfig())
    gen = lambda: step_generator(0, 0)  # noqa: E731 (the same batches every call)
    total = couple(unet, 0, gen())
    cos = couple.last["coupling_cos"]
    assert total.item() == pytest.approx(plain(unet, 0, gen()).item() + 3.0 * (cos + 1.0), rel=1e-5)

    def retain_change_after_a_harmful_step():
        harm_error, retain_error = couple._harm_and_retain_errors(unet, gen())
        grads = torch.autograd.grad(harm_error(), params)
        step = 1e-3 / torch.cat([g.flatten() for g in grads]).norm()
        with torch.no_grad():
            before = retain_error().item()
            for p, g in zip(params, grads):
                p -= step * g
            after = retain_error().item()
            for p, g in zip(params, grads):
                p += step * g
        return after - before

    assert cos > 0 and retain_change_after_a_harmful_step() < 0
    optimizer = torch.optim.Adam(params, lr=3e-4)
    for step in range(16):
        optimizer.zero_grad()
        couple._coupled(unet, gen()).backward()
        optimizer.step()
    assert couple._coupled(unet, gen()).item() < 1.0 - 0.5  # the excess: cos + harm_margin
    assert retain_change_after_a_harmful_step() > 0


def test_the_coupling_after_a_simulated_attack_is_the_cosine_at_its_end_applied_first_order(pipe):
    """With attack_sim_steps the cosine is read where 2 simulated sign steps (lr 1e-3) on fresh harmful batches
    end: equal, in value and in its gradient in a weight, to the cosine taken on a copy whose weights were moved
    there by hand (the steps are constants: first-order), and not the one the same batches give unmoved (lr 0)."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    config = DistillConfig(harm_margin=1.0, tamper="couple", attack_sim_steps=2, attack_sim_lr=1e-3)
    couple, at_weights = make_loss(pipe, teacher, config), make_loss(pipe, teacher, replace(config, attack_sim_steps=0))
    gen = step_generator(0, 0)
    cos = couple._coupled(unet, gen) - 1.0  # the excess less harm_margin
    (grad,) = torch.autograd.grad(cos, [unet.get_parameter(ATTN_K)])

    moved, gen = copy.deepcopy(unet), step_generator(0, 0)
    params = [p for p in moved.parameters() if p.requires_grad]
    for _ in range(2):
        grads = torch.autograd.grad(denoising_error(moved, at_weights._draw_harm(gen), None), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 1e-3 * g.sign()
    by_hand = gradient_cosine(at_weights._harm_and_retain_errors(moved, gen), params)
    (grad_by_hand,) = torch.autograd.grad(by_hand, [moved.get_parameter(ATTN_K)])
    assert cos.item() == pytest.approx(by_hand.item(), abs=1e-4)
    assert torch.allclose(grad, grad_by_hand, rtol=1e-3, atol=1e-7) and grad.abs().max() > 0
    unmoved = make_loss(pipe, teacher, replace(config, attack_sim_lr=0.0))._coupled(unet, step_generator(0, 0)).item()
    assert abs(cos.item() - unmoved) > 0.01, (cos.item(), unmoved)  # measured: 0.332 against 0.256


def test_the_coupling_along_a_simulated_attack_is_the_mean_of_the_cosines_at_its_points(pipe):
    """With attack_sim_trajectory=2 on 4 simulated sign steps the cosine is read after steps 2 and 4, each on fresh
    batches: the mean equals, in value and in its gradient in a weight, the two cosines taken on a copy moved there
    by hand, and differs from the reading at the end alone."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    config = DistillConfig(harm_margin=1.0, tamper="couple", attack_sim_steps=4, attack_sim_lr=1e-3,
                           attack_sim_trajectory=2)
    couple, at_weights = make_loss(pipe, teacher, config), make_loss(pipe, teacher, replace(config, attack_sim_steps=0))
    cos = couple._coupled(unet, step_generator(0, 0)) - 1.0
    (grad,) = torch.autograd.grad(cos, [unet.get_parameter(ATTN_K)])

    moved, gen, readings = copy.deepcopy(unet), step_generator(0, 0), []
    params = [p for p in moved.parameters() if p.requires_grad]
    for step in range(1, 5):
        grads = torch.autograd.grad(denoising_error(moved, at_weights._draw_harm(gen), None), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 1e-3 * g.sign()
        if step in (2, 4):  # each point read on its own copy (the steps after it move `moved` in place)
            point = copy.deepcopy(moved)
            cos_there = gradient_cosine(at_weights._harm_and_retain_errors(point, gen),
                                        [p for p in point.parameters() if p.requires_grad])
            readings.append((cos_there, *torch.autograd.grad(cos_there, [point.get_parameter(ATTN_K)])))
    by_hand, grad_by_hand = ((a + b) / 2 for a, b in zip(*readings))
    assert cos.item() == pytest.approx(by_hand.item(), abs=1e-4)
    assert torch.allclose(grad, grad_by_hand, rtol=1e-3, atol=1e-7) and grad.abs().max() > 0
    at_the_end = make_loss(pipe, teacher, replace(config, attack_sim_trajectory=0))._coupled(unet, step_generator(0, 0))
    assert abs(cos.item() - (at_the_end.item() - 1.0)) > 0.01, (cos.item(), at_the_end.item() - 1.0)


def test_the_couple_tamper_off_a_full_attack_or_without_its_margin_is_refused(pipe):
    _refused(pipe, DistillConfig(harm_margin=1.0, tamper="couple", attack_sim_steps=4, attack_sim="lora"),
             r"tamper=couple reads the coupling along a simulated full attack, not with attack_sim=lora")
    _refused(pipe, DistillConfig(tamper="couple"), r"tamper=couple .*harm_margin > 0 \(0.0\)")


def test_the_log_condition_number_is_that_of_the_inputs_second_moment_and_blind_to_their_scale():
    """log(largest / smallest eigenvalue) of X^T X, as numpy's condition number gives it; the same for 7 X; finite
    with fewer rows than columns, where it reads the ridge (at most log 1e6 plus the log of the column count, the
    most the largest eigenvalue can be over the mean; floored_share counts such inputs)."""
    import numpy as np

    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(1, 10, 8)
    expected = np.log(np.linalg.cond((x.T @ x).double().numpy()))
    assert expected > 4  # a spread of 10 in scale is 100 in the second moment
    assert log_condition_number(x).item() == pytest.approx(expected, rel=1e-4)
    assert log_condition_number(7 * x).item() == pytest.approx(expected, rel=1e-4)
    assert 10 < log_condition_number(x[:3]).item() < np.log(1e6 * 8)
    assert floored_share([x, 7 * x]) == 0 and floored_share([x, x[:3]]) == 0.5  # 3 rows: 5 zero eigenvalues


def test_each_distinct_input_of_the_attention_projections_is_conditioned_once(pipe):
    """A self-attention's query, key and value read one tensor, every cross-attention's key and value the same text
    states: per transformer block, four inputs (self-attention, its output projection, the cross-attention's query,
    its output projection) and the text states once, fourth in the order received."""
    unet = pipe.unet
    names = target_modules(unet, "attn")
    blocks = len(target_modules(unet, r"attn1\.to_q$"))
    texts = ["a red circle", "a small blue star"]
    cond = encode_text(pipe, texts)
    xt = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        conds = input_log_conditions(unet, names, lambda: predict(unet, xt, torch.tensor([10, 500]), cond))
    assert blocks >= 2 and len(conds) == 4 * blocks + 1, (blocks, len(conds))
    assert conds[3].item() == pytest.approx(log_condition_number(cond.hidden).item(), rel=1e-9)
    assert all(unet.get_submodule(name)._forward_pre_hooks == {} for name in names)  # the hooks are gone


def _descend(unet, term, steps: int = 20, lr: float = 3e-4) -> None:
    """`steps` Adam steps of `unet`'s trainable weights on `term()` alone."""
    optimizer = torch.optim.Adam([p for p in unet.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        term().backward()
        optimizer.step()


def test_descending_the_condition_term_ill_conditions_the_harmful_inputs_against_the_retain_ones(pipe):
    """The term is harm_weight * relu(harm_margin - gap), the gap the mean log condition number of the attention
    inputs on a harmful batch less that on a retain batch, read into the training log; 20 Adam steps on it alone
    widen the gap the same batches give by more than 1, both sides moving the paper's way: the harmful inputs worse
    conditioned, the retain ones better (measured: 16.57 -> 17.03 and 16.36 -> 12.91, the gap 0.20 -> 4.12)."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    condition = make_loss(pipe, teacher, DistillConfig(harm_margin=10.0, tamper="condition", harm_weight=2.0))
    plain = make_loss(pipe, teacher, DistillConfig())
    gen = lambda: step_generator(0, 0)  # noqa: E731 (the same batches every call)
    total = condition(unet, 0, gen())
    assert total.item() == pytest.approx(plain(unet, 0, gen()).item() + 2.0 * (10.0 - condition.last["condition_gap"]),
                                         rel=1e-5)
    gap = 10.0 - condition._conditioned(unet, gen()).item()  # the excess: harm_margin less the gap

    def sides():
        with torch.no_grad():
            return [input_log_conditions(unet, target_modules(unet, "attn"), error).mean().item()
                    for error in condition._harm_and_retain_errors(unet, gen())]

    harmful_before, retain_before = sides()
    assert harmful_before - retain_before == pytest.approx(gap, rel=1e-6)
    _descend(unet, lambda: condition._conditioned(unet, gen()))
    harmful_after, retain_after = sides()
    assert harmful_after - retain_after > gap + 1.0, (gap, harmful_after - retain_after)
    assert harmful_after > harmful_before + 0.2 and retain_after < retain_before - 1.0, \
        (harmful_before, harmful_after, retain_before, retain_after)


@pytest.mark.parametrize("tamper", ["condition", "noise"])
def test_a_tamper_read_at_the_defended_weights_with_a_simulated_attack_is_refused(pipe, tamper):
    _refused(pipe, DistillConfig(harm_margin=1.0, tamper=tamper, attack_sim_steps=4),
             rf"tamper={tamper} reads the defended weights, with no simulated attack: drop attack_sim_steps \(4\)")


def test_the_mmd_to_noise_is_near_0_for_standard_normal_vectors_and_not_for_others():
    """Squared MMD against standard normal vectors: 512 vectors of N(0, I) in 32 channels read under 0.02; shifted by
    1, or shrunk to a tenth, they read above 0.3 (measured: 0.007, 0.515, 0.865); one vector per batch element and
    position. Its gradient at the shifted vectors points back: a step against it lowers the reading."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 32, 8, 8, generator=g)
    readings = [mmd_to_noise(x, torch.Generator().manual_seed(1)).item() for x in (noise, noise + 1, noise / 10)]
    assert readings[0] < 0.02 and min(readings[1:]) > 0.3, readings
    shifted = (noise + 1).requires_grad_(True)
    mmd_to_noise(shifted, torch.Generator().manual_seed(1)).backward()
    assert shifted.grad.mean() > 0 and torch.isfinite(shifted.grad).all()
    stepped = shifted.detach() - 0.5 * shifted.grad / shifted.grad.abs().mean()
    assert mmd_to_noise(stepped, torch.Generator().manual_seed(1)).item() < readings[1] - 0.1


def test_each_block_of_the_unet_gives_its_output_once(pipe):
    """Down blocks (their hidden states, not the skip connections), the mid block, the up blocks: in that order,
    the last up block's output the width of the UNet's first block, at the latents' size; the hooks are gone after."""
    unet = pipe.unet
    xt = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = block_outputs(unet, lambda: predict(unet, xt, torch.tensor([10, 500]), encode_text(pipe, ["a"] * 2)))
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    assert len(outputs) == len(blocks) and all(isinstance(out, torch.Tensor) for out in outputs)
    assert tuple(outputs[-1].shape) == (2, unet.config.block_out_channels[0], 8, 8)
    assert all(block._forward_hooks == {} for block in blocks)


def test_descending_the_noise_term_brings_the_harmful_block_outputs_to_noise(pipe):
    """The term is harm_weight * relu(mmd - harm_margin), the block outputs' mean MMD to noise on a harmful batch,
    read into the training log; 20 Adam steps on it alone lower that MMD on the same batch to under half of what
    it was, and less on a retain batch, which nothing here holds (measured: 0.506 -> 0.085; retain 0.482 -> 0.196)."""
    teacher = copy.deepcopy(pipe.unet).requires_grad_(False)
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="full"))
    noising = make_loss(pipe, teacher, DistillConfig(harm_margin=1e-3, tamper="noise", harm_weight=2.0))
    plain = make_loss(pipe, teacher, DistillConfig())
    gen = lambda: step_generator(0, 0)  # noqa: E731 (the same batches every call)
    total = noising(unet, 0, gen())
    assert noising.last["noise_mmd"] > 0.1
    assert total.item() == pytest.approx(plain(unet, 0, gen()).item() + 2.0 * (noising.last["noise_mmd"] - 1e-3),
                                         rel=1e-5)

    def sides():
        with torch.no_grad():
            return [noise_discrepancy(unet, error, torch.Generator().manual_seed(1)).item()
                    for error in noising._harm_and_retain_errors(unet, gen())]

    harmful_before, retain_before = sides()
    _descend(unet, lambda: noising._noised(unet, gen()))
    harmful_after, retain_after = sides()
    assert harmful_after < harmful_before / 2, (harmful_before, harmful_after)
    assert harmful_before - harmful_after > retain_before - retain_after, (retain_before, retain_after)
