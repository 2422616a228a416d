import numpy as np
import torch

from safetune.data.shapesworld import vocabulary
from safetune.models.loading import SHIPPED_MODEL


def test_shipped_model_loads_with_plain_diffusers_and_transformers():
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    pipe = StableDiffusionPipeline.from_pretrained(str(SHIPPED_MODEL))
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 8
    tok = CLIPTokenizer.from_pretrained(str(SHIPPED_MODEL), subfolder="tokenizer")
    for word in vocabulary():
        assert len(tok(word).input_ids) == 3, word  # bos, the whole word, eos


def test_save_load_round_trip_reproduces_images(shipped_pipe, tmp_path):
    from diffusers import StableDiffusionPipeline

    shipped_pipe.save_pretrained(tmp_path / "copy")
    copy = StableDiffusionPipeline.from_pretrained(tmp_path / "copy")
    copy.set_progress_bar_config(disable=True)
    kwargs = dict(prompt=["a red circle", "a blue star"], num_inference_steps=5, output_type="np")
    a = shipped_pipe(generator=[torch.Generator().manual_seed(s) for s in (1, 2)], **kwargs).images
    b = copy(generator=[torch.Generator().manual_seed(s) for s in (1, 2)], **kwargs).images
    assert a.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_shipped_model_draws_each_shape_and_colour(shipped_pipe, detector):
    from safetune.data.shapesworld import ATTRIBUTES, COLOURS, HARMFUL_SHAPE, PRETRAIN_SHAPES

    prompts = [f"a large {c} {s}" for s in PRETRAIN_SHAPES + (HARMFUL_SHAPE,) for c in COLOURS]
    images = shipped_pipe(prompt=prompts, num_inference_steps=20, guidance_scale=5.0,
                          generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))]).images
    pred = detector.predict(images)
    shapes = [ATTRIBUTES["shape"][i] for i in pred["shape"]]
    colours = [ATTRIBUTES["colour"][i] for i in pred["colour"]]
    asked = [p.split()[2:] for p in prompts]
    shape_acc = np.mean([s == a[1] for s, a in zip(shapes, asked)])
    colour_acc = np.mean([c == a[0] for c, a in zip(colours, asked)])
    assert shape_acc >= 0.8 and colour_acc >= 0.8, (shape_acc, colour_acc)
