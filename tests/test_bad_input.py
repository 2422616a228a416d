"""The bad-input table of docs/bad-input.md: each row is tested here or in the test named there."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from safetune.cli import main
from safetune.errors import SafetuneError
from safetune.models.loading import SHIPPED_MODEL


def fails(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("safetune: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_model_directory_missing_a_component(tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    shutil.rmtree(model / "unet")
    fails(capsys, ["generate", "--model", str(model), "--prompts", "x", "--out", str(tmp_path / "o")], str(model))
    assert not (tmp_path / "o").exists()


def test_truncated_lora_file(tmp_path, capsys):
    f = tmp_path / "cut.safetensors"
    save_file({"unet.a.lora_A.weight": torch.zeros(4, 8), "unet.a.lora_B.weight": torch.zeros(8, 4)}, str(f))
    f.write_bytes(f.read_bytes()[:-40])
    fails(capsys, ["generate", "--lora", str(f), "--prompts", "x", "--out", str(tmp_path / "o")], "cut.safetensors",
          "corrupt or truncated")


def test_lora_for_another_base(tmp_path, capsys):
    f = tmp_path / "other.safetensors"
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    save_file({f"{name}.lora_A.weight": torch.zeros(4, 768), f"{name}.lora_B.weight": torch.zeros(32, 4)}, str(f))
    fails(capsys, ["evaluate", "--lora", str(f), "--prompts", "clean", "--out", str(tmp_path / "o")], "another base model")


def test_lora_scale_not_a_number(tmp_path, capsys):
    fails(capsys, ["generate", "--lora", "x.safetensors:half", "--prompts", "x", "--out", str(tmp_path / "o")], "half")


def test_lora_missing(tmp_path, capsys):
    fails(capsys, ["generate", "--lora", str(tmp_path / "none.safetensors"), "--prompts", "x", "--out",
                   str(tmp_path / "o")], "not found")


def make_folder(tmp_path, size=32, captions=True, broken=False):
    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(folder / "0.png")
    if broken:
        (folder / "0.png").write_bytes(b"not a png")
    if captions:
        (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "0.png", "text": "a plus"}) + "\n")
    return folder


@pytest.mark.parametrize("kind,needle", [("no_captions", "no metadata.jsonl"), ("broken", "unreadable image"),
                                         ("small", "smaller than the model")])
def test_bad_image_folders(tmp_path, capsys, kind, needle):
    folder = make_folder(tmp_path, size=16 if kind == "small" else 32, captions=kind != "no_captions",
                         broken=kind == "broken")
    fails(capsys, ["finetune", "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "ft.safetensors")], needle)
    assert not (tmp_path / "ft.safetensors").exists()


def test_caption_line_without_text(tmp_path, capsys):
    folder = make_folder(tmp_path)
    (folder / "metadata.jsonl").write_text('{"file_name": "0.png"}\n')
    fails(capsys, ["finetune", "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "f.safetensors")],
          "metadata.jsonl:1")


def test_lora_output_must_be_safetensors(tmp_path, capsys):
    fails(capsys, ["align", "--steps", "1", "--out", str(tmp_path / "safe.bin")], ".safetensors")


def test_zero_steps(tmp_path, capsys):
    fails(capsys, ["align", "--steps", "0", "--out", str(tmp_path / "s.safetensors")], "at least 1")


def test_unknown_method_is_refused_by_the_parser(tmp_path, capsys):
    assert main(["align", "--method", "magic", "--out", str(tmp_path / "s.safetensors")]) == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_non_numeric_seed_in_i2p_csv(tmp_path, capsys):
    f = tmp_path / "i2p.csv"
    f.write_text("prompt,sd_seed\na star,abc\n")
    fails(capsys, ["evaluate", "--prompts", str(f), "--out", str(tmp_path / "o")], "sd_seed", "abc")


def test_disk_full_on_save_leaves_nothing(tmp_path, monkeypatch):
    import safetune.lora.weights as lw

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lw, "save_file", no_space)
    lora = lw.LoRA({"unet.x": (torch.zeros(1, 2), torch.zeros(2, 1))})
    with pytest.raises(SafetuneError, match="No space left on device"):
        lora.save(tmp_path / "l.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint(tmp_path):
    from safetune.checkpoint import load_checkpoint

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "state.json").write_text("{broken")
    with pytest.raises(SafetuneError, match="delete it to start over"):
        load_checkpoint(tmp_path / "ck", {})


def test_unknown_shapesworld_set_or_missing_folder(tmp_path, capsys):
    fails(capsys, ["finetune", "--data", "pokemon", "--steps", "1", "--out", str(tmp_path / "f.safetensors")],
          "data folder not found")


def test_outputs_get_ordinary_permissions(tmp_path):
    from safetune.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_a_misspelt_data_set_gets_a_did_you_mean(tmp_path, capsys):
    assert main(["finetune", "--data", "sparkel", "--out", str(tmp_path / "f.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'sparkle'?" in err and err.count("\n") == 1
