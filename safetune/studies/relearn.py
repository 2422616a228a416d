"""The relearning benchmark: is the concept dormant or deleted? Every model under every attack of a
battery, with training seeds, a dev/test split fixed before results, and verdicts that can fail.

Attacks (each named and selectable, `attacks`):
  full        full fine-tuning of the UNet on the concept's images
  full-te     the same with the text encoder trained too
  lora-r1/r4/r16  a LoRA on attention of that rank
  inversion   concept inversion: one new token learned on the concept's images, every weight frozen;
              the prompts name the token instead of the concept (stages.inversion)
  retain      fine-tuning on concept-free data only: does the concept come back by itself?
  benign      the learnability control: full fine-tuning on `plus`, a shape no model drew before;
              a defence must learn it (shape fidelity on its prompts, against never-trained's) and
              the concept must stay away (backfire from a far benign domain)
Each runs at each lr of its grid, with each attack seed, evaluated at every step of `steps` on the
split's harmful prompts and, as a control at every step, its clean prompts (a rise there is the
model degrading, not relearning).

Split (`split`): dev (tuning a defence: the shipped `harmful` prompts, sampling seed 0, attack seeds
0, 1, 2) or test (every reported number: `harmful` and `harmful_implicit` prompts drawn anew with
another seed, the implicit phrasings never used by any alignment, sampling seed 1, attack seeds
100, 101, 102). A defence's settings are chosen on dev and reported on test; never the reverse.

Verdicts (evaluation.verdicts): per model and attack, at the attack's worst lr (the highest mean
of the mean curve over the evaluated steps among the lrs that leave the model usable: `wrecked_below`), non-inferiority
against the never-trained reference with margin `margin` on the area and at every step, each bound
the wider of a cluster bootstrap's over training seeds, attack seeds and prompts and a moment bound
with t on the seeds' degrees of freedom; steps to relearn `relearn_at` with an interval (the wider of
the bootstrap's and the moment band's); the design's power. The base model has one training seed,
the reference one per pretraining (`reference_pretrainings`: re-pretraining is the price of more).

The settings (the attacks, the split, RelearnConfig) live in relearn_config; this module runs them.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

from ..config import TrainConfig
from ..options import from_dict
from ..data.folder import load_training_data
from ..errors import SafetuneError
from ..evaluation import evaluate_prompts
from ..evaluation.detectors import load_detector
from ..io import atomic_dir, write_json
from ..lora.weights import LoRA
from ..models.conditioning import image_size
from ..models.inference import save_inference
from ..models.loading import FAMILY_NAMES, load_pipeline, model_family
from ..report import write_study
from ..stages import align_lora, finetune
from ..stages.inversion import invert, with_token
from .executor import ExecutorConfig, run_specs, shared, spec_key
from .resume import resume_or_refuse
from .relearn_config import (ATTACKS, CONCEPT_WORDS, GROWABLE, LEARN_DOMAIN, SPLITS, RelearnConfig, attack_recipe,
                             split_prompts, split_set)
from .relearn_summary import LEARNABILITY, curves_of, is_wrecked, summarize, worst_lr
from .forgetting import REFERENCE, model_label, parse_model
from .forgetting_runs import build_model

log = logging.getLogger(__name__)

def attack_run(model, attack: str, recipe: TrainConfig, data: dict, prompts: dict, evaluate, label: str) -> dict:
    """One attack on a copy of `model`: {step: {"harmful": ..., "clean": ...}} at every step (and
    "domain", the new domain's prompts, for the learnability control)."""
    pipe = copy.deepcopy(model)
    parts = ["harmful", "clean"] + (["domain"] if attack == LEARNABILITY else [])
    sets = {part: prompts[part] for part in parts}
    if attack == "inversion":  # the prompts name the new token instead of the concept
        sets["harmful"] = [{**row, "prompt": with_token(row["prompt"], CONCEPT_WORDS)} for row in sets["harmful"]]
    curve = {}

    def snapshot(step, _unet):
        curve[str(step)] = {part: evaluate(pipe, rows) for part, rows in sets.items()}

    images, texts = data[ATTACKS[attack][0]]
    try:
        if attack == "inversion":
            invert(pipe, images, texts, CONCEPT_WORDS, recipe, on_save=snapshot, desc=f"attack {label}")
        else:
            finetune(pipe, images, texts, recipe, on_save=snapshot, desc=f"attack {label}")
    except FloatingPointError as exc:  # the lr is past what training survives: the top of the bracket
        log.warning("%s", exc)
        return {"diverged": str(exc), **curve}
    log.info("%s: harmful rate %s", label, {s: round(p["harmful"]["harmful_rate"], 3) for s, p in curve.items()})
    return curve


def run_relearn(out: Path, config: RelearnConfig, model: str = "shapes", executor: ExecutorConfig | None = None,
                grow_from: Path | list[Path] | None = None) -> dict:
    """Run (or resume) the benchmark in `out`: every run a task of `executor` (its result in
    out/runs/<hash>.json), joined into results.json (per-prompt counts) and the report. `grow_from`:
    one or more stored studies (docs/results/benchmark*.json, or a study's results.json) whose runs and
    quality `out` starts from, as if it had made them (see grow_from_stored)."""
    config.validate()
    if "inversion" in config.attacks and model_family(model) not in (None, "sd"):
        raise SafetuneError(f"attacks: inversion learns a token of one CLIP text encoder (SD 1.x/2.x); {model} is "
                            f"{FAMILY_NAMES[model_family(model)]}: drop it from --set attacks")
    executor = executor or ExecutorConfig()
    out.mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    results_path = out / "results.json"
    previous = grow_from_stored(results_path, grow_from, config, model) if grow_from else \
        _earlier(results_path, config, model)
    if previous and previous["config"] != json.loads(json.dumps(asdict(config))):
        log.info("%s: extending the study (%d runs of its earlier settings kept)", out, len(previous["runs"]))
    prompts = split_prompts(config)
    results = {"study": "relearn", "model": model, "config": asdict(config), "prompts": [r["prompt"] for r in prompts[0]],
               "runs": previous.get("runs", {})}
    # a run's identity is what determines it: not the lists of other runs, nor the verdicts' settings
    common = {"model": model, "config": {k: v for k, v in asdict(config).items() if k not in GROWABLE},
              "_out": str(out), "_defaults": {k: v for k, v in asdict(RelearnConfig()).items() if k not in GROWABLE}}

    def build(pending: list[dict]) -> None:
        """The trained models `pending` runs need, each once, on disk (so that runs anywhere only load
        them); a model whose every run is kept is not rebuilt (a study grown from stored results)."""
        needed = sorted({(sp["name"], sp["train_seed"]) for sp in pending if sp["name"] not in ("base", REFERENCE)},
                        key=lambda m: (config.models.index(m[0]), m[1]))
        run_specs([{**common, "kind": "model", "name": name, "train_seed": t, "label": f"build {name} train{t}"}
                   for name, t in needed], run_model_spec, out / "runs", executor)

    from .relearn_quality import run_quality_spec  # it imports this module

    # a quality run kept from an earlier run of the study was made with these settings: only
    # quality_prompts, of its settings, may differ between growths. All are kept, as runs are, also
    # those of models or seeds this growth does not ask for (a share of a study grown side by side)
    same_quality = previous.get("config", {}).get("quality_prompts") == config.quality_prompts
    wanted = {f"{name}|train{t}": (name, t) for name in config.models for t in config.train_seeds_of(name)}
    results["quality"] = dict(previous.get("quality", {})) if same_quality else {}
    quality = [{**common, "kind": "quality", "name": name, "train_seed": t, **config.made_on(name, t),
                "quality_prompts": config.quality_prompts, "features": "centred-scaled",
                "label": f"quality {name} train{t}"}
               for key, (name, t) in wanted.items() if key not in results["quality"]]
    build(quality)
    done = run_specs(quality, run_quality_spec, out / "runs", executor)
    results["quality"].update({f"{sp['name']}|train{sp['train_seed']}": done[spec_key(sp)] for sp in quality
                               if spec_key(sp) in done})
    grids = {(name, attack): list(config.inversion_lrs if attack == "inversion" else config.attack_lrs)
             for name in config.models for attack in config.attacks}
    while True:  # waves: the grids, then each grid grown where its worst lr is still its top
        specs = [{**common, "kind": "attack", "name": name, "train_seed": t, **config.made_on(name, t),
                  "attack": attack, "lr": lr, "seed": seed, "label": f"{name} train{t} {attack} {lr:g} attack{seed}"}
                 for (name, attack), lrs in grids.items() for lr in lrs for t in config.train_seeds_of(name)
                 for seed in config.seeds()]
        specs.sort(key=lambda sp: (config.models.index(sp["name"]), sp["train_seed"]))  # one model loaded at a time
        specs = [sp for sp in specs if _run_key(sp) not in results["runs"]]  # kept from an earlier run
        build(specs)
        done = run_specs(specs, run_attack_spec, out / "runs", executor)
        for spec in specs:
            if spec_key(spec) in done:
                results["runs"][_run_key(spec)] = done[spec_key(spec)]
        write_json(results_path, results)
        grown = False
        for (name, attack), lrs in grids.items():
            more = next_lr(results, name, attack, lrs, config)
            if more is not None:
                log.info("%s %s: the worst lr is the grid's top (%g); bracketing with %g", name, attack, lrs[-1], more)
                lrs.append(more)
                grown = True
        _write_report(out, results)
        if not grown:
            return results


def _earlier(path: Path, config: RelearnConfig, model: str) -> dict:
    """The relearn study stored at `path` ({} if none), refused unless a study with `config` may grow it:
    with the same settings but the growable ones, and the reference's pretrainings only appended to
    (its runs of training seed N were made on the N-th)."""
    earlier = resume_or_refuse(path, "relearn", model, asdict(config), growable=GROWABLE,
                               defaults=asdict(RelearnConfig()))
    made_on = earlier.get("config", {}).get("reference_pretrainings", [])
    if made_on != config.reference_pretrainings[:len(made_on)]:
        raise SafetuneError(f"{path}: its {REFERENCE} runs were made on reference_pretrainings {made_on}, not "
                            f"{config.reference_pretrainings}; append new pretrainings after those, or choose "
                            "another --out")
    return earlier


def read_stored(stored: Path, config: RelearnConfig, model: str) -> dict:
    """A stored relearn study (docs/results/benchmark*.json, or a study's results.json) that a study
    with `config` may grow from: made with the same settings but the growable ones, as a resume must."""
    try:
        stored_results = json.loads(stored.read_text())
    except (OSError, ValueError) as exc:
        raise SafetuneError(f"--grow-from {stored}: cannot be read ({exc}); give a stored relearn study "
                            "(docs/results/benchmark*.json) or a relearn study's results.json") from None
    if not isinstance(stored_results, dict) or stored_results.get("study") != "relearn" \
            or not isinstance(stored_results.get("runs"), dict):
        raise SafetuneError(f"--grow-from {stored}: not a relearn study's results (docs/results/benchmark*.json, or a "
                            "relearn study's results.json)")
    try:
        _earlier(stored, config, model)
    except SafetuneError as exc:
        raise SafetuneError(f"--grow-from {stored}: {exc}") from None
    return stored_results


def grow_from_stored(results_path: Path, stored: Path | list[Path], config: RelearnConfig, model: str) -> dict:
    """Start a study at `results_path` from stored ones: their runs and quality are kept as if this
    study had made them, so that growing it (more seeds, attacks, models) runs only what is new, from
    a fresh clone whose study directories are gone; a model is rebuilt only where a new run needs it
    (its training seed makes it again). Several stored studies of the same settings (screens grown
    apart from one origin) are joined: a run two of them hold must be the same run, else they are
    refused, not mixed. On a resume (results_path written before) the stored runs must all be there:
    a directory grown from elsewhere is refused, not mixed. Returns the earlier study the growth
    starts from, as a resume reads it."""
    paths = [stored] if isinstance(stored, Path) else list(stored)
    started = {key: value for key, value in read_stored(paths[0], config, model).items() if key != "summary"}
    started["runs"], started["quality"] = dict(started["runs"]), dict(started.get("quality", {}))
    for path in paths[1:]:
        more = read_stored(path, config, model)
        for part in ("runs", "quality"):
            for key, value in more.get(part, {}).items():
                if key in started[part] and untimed(started[part][key]) != untimed(value):
                    label = "run" if part == "runs" else "quality run"
                    raise SafetuneError(f"--grow-from {path}: its {label} {key} "
                                        f"differs from the one in {paths[0]} or another file given before it; grow "
                                        "from studies whose shared runs are the same runs (grown from one origin)")
                started[part].setdefault(key, value)
    if results_path.exists():
        held = _earlier(results_path, config, model)
        missing = [key for key in started["runs"] if key not in held.get("runs", {})]
        if missing:
            raise SafetuneError(f"--grow-from {', '.join(map(str, paths))}: {results_path.parent} already holds a study "
                                f"without {len(missing)} of its runs (the first: {missing[0]}); resume it without "
                                "--grow-from, or choose a new --out")
        return held
    write_json(results_path, started)
    log.info("%s: started from %s (%d runs, %d quality runs kept)", results_path.parent, ", ".join(map(str, paths)),
             len(started["runs"]), len(started["quality"]))
    return started


def untimed(value):
    """A run's results without their wall-clock times (the one thing a run made again changes: here,
    in another copy, or as a Ray task)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "sampling_seconds"}
    return value


class _Context:
    """What every run of one study shares, loaded once per process (a Ray worker keeps it between
    tasks): the base model, the training data, the detector, the split's prompts and sampling."""
    @classmethod
    def of(cls, model: str, config: RelearnConfig) -> "_Context":
        return shared(("relearn", model, json.dumps(asdict(config), sort_keys=True)), lambda: cls(model, config))

    def __init__(self, model: str, config: RelearnConfig):
        self.base = load_pipeline(model)
        recipes = config.recipes
        resolution = image_size(self.base)
        self.data = {"clean": load_training_data("clean", resolution, n=recipes.n_data, seed=recipes.seed),
                     "harmful": load_training_data("harmful", resolution, n=recipes.n_data, seed=recipes.seed + 1),
                     LEARN_DOMAIN: load_training_data(LEARN_DOMAIN, resolution, n=recipes.n_data, seed=recipes.seed)}
        harmful, clean = split_prompts(config)
        self.prompts = {"harmful": harmful, "clean": clean, "domain": split_set(LEARN_DOMAIN, config)}
        self.detector = load_detector("shapes")
        self.sampling = replace(config.sampling, seed=SPLITS[config.split]["sampling_seed"])
        self.models: dict = {}
        self.config = config

    def evaluate(self, pipe, rows):
        return evaluate_prompts(pipe, rows, self.detector, self.sampling)

    def model(self, name: str, train_seed: int, out: Path, pretraining: str | None = None):
        """One model of one training seed: read from the study's models/ (built there first), or the
        reference's `pretraining` (None: recipes.reference)."""
        if (name, train_seed) not in self.models:
            self.models.clear()  # one model in memory at a time
            saved = _model_dir(out, name, train_seed)
            self.models[(name, train_seed)] = load_pipeline(str(saved)) if saved.is_dir() else \
                _model(name, train_seed, self.base, self.data, self.config, out, pretraining)
        return self.models[(name, train_seed)]


def _model_dir(out: Path, name: str, train_seed: int) -> Path:
    return out / "models" / f"{model_label(name)}_train{train_seed}"


def run_model_spec(spec: dict) -> dict:
    """Task: build one trained model of one training seed and keep it in the study's models/."""
    config, out = from_dict(RelearnConfig, spec["config"]), Path(spec["_out"])
    ctx = _Context.of(spec["model"], config)
    pipe = _model(spec["name"], spec["train_seed"], ctx.base, ctx.data, config, out)
    if spec["name"] != "esd":  # esd is the base plus its LoRA file, kept by _model
        with atomic_dir(_model_dir(out, spec["name"], spec["train_seed"])) as tmp:
            pipe.save_pretrained(tmp)
            save_inference(pipe, tmp)  # a negative prompt or SLD travels with the weights
    return {"built": spec["name"], "train_seed": spec["train_seed"]}


def run_attack_spec(spec: dict) -> dict:
    """Task: one attack run on one model: {step: {"harmful": ..., "clean": ...}}."""
    config, out = from_dict(RelearnConfig, spec["config"]), Path(spec["_out"])
    ctx = _Context.of(spec["model"], config)
    recipe = attack_recipe(config, spec["attack"], spec["lr"], spec["seed"])
    model = ctx.model(spec["name"], spec["train_seed"], out, spec.get("pretraining"))
    return attack_run(model, spec["attack"], recipe, ctx.data, ctx.prompts, ctx.evaluate, spec["label"])


def run_key(name: str, train_seed: int, attack: str, lr: float, seed: int) -> str:
    """A run's key in results.json."""
    return f"{name}|train{train_seed}|{attack}|{lr:g}|attack{seed}"


def _run_key(spec: dict) -> str:
    return run_key(spec["name"], spec["train_seed"], spec["attack"], spec["lr"], spec["seed"])


def next_lr(results: dict, name: str, attack: str, lrs: list[float], config: RelearnConfig) -> float | None:
    """The lr to add when the worst lr so far is the top of the grid (none diverged or wrecked the
    model, extensions left); None when the worst case is bracketed."""
    grown = len(lrs) - len(config.inversion_lrs if attack == "inversion" else config.attack_lrs)
    if grown >= config.bracket:
        return None
    top = max(lrs)
    runs = [r for k, r in results["runs"].items() if k.startswith(f"{name}|") and k.split("|")[2] == attack]
    if any("diverged" in r for r in runs):
        return None
    by_lr = {f"{lr:g}": c for lr in lrs if (c := curves_of(results, name, attack, f"{lr:g}")) is not None}
    wrecked = [lr for lr in by_lr if is_wrecked(results, name, attack, lr)]
    if f"{top:g}" not in by_lr or f"{top:g}" in wrecked:
        return None
    return top * 3 if worst_lr(by_lr, wrecked) == f"{top:g}" else None  # ties go to the top: it may still rise above


def _model(name: str, train_seed: int, base, data: dict, config: RelearnConfig, out: Path,
           pretraining: str | None = None):
    """The model `name` of one training seed (its ESD LoRA cached in out/models; the reference's
    `pretraining`, None: recipes.reference)."""
    recipes = replace(config.recipes, seed=train_seed)
    esd = None
    if any(stage.kind == "esd" for stage in parse_model(name, recipes)):
        path = out / "models" / f"safety_esd-x_train{train_seed}.safetensors"
        if not path.exists():
            align_lora(copy.deepcopy(base), "esd-x", recipes.concepts, replace(recipes.esd, seed=train_seed)).save(path)
        esd = LoRA.load(path)
    return build_model(name, base, pretraining or recipes.reference, data["clean"], data["harmful"], recipes, esd)


def _write_report(out: Path, results: dict) -> None:
    from ..report.relearn import render_relearn

    write_study(out, results, summarize, render_relearn)
