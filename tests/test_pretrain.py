import pytest
import torch
from safetensors.torch import load_file

from safetune.models import pretrain as pt

TINY = pt.PretrainConfig(pool=64, vae_steps=4, vae_batch=8, unet_steps=8, unet_batch=8, checkpoint_every=4)


class Killed(Exception):
    pass


def test_pretrain_resumes_exactly_after_a_kill(tmp_path, monkeypatch):
    pt.pretrain(tmp_path / "straight", TINY)

    real_save = pt.save_checkpoint

    def save_then_die(path, step, *args, **kwargs):
        real_save(path, step, *args, **kwargs)
        if path.name == "unet" and step == 4:
            raise Killed

    monkeypatch.setattr(pt, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        pt.pretrain(tmp_path / "resumed", TINY)
    assert not (tmp_path / "resumed").exists()  # no half-written model
    monkeypatch.setattr(pt, "save_checkpoint", real_save)
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

    assert type(pt._cosine_lr(500, 1000)) is float
    module = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: pt._cosine_lr(s, 300))
    for _ in range(150):
        module(torch.ones(1, 2)).sum().backward()
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "ck", 150, {"m": module}, opt)
    assert load_checkpoint(tmp_path / "ck", {"m": module}, opt)["step"] == 150
