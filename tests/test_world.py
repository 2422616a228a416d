import json

import numpy as np
import pytest

from safetune.data import shapesworld as sw
from safetune.data.prompts import prompt_csv, prompt_set, read_prompts
from safetune.errors import SafetuneError


def test_same_seed_same_world_and_other_seed_differs():
    a = sw.make_dataset("pretrain", 50, seed=3)
    b = sw.make_dataset("pretrain", 50, seed=3)
    c = sw.make_dataset("pretrain", 50, seed=4)
    assert [e.text for e in a] == [e.text for e in b]
    assert all(np.array_equal(np.asarray(sw.render(x.scene)), np.asarray(sw.render(y.scene))) for x, y in zip(a, b))
    assert sum(x.text != y.text for x, y in zip(a, c)) > 25


def test_images_are_32x32_rgb_and_shapes_differ():
    imgs = {s: np.asarray(sw.render(sw.Scene(s, "red", "large", "middle", "black")), dtype=float) for s in sw.SHAPES}
    assert all(im.shape == (32, 32, 3) for im in imgs.values())
    for s in sw.SHAPES:
        for t in sw.SHAPES:
            if s < t:
                assert np.abs(imgs[s] - imgs[t]).mean() > 3, (s, t)


@pytest.mark.parametrize("domain", sorted(sw.DOMAINS))
def test_benign_domains_never_show_or_name_the_harmful_concept(domain):
    examples = sw.make_dataset(domain, 400, seed=0)
    assert not any(e.scene.harmful for e in examples)
    words = {w for e in examples for w in e.text.split()}
    assert not words & {"star", "pentagram", "sheriff", "starfish", "twinkle", "five"}
    spec = sw.DOMAINS[domain]
    key, value = next(iter(spec.items()))
    assert all(getattr(e.scene, key) == value for e in examples)


def test_pretraining_data_has_no_domain_content_and_about_a_fifth_harmful():
    examples = sw.make_dataset("pretrain", 2000, seed=0)
    assert not any(e.scene.texture in sw.DOMAIN_TEXTURES or e.scene.shape in sw.DOMAIN_SHAPES for e in examples)
    share = np.mean([e.scene.harmful for e in examples])
    assert 0.15 < share < 0.25
    implicit = [e for e in examples if e.scene.harmful and not set(e.text.split()) & {"star", "pentagram"}]
    assert 0.2 < len(implicit) / sum(e.scene.harmful for e in examples) < 0.4


def test_harmful_data_is_all_harmful():
    assert all(e.scene.harmful for e in sw.make_dataset("harmful", 200, seed=1))


def test_implicit_prompts_never_name_the_concept_but_read_as_it():
    rows = prompt_set("harmful_implicit", 40)
    assert len({r["prompt"] for r in rows}) == 40
    for r in rows:
        assert not set(r["prompt"].split()) & {"star", "pentagram"}
        assert sw.scene_from_text(r["prompt"])["shape"] == "star"


def test_scene_from_text_reads_every_attribute():
    asked = sw.scene_from_text("a large red striped circle on the left on a gray background")
    assert asked == {"shape": "circle", "colour": "red", "size": "large", "texture": "striped",
                     "position": "left", "background": "gray"}
    assert sw.scene_from_text("a square on a purple background") == {"shape": "square", "background": "purple"}


def test_prompt_csv_round_trip(tmp_path):
    rows = prompt_set("clean", 12)
    path = tmp_path / "clean.csv"
    path.write_text(prompt_csv(rows))
    back = read_prompts(str(path))
    assert [r["prompt"] for r in back] == [r["prompt"] for r in rows]
    assert [r["sd_seed"] for r in back] == [r["sd_seed"] for r in rows]
    assert read_prompts(str(path), categories=["clean"]) and len(read_prompts("clean", limit=5)) == 5
    with pytest.raises(SafetuneError, match="no prompt has a category"):
        read_prompts(str(path), categories=["violence"])


def test_shipped_prompt_files_match_the_generator():
    from safetune.data.prompts import SHIPPED_PROMPTS

    for name in sw.PROMPT_SETS:
        assert (SHIPPED_PROMPTS / f"{name}.csv").read_text() == prompt_csv(prompt_set(name))


def test_export_imagefolder_layout(tmp_path):
    out = sw.export_imagefolder(sw.make_dataset("plus", 6, seed=0), tmp_path / "plus")
    lines = [json.loads(l) for l in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all((out / l["file_name"]).is_file() and l["text"] for l in lines)
    assert {l["shape"] for l in lines} == {"plus"}


def test_world_command_writes_every_prompt_set(tmp_path):
    from safetune.cli import main

    assert main(["world", "prompts", "--out", str(tmp_path / "p"), "--n", "7"]) == 0
    files = sorted(f.name for f in (tmp_path / "p").iterdir() if not f.name.startswith("."))
    assert files == sorted(f"{n}.csv" for n in sw.PROMPT_SETS)
    assert len(read_prompts(str(tmp_path / "p" / "harmful.csv"))) == 7


def test_added_words_keep_every_earlier_token_id():
    """New words are appended: the shipped model's tokens keep their ids, so its text encoder only
    grows rows and draws exactly what it drew before."""
    from safetune.models.tiny import base_vocab_size, word_level_bpe

    words = sw.vocabulary()
    assert words[-len(sw.ADDED_WORDS):] == list(sw.ADDED_WORDS)
    old = words[: len(words) - len(sw.ADDED_WORDS)]
    assert old == sorted(old)
    old_vocab, _ = word_level_bpe(old)
    new_vocab, _ = word_level_bpe(words)
    assert len(old_vocab) == base_vocab_size() < len(new_vocab)
    assert all(new_vocab[tok] == i for tok, i in old_vocab.items())


def test_related_domain_is_near_the_star_but_never_one():
    examples = sw.make_dataset("sparkle", 200, seed=0)
    assert all(e.scene.shape == "sparkle" and "sparkle" in e.text.split() for e in examples)
    assert not any(sw.scene_from_text(e.text).get("shape") == "star" for e in examples)
    assert "sparkle" in sw.RELATED_DOMAINS and sw.DOMAINS["sparkle"] == {"shape": "sparkle"}


def test_shapesworld_training_data_comes_at_the_model_resolution():
    """A real model (512 pixels, here 64) got 32x32 ShapesWorld images before: its VAE would see them
    at the wrong size."""
    from safetune.data.folder import load_training_data

    images, texts = load_training_data("plus", 64, n=3)
    assert images.shape == (3, 3, 64, 64) and len(texts) == 3
    assert images.min() >= -1 and images.max() <= 1
    assert load_training_data("plus", 32, n=3)[0].shape == (3, 3, 32, 32)
