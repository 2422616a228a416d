import pytest
import torch
from safetensors.torch import load_file

from safetune import train as trainer
from safetune.stages import pretraining as pt

TINY = pt.PretrainConfig(pool=64, vae_steps=4, vae_batch=8, unet_steps=8, unet_batch=8, checkpoint_every=4)


class Killed(Exception):
    pass


def test_pretrain_resumes_exactly_after_a_kill(tmp_path, monkeypatch):
    pt.pretrain(tmp_path / "straight", TINY)

    real_save = trainer.save_checkpoint

    def save_then_die(path, step, *args, **kwargs):
        real_save(path, step, *args, **kwargs)
        if path.name == "unet" and step == 4:
            raise Killed

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        pt.pretrain(tmp_path / "resumed", TINY)
    assert not (tmp_path / "resumed").exists()  # no half-written model
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    pt.pretrain(tmp_path / "resumed", TINY)

    for part in ("unet", "text_encoder", "vae"):
        a = load_file(str(next((tmp_path / "straight" / part).glob("*.safetensors"))))
        b = load_file(str(next((tmp_path / "resumed" / part).glob("*.safetensors"))))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_checkpoint_after_warmup_loads_with_weights_only(tmp_path):
    """Past the warmup the learning-rate factor comes from numpy's cosine; a numpy scalar in the
    optimizer state made every resume after step 100 fail (weights_only refuses numpy globals)."""
    from safetune.checkpoint import load_checkpoint, save_checkpoint
    from safetune.config import TrainConfig

    config = TrainConfig(steps=300, lr=1e-3, lr_schedule="cosine", warmup_steps=100)
    assert type(trainer.lr_factor(150, config)) is float
    assert trainer.lr_factor(0, config) == pytest.approx(0.01) and trainer.lr_factor(299, config) == pytest.approx(0.1, abs=1e-3)
    module = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    for step in range(150):
        for group in opt.param_groups:
            group["lr"] = config.lr * trainer.lr_factor(step, config)
        module(torch.ones(1, 2)).sum().backward()
        opt.step()
    save_checkpoint(tmp_path / "ck", 150, {"m": module}, opt)
    assert load_checkpoint(tmp_path / "ck", {"m": module}, opt)["step"] == 150
