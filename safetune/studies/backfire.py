"""The backfire study (Modular LoRA paper): does benign fine-tuning bring an erased concept back?

base -> safety LoRA dW_safe (ESD, SDD) -> benign fine-tuning on each domain, three ways:
  full          full fine-tuning of the aligned model W0 + dW_safe
  lora-on-top   a fine-tuning LoRA trained on the aligned model: W0 + dW_safe + dW_ft'
  modular       a fine-tuning LoRA trained on W0 alone, composed at inference: W0 + dW_safe + dW_ft
and the never-trained reference model (pretrained without the concept) fine-tuned the same ways
(`full`, and `lora` on it): what perfect erasure looks like under the same fine-tuning.

Every (model, domain, way) runs with several fine-tuning seeds and is evaluated at each step of
`save_at` on the same prompts and sampling seeds, so differences are the models'. A point reports
the mean and spread over seeds beside the pooled 95% interval, and resurgence = harmful rate after
fine-tuning minus the model's own before it. Probes: W0 - dW_safe and W0 + dW_safe - dW_ft.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, replace
from pathlib import Path

from ..config import SHAPES_CONCEPTS, SamplingConfig, TrainConfig
from ..options import apply_overrides, from_dict, option, settings
from ..data.folder import load_training_data
from ..data.prompts import read_prompts
from ..errors import SafetuneError
from ..evaluation import evaluate_prompts
from ..evaluation.detectors import load_detector
from ..evaluation.metrics import across_seeds, resurgence
from ..io import write_json
from ..lora.weights import LoRA, merged
from ..models.conditioning import image_size
from ..models.loading import load_pipeline
from ..report import write_study
from ..stages import ESD_X, finetune
from ..stages.methods import METHODS, Inputs
from .resume import resume_or_refuse

log = logging.getLogger(__name__)

WAYS = ("full", "lora-on-top", "modular")
REFERENCE_WAYS = {"full": "full", "lora-on-top": "lora", "modular": "lora"}  # without dW_safe they coincide
REFERENCE = "never-trained"
EVAL_SETS = ("harmful", "harmful_implicit", "clean")
# what the study runs, not how: another value extends the study (each earlier run kept as it was)
GROWABLE = ("methods", "domains", "ways", "seeds")


@settings
class BackfireConfig:
    """The backfire study; `safetune study backfire --set FIELD=VALUE` sets any field."""
    methods: list[str] = option(factory=lambda: ["esd-x"],
                                help="safety LoRAs: registered methods that make one from the concept alone (esd-x, "
                                     "esd-u, sdd, uce, ca)")
    domains: list[str] = option(factory=lambda: ["clean", "sparkle", "plus"],
                                help="benign data: retain (clean), related (sparkle), far (plus, ...) or folders")
    ways: list[str] = option(factory=lambda: list(WAYS),
                             help="full, lora-on-top, modular; a recipe of its own after ':', settings of its "
                                  "training joined by '/' (e.g. modular:lr=1e-4/lora_rank=16)")
    seeds: list[int] = option(factory=lambda: [0, 1, 2], help="fine-tuning seeds per (method, domain, way)",
                              max=2**32 - 1)
    reference: str = option("shapes-nostar", "the never-trained model, fine-tuned the same ways ('' for none)")
    concepts: list[str] = option(factory=lambda: list(SHAPES_CONCEPTS), help="prompts the safety LoRA erases")
    align: TrainConfig = option(factory=lambda: replace(ESD_X), help="the safety LoRA's training")
    full: TrainConfig = option(factory=lambda: TrainConfig(lr=1e-4, mode="full", checkpoint_every=10**9),
                               help="the full fine-tuning (its steps come from save_at)")
    lora: TrainConfig = option(factory=lambda: TrainConfig(lr=1e-3, mode="lora", checkpoint_every=10**9),
                               help="the fine-tuning LoRA of lora-on-top and modular")
    save_at: list[int] = option(factory=lambda: [0, 300, 1000], help="fine-tuning steps evaluated")
    n_data: int = option(1000, "images of each domain", min=1)
    data_seed: int = option(0, "seed of the domains' images", max=2**32 - 1)
    prompts_per_set: int = option(40, "prompts of each evaluation set", min=1)
    sampling: SamplingConfig = option(factory=SamplingConfig, help="evaluation sampling")

    @classmethod
    def reduced(cls) -> "BackfireConfig":
        """What `safetune demo` runs: ESD-x, three ways, one seed, 300 steps on the related domain
        (sparkle), where the measured resurgence is large in every seed (docs/results/resurgence.md);
        on the in-distribution domain it is real but smaller than one seed's noise."""
        return cls(domains=["sparkle"], seeds=[0], reference="", save_at=[0, 300],
                   sampling=SamplingConfig(images_per_prompt=5))

    def validate(self) -> None:
        """Refuse settings that would fail hours into the study, before any work."""
        from ..data.shapesworld import DATA_SETS
        from ..stages.methods import safety_loras

        for method in self.methods:
            if method not in safety_loras():
                raise SafetuneError(f"methods: unknown safety method {method!r} (a safety LoRA from the concept "
                                    f"alone); choose from {', '.join(safety_loras())}")
        for domain in self.domains:
            if domain not in DATA_SETS and not Path(domain).is_dir():
                raise SafetuneError(f"domains: {domain!r} is neither a ShapesWorld set ({', '.join(DATA_SETS)}) nor "
                                    "an image folder")
        if not self.seeds or not self.save_at or max(self.save_at) < 1 or not self.domains or not self.ways:
            raise SafetuneError("domains, ways, seeds and save_at need at least one value each (save_at: a step "
                                "above 0)")
        for way in self.ways:
            self.train_config(way, 0)  # an unknown way or recipe setting is refused here
        if self.reference:
            from ..models.loading import resolve_model

            resolve_model(self.reference)
        if not self.methods and not self.reference:
            raise SafetuneError("nothing to study: give methods, a reference, or both")

    def train_config(self, way: str, seed: int) -> TrainConfig:
        """The fine-tuning of one way and seed: the full or LoRA recipe with the way's own settings
        ('modular:lr=1e-4/lora_rank=16'), run to the last save_at step."""
        kind, _, options = way.partition(":")
        if kind not in WAYS + ("lora",):
            raise SafetuneError(f"ways: unknown way {way!r}; choose from {', '.join(WAYS)} (a recipe after ':', e.g. "
                                "modular:lr=1e-4/lora_rank=16)")
        recipe = copy.deepcopy(self.full if kind == "full" else self.lora)
        items = [o for o in options.split("/") if o]
        if any(item.partition("=")[0].strip() in ("steps", "save_at", "seed", "mode") for item in items):
            raise SafetuneError(f"ways: {way!r}: steps come from save_at, seeds from seeds, the mode from the way")
        try:
            apply_overrides(recipe, items)
        except SafetuneError as exc:
            raise SafetuneError(f"ways: {way!r}: {exc}") from None
        return replace(recipe, steps=max(self.save_at), save_at=list(self.save_at), seed=seed)


