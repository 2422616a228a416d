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
