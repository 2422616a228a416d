"""The forgetting study's runs, each a task of the executor: a model built, evaluated before any
attack and priced (a benign LoRA on each benign domain); one malicious fine-tuning of it."""
from __future__ import annotations

import copy
import json
import logging
import random
from dataclasses import replace
from pathlib import Path

from ..config import TrainConfig
from ..models.conditioning import image_size
from ..models.inference import save_inference
from ..options import from_dict
from ..data.folder import load_training_data
from ..data.prompts import read_prompts
from ..data.shapesworld import render, scene_for_prompt
from ..evaluation import evaluate_prompts
from ..evaluation.detectors import load_detector
from ..evaluation.metrics import frechet_distance, score_images
from ..evaluation.sampling import image_seeds, sample
from ..io import atomic_dir
from ..lora.weights import LoRA, merge_into, merged
from ..models.loading import load_pipeline
from ..stages import finetune
from ..stages.methods import METHODS, Inputs
from .executor import shared
from .forgetting import REFERENCE, ForgettingStudyConfig, model_label, parse_model

log = logging.getLogger(__name__)


class Evaluator:
    """Harmful prompts at every attack step; clean prompts (fidelity, FID on detector features
    against renders of the same prompts) before the attack and at its last step."""

    def __init__(self, config: ForgettingStudyConfig, out: Path):
        self.config, self.out = config, out
        self.detector = load_detector("shapes")
        self.sets = {n: read_prompts(n, limit=config.prompts_per_set)
                     for n in ("harmful", "harmful_implicit", "clean", *config.benign_domains)}
        rng = random.Random(config.seed)
        jobs = image_seeds(self.sets["clean"], config.sampling)
        self.real_features = self.detector.features([render(scene_for_prompt(p, rng)) for p, _, _ in jobs])

    def __call__(self, pipe, label: str, sets=("harmful",), grid: bool = False) -> dict:
        res = {}
        for name in sets:
            if name == "clean":
                jobs = image_seeds(self.sets["clean"], self.config.sampling)
                images = sample(pipe, jobs, self.config.sampling)
                res["clean"] = score_images(images, [p for p, _, _ in jobs], self.detector)
                res["clean"]["fid"] = frechet_distance(self.detector.features(images), self.real_features)
                continue
            path = None
            if grid and name == "harmful":
                (self.out / "grids").mkdir(parents=True, exist_ok=True)
                path = self.out / "grids" / f"{label}.png"
            res[name] = evaluate_prompts(pipe, self.sets[name], self.detector, self.config.sampling, path)
        log.info("%s: %s", label, {k: round(v["harmful_rate"], 3) for k, v in res.items()})
        return res


def build_model(name: str, base, reference_model: str, clean: tuple, harmful: tuple, config: ForgettingStudyConfig,
                esd: LoRA | None):
    """The model `name` as a pipeline (its safe training run here, deterministic from config.seed)."""
    pipe = copy.deepcopy(base)
    for kind, settings, recipe in parse_model(name, config):
        if kind == "base":
            continue  # the base model itself
        if kind == REFERENCE:
            pipe = load_pipeline(reference_model)
        elif kind == "esd":
            merge_into(pipe, [(esd, 1.0)])
        else:  # a registered method, trained with the study's recipe for it
            lora = METHODS[kind].run(pipe, Inputs(config.concepts, settings, recipe, clean, harmful))
            if lora is not None:  # a LoRA (or lt/ng with a LoRA recipe): merged, so the model is what was trained
                merge_into(pipe, [(lora, 1.0)])
    return pipe


def attack_run(model, harmful: tuple, attack: TrainConfig, evaluate: Evaluator, label: str) -> dict:
    """One malicious fine-tuning of a copy of `model`: {step: results} at each of attack.save_at."""
    pipe = copy.deepcopy(model)
    curve = {}
    last = max(attack.save_at)

    def snapshot(step, _unet):
        sets = ("harmful", "clean") if step in (0, last) else ("harmful",)
        curve[str(step)] = evaluate(pipe, f"{label}__step{step}", sets, grid=step == last)

    finetune(pipe, *harmful, attack, on_save=snapshot, desc=f"attack {label.replace('__', ' ')}")
    return curve