def way_kind(way: str) -> str:
    """'modular:lr=1e-4' -> 'modular'."""
    return way.partition(":")[0]


class Evaluator:
    """The study's fixed evaluation: harmful and clean sets, plus each domain's own prompts."""

    def __init__(self, config: BackfireConfig, out: Path):
        self.config, self.out = config, out
        self.detector = load_detector("shapes")
        names = dict.fromkeys([*EVAL_SETS, *config.domains])
        self.sets = {name: read_prompts(name, limit=config.prompts_per_set) for name in names}

    def __call__(self, pipe, label: str, sets) -> dict:
        (self.out / "grids").mkdir(exist_ok=True)
        results = {}
        for name in dict.fromkeys(sets):
            safe = label.replace(":", "@").replace("/", "+")  # a way's recipe ('modular:lr=1e-4/...') in a file name
            grid = self.out / "grids" / f"{safe}__{name}.png" if name.startswith("harmful") else None
            results[name] = evaluate_prompts(pipe, self.sets[name], self.detector, self.config.sampling, grid)
            if grid is not None:
                results[name]["grid"] = f"grids/{grid.name}"
        log.info("%s: %s", label, {k: round(v["harmful_rate"], 3) for k, v in results.items()})
        return results


def finetune_run(pipe, data: tuple, train_cfg: TrainConfig, evaluate: Evaluator, label: str, domain: str,
                 on_top: list[tuple[LoRA, float]], at_inference: list[tuple[LoRA, float]]) -> tuple[dict, LoRA | None]:
    """Fine-tune `pipe` (a copy) with `on_top` merged first, evaluating at each save_at step (harmful,
    domain and clean prompts; implicit ones at the last step) with `at_inference` added for the
    evaluation only. Returns ({step: results}, the LoRA if any)."""
    curve = {}
    last = max(train_cfg.save_at)

    def snapshot(step, _unet):  # a LoRA under training is live in the models: W + B A exactly
        # clean prompts at every step: a rise there too is degradation, not the concept coming back
        sets = ["harmful", domain, "clean"] + (list(EVAL_SETS) if step == last else [])
        with merged(pipe, at_inference):
            curve[str(step)] = evaluate(pipe, f"{label}__step{step}", sets)

    lora = finetune(pipe, *data, train_cfg, on_top=on_top, on_save=snapshot, desc=label.replace("__", " "))
    return curve, lora


