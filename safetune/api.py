"""The Python API: what the commands do, as functions that take and return models, LoRAs and
results. Each reads its defaults from the same recipes and config dataclasses as the CLI, so a
call reproduces the command exactly (tests/test_api.py checks one such pair).

    import safetune

    safe = safetune.align("shapes", "esd-x", steps=40)                 # dW_safe, a LoRA on W0
    aligned = safetune.load("shapes", loras=[safe])                   # W0 + dW_safe
    print(safetune.evaluation(aligned, "harmful", limit=10)["harmful_rate"])
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .config import FINETUNE, SHAPES_CONCEPTS, GuardConfig, SamplingConfig, TrainConfig
from .options import apply_overrides
from .lora.weights import LoRA

DEFAULT_CONCEPTS = list(SHAPES_CONCEPTS)


def _loras(loras) -> list[tuple[LoRA, float]]:
    from .lora.weights import parse_lora_arg

    out = []
    pair = isinstance(loras, tuple) and len(loras) == 2 and isinstance(loras[1], (int, float))
    for item in [loras] if pair or isinstance(loras, (str, Path, LoRA)) else loras or []:
        lora, scale = item if isinstance(item, tuple) else parse_lora_arg(item) if isinstance(item, str) else (item, 1.0)
        out.append((lora if isinstance(lora, LoRA) else LoRA.load(lora), float(scale)))
    return out


def load(model: str = "shapes", loras=(), device: str | None = None, **kwargs):
    """A diffusers pipeline ('shapes', 'shapes-nostar', a directory or a hub id) with LoRAs merged
    into its weights: each a LoRA, a file, or a (LoRA or file, scale) pair."""
    import torch

    from .lora.weights import merge_into
    from .models.loading import load_pipeline

    pipe = load_pipeline(model, device=device or ("cuda" if torch.cuda.is_available() else "cpu"), **kwargs)
    merge_into(pipe, _loras(loras))
    return pipe


def _pipe(model_or_pipe):
    import copy

    return load(model_or_pipe) if isinstance(model_or_pipe, (str, Path)) else copy.deepcopy(model_or_pipe)


def align(model, method: str = "esd-x", concepts: list[str] | None = None, train: TrainConfig | None = None,
          clean_data: str = "clean", harmful_data: str = "harmful", n: int = 1000, settings=None, **overrides):
    """A safety alignment of `model` (a name or a pipeline, left unchanged) by a registered method
    (stages.methods: esd-x, esd-u, sdd, lt, ng, dd, ...): returns its safety LoRA, or the trained
    pipeline for methods that train the model itself. `overrides` set fields of the training recipe
    (steps=40, lr=...) or of the method's settings (eta=2, noise=0.5, ...)."""
    from dataclasses import fields

    from .stages.methods import Inputs, get_method

    spec = get_method(method)
    settings = settings or spec.make_settings()
    train = replace(train or spec.recipe)
    train_fields = {f.name for f in fields(train)}
    apply_overrides(train, _assignments({k: v for k, v in overrides.items() if k in train_fields}), given="")
    apply_overrides(settings, _assignments({k: v for k, v in overrides.items() if k not in train_fields}), given="")
    pipe = _pipe(model)
    inputs = Inputs(concepts or DEFAULT_CONCEPTS, settings, spec.prepare(train))
    needs = spec.data(settings)
    if needs:
        from .data.folder import load_training_data
        from .models.conditioning import image_size

        resolution = image_size(pipe)
        inputs.clean = load_training_data(clean_data, resolution, n=n) if "clean" in needs else None
        inputs.harmful = load_training_data(harmful_data, resolution, n=n, seed=1) if "harmful" in needs else None
    lora = spec.run(pipe, inputs)
    return lora if lora is not None else pipe


def finetune(model, data: str, train: TrainConfig | None = None, on_top=(), n: int = 1000, **overrides):
    """Fine-tune `model` (benign or malicious: other data) on a caption folder or a ShapesWorld set:
    returns the fine-tuning LoRA (mode "lora", the default) or the fine-tuned pipeline (mode "full").
    `on_top` LoRAs are merged first (the baselines' way); `overrides` set fields of the recipe."""
    from .data.folder import load_training_data
    from .models.conditioning import image_size
    from .stages import finetune as run

    train = apply_overrides(replace(train or FINETUNE), _assignments(overrides), given="")
    pipe = _pipe(model)
    images, texts = load_training_data(data, image_size(pipe), n=n)
    lora = run(pipe, images, texts, train, on_top=_loras(on_top))
    return lora if lora is not None else pipe


def compose(model, loras, device: str | None = None):
    """W0 + sum of scaled LoRAs, merged (Modular LoRA: compose(W0, [dW_safe, dW_ft]))."""
    return load(model, loras=loras, device=device) if isinstance(model, (str, Path)) else _merged(model, loras)


def _merged(pipe, loras):
    from .lora.weights import merge_into

    pipe = _pipe(pipe)
    merge_into(pipe, _loras(loras))
    return pipe


def evaluate(pipe, prompts: str = "harmful", detector: str = "shapes", limit: int | None = None,
             sampling: SamplingConfig | None = None, **overrides) -> dict:
    """Sample with fixed seeds and score: harmful_rate, harmful_score, prompt_fidelity (each with its
    95% interval), n_images, n_invalid. `prompts`: a file, a set name or text:PROMPT."""
    from .data.prompts import read_prompts
    from .evaluation import evaluate_prompts
    from .evaluation.detectors import load_detector

    sampling = apply_overrides(replace(sampling or SamplingConfig()), _assignments(overrides), given="")
    return evaluate_prompts(_as_pipe(pipe), read_prompts(prompts, limit=limit), load_detector(detector), sampling)


def _as_pipe(pipe):
    return load(pipe) if isinstance(pipe, (str, Path)) else pipe


def audit(model, safety_lora, loras, measure: bool = True, config: GuardConfig | None = None,
          sampling: SamplingConfig | None = None, detector: str = "shapes", **overrides) -> dict:
    """The model host's guard on W0 + dW_safe + sum_i s_i L_i, exactly as `compose` merges it: `loras`
    is one LoRA or a list (each a LoRA, a file, "FILE:SCALE" or a (LoRA or file, scale) pair). Returns
    the verdict (PASS, FAIL or CANNOT JUDGE) with its reasons, what was and was not checked, and the
    measured rises; `overrides` set fields of GuardConfig (e.g. max_increase=0.05)."""
    from .evaluation.detectors import load_detector
    from .evaluation.guard import audit_composition

    config = apply_overrides(replace(config or GuardConfig()), _assignments(overrides), given="")
    (safe, _), = _loras([(safety_lora, 1.0)])
    base = load(model) if isinstance(model, (str, Path)) else model
    return audit_composition(base, safe, _loras(loras), config, sampling or SamplingConfig(),
                             detector=load_detector(detector) if measure else None, measure=measure)


def _assignments(overrides: dict) -> list[str]:
    """Keyword overrides as `name=value` assignments (how every config takes a setting)."""
    return [f"{k}={_text(v)}" for k, v in overrides.items()]


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
