"""The trainer and every loss: gradients reach what a stage trains, resume is exact."""
import copy

import pytest
import torch

from safetune.checkpoint import step_generator
from safetune.config import ForgettingConfig, TrainConfig
from safetune.models.conditioning import encode_text, training_scheduler
from safetune.stages.losses import DenoisingLoss, ESDLoss, SDDLoss
from safetune.stages.lt_ng import ForgettingLoss
from safetune.train import extract_lora, prepare_trainable, remove_lora, train


@pytest.fixture(scope="module")
def setup():
    from safetune.models.tiny import assemble_pipeline, build_components

    pipe = assemble_pipeline(build_components(seed=2))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 4, 8, 8, generator=g)
    cond = encode_text(pipe, ["a star", "a pentagram"])
    uncond = encode_text(pipe, [""])
    sched = training_scheduler(pipe)
    losses = {
        "denoising": lambda: DenoisingLoss(x0, cond.repeat(8), sched, 4),
        "esd": lambda: ESDLoss(x0, cond, uncond, sched, 4, eta=1.0),
        "sdd": lambda: SDDLoss(x0, cond, uncond, sched, 4),
        "lt": lambda: ForgettingLoss(x0[:8], cond.repeat(4), x0[8:] + 1, cond.repeat(4), sched, 4,
                                     ForgettingConfig(variant="lt", margin=1000.0)),
    }
    return pipe, losses


@pytest.mark.parametrize("loss_name", ["denoising", "esd", "sdd"])
def test_each_loss_sends_gradient_to_the_lora_only(setup, loss_name):
    pipe, losses = setup
    unet = copy.deepcopy(pipe.unet)
    config = TrainConfig(mode="lora", targets="xattn")
    params = prepare_trainable(unet, config)
    loss_fn = losses[loss_name]()
    for step in range(2):  # B starts at zero: ESD/SDD targets differ from the prediction from step 0
        loss = loss_fn(unet, step, step_generator(0, step))
        loss.backward()
        assert torch.isfinite(loss) and loss.item() > 0
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p -= 0.1 * p.grad
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert all(p.grad is None for n, p in unet.named_parameters() if "lora_" not in n)


def test_full_mode_trains_every_weight(setup):
    pipe, losses = setup
    unet = copy.deepcopy(pipe.unet)
    params = prepare_trainable(unet, TrainConfig(mode="full"))
    losses["denoising"]()(unet, 0, step_generator(0, 0)).backward()
    assert len(params) == len(list(unet.parameters()))
    assert sum(p.grad is not None for p in params) > 0.9 * len(params)


@pytest.mark.parametrize("loss_name", ["esd", "sdd", "lt"])
def test_resume_after_a_kill_gives_the_same_lora(setup, tmp_path, loss_name):
    """A run killed at step 4 and resumed by a new process (a fresh loss object: SDD's teacher and
    LT's class centres come from the checkpoint) ends with the uninterrupted run's LoRA."""
    pipe, losses = setup
    config = TrainConfig(steps=6, lr=1e-2, batch_size=4, checkpoint_every=3, mode="lora", targets="attn")

    def run(unet, loss_fn, ckpt):
        unet, _ = train(unet, loss_fn, config, ckpt)
        return extract_lora(unet, config)

    straight = run(copy.deepcopy(pipe.unet), losses[loss_name](), tmp_path / "a")

    class Killed(Exception):
        pass

    dying = losses[loss_name]()

    class DiesAt4(type(dying)):
        def __call__(self, unet, step, gen):
            if step == 4:
                raise Killed
            return super().__call__(unet, step, gen)

    dying.__class__ = DiesAt4
    with pytest.raises(Killed):
        train(copy.deepcopy(pipe.unet), dying, config, tmp_path / "b")
    assert (tmp_path / "b" / "state.json").exists()
    resumed = run(copy.deepcopy(pipe.unet), losses[loss_name](), tmp_path / "b")
    assert not (tmp_path / "b").exists()  # removed once the run completes
    for name in straight.factors:
        torch.testing.assert_close(resumed.delta(name), straight.delta(name), rtol=0, atol=1e-6)
    assert straight.delta(name).abs().sum() > 0


def test_nan_loss_stops_with_step_and_keeps_checkpoint(setup, tmp_path):
    pipe, _ = setup
    config = TrainConfig(steps=5, mode="lora", checkpoint_every=100)

    def nan_at_2(unet, step, gen):
        out = unet(torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 16, 64)).sample.mean()
        return out * float("nan") if step == 2 else out

    with pytest.raises(FloatingPointError, match="at step 2"):
        train(copy.deepcopy(pipe.unet), nan_at_2, config, tmp_path / "ck")
    assert (tmp_path / "ck" / "state.json").exists()


def test_remove_lora_restores_a_plain_unet(setup):
    pipe, _ = setup
    unet = copy.deepcopy(pipe.unet)
    prepare_trainable(unet, TrainConfig(mode="lora"))
    remove_lora(unet)
    assert set(unet.state_dict()) == set(pipe.unet.state_dict())