def _run_key(domain: str, way: str, seed: int) -> tuple[str, str, str]:
    return domain, way, f"seed{seed}"


def run_backfire(out: Path, config: BackfireConfig, model: str = "shapes") -> dict:
    """Run (or resume) the backfire study in `out`: results.json, report.md/.html, curves, grids."""
    config.validate()
    out.mkdir(exist_ok=True)
    (out / "loras").mkdir(exist_ok=True)
    base = load_pipeline(model)
    evaluate = Evaluator(config, out)
    results_path = out / "results.json"
    previous = resume_or_refuse(results_path, "backfire", model, asdict(config), growable=GROWABLE,
                                defaults=asdict(BackfireConfig()))
    results = {"study": "backfire", "model": model, "config": asdict(config), "models": {}}
    results["base"] = previous.get("base") or evaluate(base, "base", EVAL_SETS)
    write_json(results_path, results)
    resolution = image_size(base)
    data = {d: load_training_data(d, resolution, n=config.n_data, seed=config.data_seed) for d in config.domains}

    def runs_of(name: str, start_pipe, ways: dict[str, tuple[list, list]], entry: dict) -> None:
        done = previous.get("models", {}).get(name, {}).get("runs", {})
        for domain in config.domains:
            for way, (on_top, at_inference) in ways.items():
                for seed in config.seeds:
                    d, w, s = _run_key(domain, way, seed)
                    slot = entry["runs"].setdefault(d, {}).setdefault(w, {})
                    if s in done.get(d, {}).get(w, {}):
                        slot[s] = done[d][w][s]
                        continue
                    train_cfg = config.train_config(way, seed)
                    curve, lora = finetune_run(copy.deepcopy(start_pipe), data[domain], train_cfg, evaluate,
                                               f"{name}__{domain}__{way}__{s}", domain, on_top, at_inference)
                    slot[s] = curve
                    if lora is not None and way == "modular" and seed == config.seeds[0]:  # the default recipe
                        lora.save(out / "loras" / f"finetune_{name}_{domain}_{s}.safetensors")
                    write_json(results_path, results)
            _write_report(out, results)  # after each domain: a long study reports as it goes

    for method in config.methods:
        entry = results["models"][method] = previous.get("models", {}).get(method, {}).copy() or {}
        entry.update(kind="aligned", runs={})
        safe_path = out / "loras" / f"safety_{method}.safetensors"
        if not safe_path.exists():
            spec = METHODS[method]
            spec.run(copy.deepcopy(base), Inputs(config.concepts, spec.make_settings(), spec.prepare(config.align))
                     ).save(safe_path)
        safe = LoRA.load(safe_path)
        entry["lora"] = str(safe_path.relative_to(out))
        if "before" not in entry:
            with merged(base, [(safe, 1.0)]):
                entry["before"] = evaluate(base, method, EVAL_SETS)
            with merged(base, [(safe, -1.0)]):
                entry["probes"] = {"W0 - dW_safe": evaluate(base, f"{method}_negated", ["clean"])}
        write_json(results_path, results)
        # (merged into the model before training, added for evaluation only)
        ways = {"full": ([(safe, 1.0)], []), "lora-on-top": ([(safe, 1.0)], []), "modular": ([], [(safe, 1.0)])}
        runs_of(method, base, {w: ways[way_kind(w)] for w in config.ways}, entry)
        for domain in config.domains:
            ft = out / "loras" / f"finetune_{method}_{domain}_seed{config.seeds[0]}.safetensors"
            probe = f"W0 + dW_safe - dW_ft({domain})"
            if ft.exists() and probe not in entry["probes"]:
                with merged(base, [(safe, 1.0), (LoRA.load(ft), -1.0)]):
                    entry["probes"][probe] = evaluate(base, f"{method}_minus_{domain}", ["harmful", "clean"])
                write_json(results_path, results)

    if config.reference:
        reference = load_pipeline(config.reference)
        entry = results["models"][REFERENCE] = {"kind": "reference", "model": config.reference, "runs": {}}
        entry["before"] = previous.get("models", {}).get(REFERENCE, {}).get("before") or \
            evaluate(reference, REFERENCE, EVAL_SETS)
        ref_ways = dict.fromkeys(REFERENCE_WAYS[way_kind(w)] + w[len(way_kind(w)):] for w in config.ways)
        runs_of(REFERENCE, reference, {w: ([], []) for w in ref_ways}, entry)

    _write_report(out, results)
    return results


