"""The forgetting study (Pan et al. 2024): does LT/NG safe training survive malicious fine-tuning?

Models: base (unaligned), ESD (safety LoRA merged), LT and NG trained from the base (safety
alignment), LT and NG trained from the ESD model (safety reinforcement), and ablations (contrastive
off, reference behaviour, fixed noise). Each is attacked by fine-tuning on harmful data and evaluated
at each step of `attack_steps`: harmful rate and score on harmful prompts, prompt fidelity and FID
(detector features against renders of the same prompts) on clean prompts.
"""
from __future__ import annotations

import copy
import logging
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..align import align_lora, forgetting_train
from ..align.forgetting import ForgettingConfig
from ..data.folder import load_training_data
from ..data.prompts import read_prompts
from ..data.shapesworld import render, scene_for_prompt
from ..evaluate import evaluate_prompts
from ..evaluate.detectors import load_detector
from ..evaluate.metrics import frechet_distance
from ..evaluate.sampling import SamplingConfig, image_seeds, sample
from ..finetune import finetune
from ..io import write_json, write_text
from ..lora.weights import LoRA, merge_into
from ..models.loading import load_pipeline
from ..train import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class ForgettingStudyConfig:
    models: list[str] = field(default_factory=lambda: [
        "base", "esd", "lt", "ng", "esd+lt", "esd+ng", "lt:off", "lt:reference", "ng:off", "ng:reference",
        "lt:fixed", "ng:fixed"])
    safe_train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=400, lr=1e-4, batch_size=32, mode="full"))
    esd: TrainConfig = field(default_factory=lambda: TrainConfig(steps=400, lr=1e-3, batch_size=32))
    forgetting: ForgettingConfig = field(default_factory=ForgettingConfig)
    attack: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, lr=1e-4, batch_size=32, mode="full"))
    attack_steps: list[int] = field(default_factory=lambda: [0, 20, 100, 200])
    n_data: int = 1000
    prompts_per_set: int = 40
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int = 0

    @classmethod
    def reduced(cls) -> "ForgettingStudyConfig":
        return cls(models=["base", "esd", "lt", "ng"], attack_steps=[0, 100, 200],
                   sampling=SamplingConfig(images_per_prompt=3))


def parse_model(name: str, base: ForgettingConfig) -> tuple[bool, ForgettingConfig | None]:
    """'esd+lt:reference' -> (from ESD, LT in reference mode); 'base' / 'esd' -> no safe training."""
    from_esd = name.startswith("esd")
    rest = name.split("+", 1)[1] if "+" in name else ("" if name in ("base", "esd") else name)
    if not rest:
        return from_esd, None
    variant, _, option = rest.partition(":")
    cfg = replace(base, variant=variant)
    if option in ("off", "reference", "contrastive"):
        cfg = replace(cfg, mode=option)
    elif option in ("fixed", "changing"):
        cfg = replace(cfg, noise=option)
    elif option:
        raise ValueError(f"unknown option {option!r} in model {name!r}")
    return from_esd, cfg


class QualityEvaluator:
    def __init__(self, config: ForgettingStudyConfig, out: Path):
        self.config, self.out = config, out
        self.detector = load_detector("shapes")
        self.sets = {n: read_prompts(n, limit=config.prompts_per_set) for n in ("harmful", "clean")}
        rng = random.Random(config.seed)
        jobs = image_seeds(self.sets["clean"], config.sampling)
        self.real_features = self.detector.features([render(scene_for_prompt(p, rng)) for p, _, _ in jobs])

    def __call__(self, pipe, label: str) -> dict:
        (self.out / "grids").mkdir(parents=True, exist_ok=True)
        res = {"harmful": evaluate_prompts(pipe, self.sets["harmful"], self.detector, self.config.sampling,
                                           self.out / "grids" / f"{label}.png")}
        res["harmful"]["grid"] = f"grids/{label}.png"
        clean_jobs = image_seeds(self.sets["clean"], self.config.sampling)
        images = sample(pipe, clean_jobs, self.config.sampling)
        from ..evaluate.metrics import score_images

        res["clean"] = score_images(images, [p for p, _, _ in clean_jobs], self.detector)
        res["clean"]["fid"] = frechet_distance(self.detector.features(images), self.real_features)
        log.info("%s: harmful %.3f fidelity %.3f fid %.2f", label, res["harmful"]["harmful_rate"],
                 res["clean"]["prompt_fidelity"], res["clean"]["fid"])
        return res


def study_data(base, config: ForgettingStudyConfig) -> tuple[tuple, tuple]:
    """The clean and the harmful training sets (images, captions) at the model's resolution."""
    resolution = base.unet.config.sample_size * base.vae_scale_factor
    return (load_training_data("clean", resolution, n=config.n_data, seed=config.seed),
            load_training_data("harmful", resolution, n=config.n_data, seed=config.seed + 1))


def protect_and_attack(base, clean: tuple, harmful: tuple, evaluate: QualityEvaluator, label: str,
                       config: ForgettingStudyConfig, forgetting: ForgettingConfig | None,
                       esd: LoRA | None = None) -> dict:
    """One model of the study: a copy of `base` (+ the ESD LoRA), LT/NG safe training if `forgetting`,
    then the malicious fine-tuning, evaluated at each of config.attack_steps. Returns {step: results}."""
    pipe = copy.deepcopy(base)
    if esd is not None:
        merge_into(pipe, [(esd, 1.0)])
    if forgetting is not None:
        forgetting_train(pipe, clean, harmful, forgetting, replace(config.safe_train, seed=config.seed))
    curve = {}

    def snapshot(step, unet):
        curve[step] = evaluate(pipe, f"{label}__attack{step}")

    attack = replace(config.attack, steps=max(config.attack_steps), save_at=config.attack_steps,
                     checkpoint_every=10**9)
    finetune(pipe, *harmful, attack, on_save=snapshot)
    return curve


def run_forgetting(out: Path, config: ForgettingStudyConfig, model: str = "shapes") -> dict:
    out.mkdir(exist_ok=True)
    (out / "loras").mkdir(exist_ok=True)
    base = load_pipeline(model)
    evaluate = QualityEvaluator(config, out)
    clean, harmful = study_data(base, config)
    results = {"study": "forgetting", "model": model, "config": asdict(config), "models": {}}
    esd_path = out / "loras" / "safety_esd-x.safetensors"
    if any(m.startswith("esd") for m in config.models):
        if not esd_path.exists():
            align_lora(copy.deepcopy(base), "esd-x", ["a star", "a pentagram"], config.esd).save(esd_path)
        esd = LoRA.load(esd_path)

    for name in config.models:
        from_esd, fcfg = parse_model(name, config.forgetting)
        curve = protect_and_attack(base, clean, harmful, evaluate, name.replace(":", "_").replace("+", "_"),
                                   config, fcfg, esd if from_esd else None)
        results["models"][name] = {"from_esd": from_esd, "forgetting": asdict(fcfg) if fcfg else None,
                                   "attack": curve}
        write_json(out / "results.json", results)

    from ..report.forgetting import render_forgetting

    write_text(out / "report.md", render_forgetting(results, out))
    return results


def summary_rows(results: dict) -> list[tuple]:
    rows = []
    for name, entry in results["models"].items():
        for step in sorted(entry["attack"], key=int):
            r = entry["attack"][step]
            rows.append((name, int(step), r["harmful"]["harmful_rate"], r["harmful"]["harmful_rate_ci95"],
                         r["harmful"]["harmful_score"], r["clean"]["prompt_fidelity"], r["clean"]["fid"]))
    return rows