def benign_price(model, domain_data: dict, config: ForgettingStudyConfig, evaluate: Evaluator, label: str) -> dict:
    """Domain fidelity after a benign LoRA fine-tuning of `model` on each benign domain."""
    out = {}
    for domain, data in domain_data.items():
        pipe = copy.deepcopy(model)
        lora = finetune(pipe, *data, replace(config.benign, seed=config.seed),
                        desc=f"benign {label.replace('__', ' ')} on {domain}")
        with merged(pipe, [(lora, 1.0)]):
            out[domain] = evaluate(pipe, f"{label}__benign_{domain}", (domain, "harmful"))
    return out


class _Context:
    """What every run of one study shares in a process: the base model, the data, the evaluator,
    the ESD LoRA, and the model of the last run (each model built once, kept in out/models)."""

    @classmethod
    def of(cls, spec: dict) -> "_Context":
        config = from_dict(ForgettingStudyConfig, spec["config"])
        key = ("forgetting", spec["model"], spec["_out"], json.dumps(spec["config"], sort_keys=True))
        return shared(key, lambda: cls(spec["model"], config, Path(spec["_out"])))

    def __init__(self, model: str, config: ForgettingStudyConfig, out: Path):
        self.config, self.out = config, out
        self.base = load_pipeline(model)
        self.evaluate = Evaluator(config, out)
        resolution = image_size(self.base)
        self.clean = load_training_data("clean", resolution, n=config.n_data, seed=config.seed)
        self.harmful = load_training_data("harmful", resolution, n=config.n_data, seed=config.seed + 1)
        self.domains = {d: load_training_data(d, resolution, n=config.n_data, seed=config.seed)
                        for d in config.benign_domains}
        esd = out / "models" / "safety_esd-x.safetensors"
        self.esd = LoRA.load(esd) if esd.exists() else None
        self.models: dict = {}

    def model(self, name: str):
        """The model `name`: built (and saved to out/models) by its model task, read back after."""
        if name not in self.models:
            self.models.clear()  # one model in memory at a time
            saved = self.out / "models" / model_label(name)
            if name not in ("base", REFERENCE) and saved.is_dir():
                self.models[name] = load_pipeline(str(saved))
            else:
                pipe = build_model(name, self.base, self.config.reference, self.clean, self.harmful, self.config,
                                   self.esd)
                if name not in ("base", REFERENCE):
                    with atomic_dir(saved) as tmp:
                        pipe.save_pretrained(tmp)
                        save_inference(pipe, tmp)  # a negative prompt or SLD travels with the weights
                self.models[name] = pipe
        return self.models[name]


def run_model_spec(spec: dict) -> dict:
    """Task: one model built, evaluated before any attack, and its benign price."""
    ctx = _Context.of(spec)
    pipe, label = ctx.model(spec["name"]), model_label(spec["name"])
    before = ctx.evaluate(pipe, f"{label}__before", ("harmful", "harmful_implicit", "clean"), grid=True)
    return {"before": before, "benign": benign_price(pipe, ctx.domains, ctx.config, ctx.evaluate, label)}


def run_attack_spec(spec: dict) -> dict:
    """Task: one malicious fine-tuning of one model: {step: results}."""
    ctx = _Context.of(spec)
    template = ctx.config.full_attack if spec["attack"] == "full" else ctx.config.lora_attack
    steps = ctx.config.attack_steps
    run = replace(template, lr=spec["lr"], seed=spec["seed"], steps=max(steps), save_at=list(steps))
    return attack_run(ctx.model(spec["name"]), ctx.harmful, run, ctx.evaluate, spec["label"])
