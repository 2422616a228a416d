"""Load a pipeline: a shipped miniature model, a local diffusers directory, or a hub id."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import SafetuneError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHIPPED_MODEL = ASSETS / "shapes-sd"
# the never-trained reference: pretrained like shapes-sd on `clean` only (no star image, no star word)
NOSTAR_MODEL = ASSETS / "shapes-sd-nostar"
# its further pretrainings (seeds 1 and 2, the same recipe): the reference's own training seeds in a study
NOSTAR_SEEDS = {f"shapes-nostar-seed{seed}": ASSETS / f"shapes-sd-nostar-seed{seed}" for seed in (1, 2)}
SHIPPED_MODELS = {"shapes": SHIPPED_MODEL, "shapes-sd": SHIPPED_MODEL, "shapesworld": SHIPPED_MODEL,
                  "shapes-nostar": NOSTAR_MODEL, "shapes-sd-nostar": NOSTAR_MODEL, **NOSTAR_SEEDS}

log = logging.getLogger(__name__)


def resolve_model(model: str | None) -> str:
    """A shipped model for None/'shapes'/'shapes-nostar', a local path as is, or a hub id to download."""
    if model is None or model in SHIPPED_MODELS:
        return str(SHIPPED_MODELS.get(model or "shapes"))
    path = Path(model)
    if path.exists():
        if not path.is_dir() or not (path / "model_index.json").is_file():
            raise SafetuneError(f"{model}: not a diffusers model directory (no model_index.json); "
                                "give a directory written by save_pretrained, a hub id, or 'shapes'")
        import json

        try:
            check_family(model, json.loads((path / "model_index.json").read_text()).get("_class_name", ""))
        except ValueError:
            raise SafetuneError(f"{model}/model_index.json: not valid JSON; give a directory written by "
                                "save_pretrained") from None
        return str(path)
    if model.count("/") == 1 and not model.startswith((".", "/")):
        return model  # a hub id: from_pretrained downloads it (or reads the local HF cache)
    raise SafetuneError(f"{model}: no such model directory; give a diffusers directory, "
                        "a hub id like 'CompVis/stable-diffusion-v1-4', 'shapes' or 'shapes-nostar'")


SUPPORTED_PIPELINES = {"StableDiffusionPipeline": "SD 1.x and 2.x", "StableDiffusionXLPipeline": "SDXL",
                       "StableDiffusion3Pipeline": "SD3", "FluxPipeline": "Flux"}
FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl",  # models.conditioning's keys
            "StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux"}
FAMILY_NAMES = {"sd": "SD 1.x/2.x", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux"}


def model_family(model: str | None) -> str | None:
    """The family of a shipped model or a local diffusers directory, read from its model_index.json
    without loading it ('sd', 'sdxl', 'sd3', 'flux'); None for a hub id (known once loaded)."""
    import json

    index = Path(resolve_model(model)) / "model_index.json"
    if not index.is_file():
        return None
    return FAMILIES.get(json.loads(index.read_text()).get("_class_name", ""))


def check_family(model: str, pipeline_class: str) -> None:
    """Refuse, in one line, a pipeline of a family safetune does not train (its conditioning and LoRA
    targets would fail deep inside with a TypeError)."""
    if pipeline_class not in SUPPORTED_PIPELINES:
        families = ", ".join(f"{v} ({k})" for k, v in SUPPORTED_PIPELINES.items())
        raise SafetuneError(f"{model}: a {pipeline_class or 'pipeline without a _class_name'}; safetune supports "
                            f"{families}")


def load_pipeline(model: str | None = None, device: str = "cpu", dtype=None, revision: str | None = None,
                  variant: str | None = None):
    """A diffusers pipeline from a shipped name, a local directory or a hub id, in float32 unless
    `dtype` says otherwise, with progress bars off and (SD 1.x) the post-hoc safety checker off:
    the research question is what the weights draw. LoRAs: lora.weights.load_with_loras."""
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # loading bars are noise; training keeps its own
    transformers.utils.logging.disable_progress_bar()
    if not logging.getLogger("safetune").isEnabledFor(logging.DEBUG):
        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()  # its hub notices ("Couldn't connect ...") are not our output
    from diffusers import DiffusionPipeline
    source = resolve_model(model)
    try:
        # the research question is what the weights draw: the SD 1.x post-hoc safety checker stays off
        extra = {"safety_checker": None} if _has_safety_checker(source) else {}
        pipe = DiffusionPipeline.from_pretrained(source, dtype=dtype or torch.float32,
                                                 revision=revision, variant=variant, **extra)
    except (OSError, ValueError, EnvironmentError) as exc:
        if not Path(source).exists() and "cached" in str(exc):
            raise SafetuneError(f"{model}: not in the local Hugging Face cache, and the hub cannot be reached from "
                                "here (offline, or HF_HUB_OFFLINE=1); download it where there is internet "
                                f"(`huggingface-cli download {model}`) or give a local diffusers directory") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SafetuneError(f"{model}: cannot load the pipeline ({first})") from exc
    check_family(model or "shapes", type(pipe).__name__)  # a hub id: known only once loaded
    pipe.set_progress_bar_config(disable=True)
    if Path(source).is_dir():  # a negative prompt or SLD saved with it (models.inference)
        from .inference import restore_inference

        restore_inference(pipe, Path(source))
    return pipe.to(device)


def is_shipped_vocabulary(pipe) -> bool:
    """Does the pipeline use ShapesWorld's word-level vocabulary (a shipped or self-pretrained model)?"""
    tokenizer = getattr(pipe, "tokenizer", None)
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    return len(vocab) < 1000 and "star</w>" in vocab and "circle</w>" in vocab


def _has_safety_checker(source: str) -> bool:
    index = Path(source) / "model_index.json"
    if not index.is_file():
        return True  # a hub SD 1.x id ships one; from_pretrained ignores the argument otherwise
    import json

    return json.loads(index.read_text()).get("safety_checker", [None])[0] is not None