def _write_report(out: Path, results: dict) -> None:
    from ..report.backfire import render_backfire

    write_study(out, results, summarize, render_backfire)


def summarize(results: dict) -> dict:
    """Per model, domain, way and step: harmful rate over seeds, resurgence against the model before
    fine-tuning, clean-prompt harmful rate and domain fidelity (means over seeds), and the recipe
    the way trained with, as the study's own parser reads it ('modular, lr 0.0001, rank 16')."""
    config = from_dict(BackfireConfig, results["config"])
    summary = {}
    for name, entry in results["models"].items():
        for domain, ways in entry["runs"].items():
            for way, seeds in ways.items():
                steps = sorted({int(s) for curve in seeds.values() for s in curve})
                recipe = config.train_config(way, 0)
                rank = "" if way_kind(way) == "full" else f", rank {recipe.lora_rank}"
                for step in steps:
                    per_seed = [curve[str(step)] for curve in seeds.values() if str(step) in curve]
                    harmful = [p["harmful"] for p in per_seed]
                    row = {"recipe": f"{way_kind(way)}, lr {recipe.lr:g}{rank}",
                           "harmful_rate": across_seeds(harmful),
                           "resurgence": resurgence(harmful, entry["before"]["harmful"])}
                    if all(domain in p for p in per_seed):
                        fid = [p[domain] for p in per_seed if "prompt_fidelity" in p[domain]]
                        if fid:
                            row["domain_fidelity"] = across_seeds(fid, "prompt_fidelity")
                    if all("clean" in p for p in per_seed):
                        row["clean_harmful_rate"] = across_seeds([p["clean"] for p in per_seed])
                        row["clean_fidelity"] = across_seeds([p["clean"] for p in per_seed], "prompt_fidelity")
                    if all("harmful_implicit" in p for p in per_seed):
                        row["implicit_harmful_rate"] = across_seeds([p["harmful_implicit"] for p in per_seed])
                    summary.setdefault(name, {}).setdefault(domain, {}).setdefault(way, {})[str(step)] = row
    return summary
