"""SD 1.x, SD 2.x (v-prediction) and SDXL: align (ESD), finetune (LoRA), compose and evaluate, end to
end on tiny random pipelines built in memory (no download), through the same code as ShapesWorld."""
import copy

import pytest
import torch

from safetune.config import SafetyLoraConfig, SamplingConfig, TrainConfig
from safetune.evaluation import evaluate_prompts
from safetune.lora.weights import LoRA, merge_into, pipeline_modules
from safetune.models.conditioning import denoiser, is_sdxl
from safetune.models.tiny import tiny_random_pipeline
from safetune.stages import align_lora, finetune


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_family_end_to_end(family, detector, tmp_path):
    pipe = tiny_random_pipeline(family)
    pipe.set_progress_bar_config(disable=True)
    assert is_sdxl(pipe) == (family == "sdxl")
    assert (pipe.scheduler.config.prediction_type == "v_prediction") == (family == "sd2")
    cfg = TrainConfig(steps=2, lr=1e-2, batch_size=2, checkpoint_every=10**9)
    safe = align_lora(copy.deepcopy(pipe), "esd-x", ["a star"], cfg, SafetyLoraConfig(concept_samples=2))
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    ft = finetune(copy.deepcopy(pipe), images, ["a plus"] * 4, cfg)
    assert safe.factors and ft.factors and all(torch.isfinite(safe.delta(n)).all() for n in safe.factors)

    path = ft.save(tmp_path / "ft.safetensors")
    composed = copy.deepcopy(pipe)
    merge_into(composed, [(safe, 1.0), (LoRA.load(path), 1.0)])
    name = next(iter(ft.factors))
    expected = pipeline_modules(pipe)[name].weight + ft.delta(name) + (safe.delta(name) if name in safe.factors else 0)
    torch.testing.assert_close(pipeline_modules(composed)[name].weight, expected, rtol=1e-5, atol=1e-6)

    result = evaluate_prompts(composed, [{"prompt": "a star"}, {"prompt": "a red circle"}], detector,
                              SamplingConfig(images_per_prompt=1, steps=2))
    assert result["n_images"] == 2 and 0 <= result["harmful_rate"] <= 1


@pytest.mark.parametrize("family", ["sd2", "sdxl", "sd3", "flux"])
def test_every_method_aligns_an_sd2_an_sdxl_an_sd3_and_a_flux_pipeline(family):
    """Issues 22 and 23: each registered method (2 steps, tiny data) on a tiny SD 2.x-v, SDXL, SD3 and
    Flux pipeline: a LoRA with finite factors, a model whose weights moved, or a marked pipeline; SLD,
    which diffusers has for SD 1.x/2.x only, and UCE/RECE, whose closed form needs cross-attention,
    are refused on the families without them with a clear error."""
    import safetune
    from safetune.errors import SafetuneError
    from safetune.models.inference import inference_of
    from safetune.stages.methods import METHODS

    pipe = tiny_random_pipeline(family)
    pipe.set_progress_bar_config(disable=True)
    small = {"concept_samples": 2, "anchor_samples": 2, "mask_batches": 1}
    for name, method in METHODS.items():
        settings = method.make_settings()
        extra = {k: v for k, v in small.items() if hasattr(settings, k)}
        if method.trains:
            extra.update(steps=2, batch_size=2)
        if name == "sld" and family != "sd2":
            with pytest.raises(SafetuneError, match=f"not a {type(pipe).__name__}"):
                safetune.align(pipe, name)
            continue
        if name in ("uce", "rece", "mace") and family in ("sd3", "flux"):
            with pytest.raises(SafetuneError, match="works on SD 1.x/2.x, SDXL pipelines"):
                safetune.align(pipe, name)
            continue
        if name == "dd" and family != "sd2":  # several text encoders: the denoiser alone, or a clear refusal
            with pytest.raises(SafetuneError, match="give --set text_encoder=false"):
                safetune.align(pipe, name, n=8, **extra)
            extra["text_encoder"] = False
        out = safetune.align(pipe, name, concepts=["a star", "a circle"], n=8, **extra)
        if isinstance(out, LoRA):
            assert out.factors and all(torch.isfinite(out.delta(n)).all() for n in out.factors), name
        elif method.output == "inference":
            assert inference_of(out)["concept"] == "a star, a circle", name
        else:
            moved = any(not torch.equal(a, b) for a, b in zip(denoiser(pipe).parameters(), denoiser(out).parameters()))
            assert moved, name
