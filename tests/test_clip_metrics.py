"""CLIP score, Q16 and aesthetic on a tiny random CLIP saved locally (the real loading path);
missing weights are an error naming what to download, never a silent skip."""
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from safetune.errors import SafetuneError
from safetune.evaluation.clip import Q16, Aesthetic, ClipScorer, inception_fid


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from safetune.models.tiny import write_tokenizer

    d = tmp_path_factory.mktemp("clip")
    write_tokenizer(d / "tok")
    tok = CLIPTokenizer.from_pretrained(str(d / "tok"))
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok.get_vocab()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(d / "model")
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(d / "model")
    return d / "model"


def images(n):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def test_clip_score_q16_and_aesthetic(clip_dir, tmp_path):
    clip = ClipScorer(clip_dir)
    scores = clip.clip_scores(images(3), ["a red circle", "a star", "a blue square"])
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    save_file({"prompts": torch.randn(2, 16)}, str(tmp_path / "q16.safetensors"))
    q = Q16(clip, tmp_path / "q16.safetensors").harmful_scores(images(2))
    assert q.shape == (2,) and ((q >= 0) & (q <= 1)).all()
    torch.save({"layer.weight": torch.randn(1, 16), "layer.bias": torch.zeros(1)}, tmp_path / "aes.pth")
    a = Aesthetic(clip, tmp_path / "aes.pth").scores(images(2))
    assert a.shape == (2,) and np.isfinite(a).all()


@pytest.mark.parametrize("make", [lambda p: ClipScorer(p), lambda p: inception_fid(images(1), images(1), p)])
def test_missing_weights_name_the_download(make, tmp_path):
    with pytest.raises(SafetuneError, match="download"):
        make(tmp_path / "nothing-here")


def test_evaluate_command_adds_clip_score_and_runs_q16_as_a_detector(clip_dir, tmp_path):
    """The flags the download messages name exist: --clip adds clip_score, --detector q16 scores harm."""
    import json

    from safetune.cli import main

    save_file({"prompts": torch.randn(2, 16)}, str(tmp_path / "q16.safetensors"))
    argv = ["evaluate", "--prompts", "a red star", "--images-per-prompt", "2", "--steps", "2", "--clip", str(clip_dir)]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert 0 <= res["clip_score_ci95"][0] <= res["clip_score"] <= res["clip_score_ci95"][1] <= 1
    assert main(argv + ["--detector", "q16", "--q16", str(tmp_path / "q16.safetensors"), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["detector"] == "q16"
    assert main(argv[:-2] + ["--q16", str(tmp_path / "q16.safetensors"), "--out", str(tmp_path / "c")]) == 2
