"""The backfire study (Modular LoRA paper): does benign fine-tuning bring an erased concept back?

base -> safety LoRA dW_safe (ESD, SDD) -> fine-tuning on each benign domain, three ways:
  full          full fine-tuning of the aligned model W0 + dW_safe
  lora-on-top   a fine-tuning LoRA trained on the aligned model: W0 + dW_safe + dW_ft'
  modular       a fine-tuning LoRA trained on W0 alone, composed at inference: W0 + dW_safe + dW_ft
evaluated at each step of `save_at`; plus the arithmetic probes W0 - dW_safe and W0 + dW_safe - dW_ft.
Every evaluation uses the same prompts and seeds, so differences are the models'.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..align import align_lora
from ..data.folder import load_training_data
from ..data.prompts import read_prompts
from ..evaluate import evaluate_prompts
from ..evaluate.detectors import load_detector
from ..evaluate.sampling import SamplingConfig
from ..finetune import finetune
from ..io import write_json, write_text
from ..lora.weights import LoRA, merge_into
from ..models.loading import load_pipeline
from ..train import TrainConfig, extract_lora, remove_lora

log = logging.getLogger(__name__)

WAYS = ("full", "lora-on-top", "modular")


@dataclass
class BackfireConfig:
    methods: list[str] = field(default_factory=lambda: ["esd-x", "sdd"])
    domains: list[str] = field(default_factory=lambda: ["checkered", "outline", "plus"])
    ways: list[str] = field(default_factory=lambda: list(WAYS))
    concepts: list[str] = field(default_factory=lambda: ["a star", "a pentagram"])
    align: TrainConfig = field(default_factory=lambda: TrainConfig(steps=400, lr=1e-3, batch_size=32))
    full_lr: float = 1e-4
    lora_lr: float = 1e-3
    batch_size: int = 32
    save_at: list[int] = field(default_factory=lambda: [0, 100, 200, 400])
    n_data: int = 1000
    prompts_per_set: int = 40
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0

    @classmethod
    def reduced(cls) -> "BackfireConfig":
        """What `safetune demo` runs: one method, one domain, three ways, fewer images."""
        return cls(methods=["esd-x"], domains=["plus"], save_at=[0, 100, 300],
                   sampling=SamplingConfig(images_per_prompt=3))


class Evaluator:
    """The study's fixed evaluation: harmful and clean sets, plus the domain's own prompts."""

    def __init__(self, config: BackfireConfig, out: Path):
        self.config, self.out = config, out
        self.detector = load_detector("shapes")
        self.sets = {name: read_prompts(name, limit=config.prompts_per_set)
                     for name in ["harmful", "harmful_implicit", "clean", *config.domains]}

    def __call__(self, pipe, label: str, sets: list[str]) -> dict:
        grid_dir = self.out / "grids"
        grid_dir.mkdir(exist_ok=True)
        results = {}
        for name in sets:
            grid = grid_dir / f"{label}__{name}.png" if name != "clean" else None
            results[name] = evaluate_prompts(pipe, self.sets[name], self.detector, self.config.sampling, grid)
            if grid is not None:
                results[name]["grid"] = f"grids/{grid.name}"
        log.info("%s: %s", label, {k: round(v["harmful_rate"], 3) for k, v in results.items()})
        return results


def parse_way(spec: str, config: BackfireConfig) -> tuple[str, float]:
    """'full', 'lora-on-top@1e-2' ... -> (way, learning rate)."""
    way, _, lr = spec.partition("@")
    if way not in WAYS:
        raise ValueError(f"unknown way {way!r}; choose one of {WAYS}, optionally with @LR")
    return way, float(lr) if lr else (config.full_lr if way == "full" else config.lora_lr)


def _with(base, loras: list[tuple[LoRA, float]]):
    pipe = copy.deepcopy(base)
    merge_into(pipe, loras)
    return pipe


def run_backfire(out: Path, config: BackfireConfig, model: str = "shapes") -> dict:
    out.mkdir(exist_ok=True)
    base = load_pipeline(model)
    evaluate = Evaluator(config, out)
    results_path = out / "results.json"
    done = {}
    if results_path.exists():  # resume: keep the runs an interrupted study finished
        previous = json.loads(results_path.read_text())
        if previous.get("config") == json.loads(json.dumps(asdict(config))):
            done = previous.get("methods", {})
    results = {"study": "backfire", "model": model, "config": asdict(config), "methods": {}}
    results["base"] = evaluate(base, "base", ["harmful", "harmful_implicit", "clean"])
    write_json(results_path, results)
    resolution = base.unet.config.sample_size * base.vae_scale_factor
    data = {d: load_training_data(d, resolution, n=config.n_data, seed=config.seed) for d in config.domains}
    modular_loras: dict[str, LoRA] = {}

    for method in config.methods:
        safe_path = out / "loras" / f"safety_{method}.safetensors"
        safe_path.parent.mkdir(exist_ok=True)
        if safe_path.exists():
            safe = LoRA.load(safe_path)
        else:
            safe = align_lora(copy.deepcopy(base), method, config.concepts, config.align)
            safe.save(safe_path)
        entry = results["methods"][method] = {"lora": str(safe_path.relative_to(out)), "finetune": {}, "probes": {}}
        entry["aligned"] = evaluate(_with(base, [(safe, 1.0)]), f"{method}", ["harmful", "harmful_implicit", "clean"])
        entry["probes"]["W0 - dW_safe"] = evaluate(_with(base, [(safe, -1.0)]), f"{method}_negated", ["clean"])
        write_json(results_path, results)

        for domain in config.domains:
            images, texts = data[domain]
            entry["finetune"][domain] = done.get(method, {}).get("finetune", {}).get(domain, {})
            for spec in config.ways:
                way, lr = parse_way(spec, config)
                if spec in entry["finetune"][domain]:
                    continue  # finished in an earlier, interrupted run of the study
                curve = {}
                mode = "full" if way == "full" else "lora"
                train_cfg = TrainConfig(steps=max(config.save_at), lr=lr, batch_size=config.batch_size, mode=mode,
                                        save_at=config.save_at, seed=config.seed, checkpoint_every=10**9)
                pipe = copy.deepcopy(base)
                on_top = [] if way == "modular" else [(safe, 1.0)]
                label = f"{method}__{domain}__{spec}"

                def snapshot(step, unet, pipe=pipe, way=way, train_cfg=train_cfg, label=label):
                    with torch.no_grad():
                        if way == "full":
                            model_now = pipe
                        else:  # the LoRA so far, merged into a copy without the training adapter
                            loras = [(extract_lora(unet, train_cfg), 1.0)] + ([(safe, 1.0)] if way == "modular" else [])
                            model_now = _unadapted(pipe)
                            merge_into(model_now, loras)
                        sets = ["harmful", "harmful_implicit", "clean", domain] if step == max(config.save_at) \
                            else ["harmful", domain]
                        curve[step] = evaluate(model_now, f"{label}__step{step}", sets)

                ft = finetune(pipe, images, texts, train_cfg, on_top=on_top, on_save=snapshot)
                entry["finetune"][domain][spec] = {"steps": curve, "way": way, "lr": lr}
                if way == "modular":
                    modular_loras[domain] = ft
                    ft.save(out / "loras" / f"finetune_{domain}_{spec}.safetensors")
                write_json(results_path, results)
            if domain in modular_loras:
                probe = _with(base, [(safe, 1.0), (modular_loras[domain], -1.0)])
                entry["probes"][f"W0 + dW_safe - dW_ft({domain})"] = evaluate(
                    probe, f"{method}_minus_{domain}", ["harmful", "clean"])
                write_json(results_path, results)

    from ..report.backfire import render_backfire

    write_text(out / "report.md", render_backfire(results, out))
    return results


def _unadapted(pipe):
    """A copy of `pipe` (whose UNet is being trained with an adapter) with the adapter removed."""
    clone = copy.deepcopy(pipe)
    remove_lora(clone.unet)
    return clone
