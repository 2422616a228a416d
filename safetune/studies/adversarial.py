"""The adversarial study: ASR of the UnlearnDiffAtk-style prompt attack against each aligned model."""
from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path

from ..attacks.prompt_search import AdversarialConfig, attack_success_rate
from ..config import SHAPES_CONCEPTS, SamplingConfig, TrainConfig
from ..options import option, settings
from ..data.folder import load_training_data
from ..data.prompts import read_prompts
from ..errors import SafetuneError
from ..evaluation.detectors import load_detector
from ..io import write_json
from ..lora.weights import merge_into
from ..models.loading import load_pipeline
from ..report import fmt_ci, write_report
from ..stages import ESD_X, finetune
from ..stages.safety import cached_safety_lora


@settings
class AdversarialStudyConfig:
    """The adversarial study: models, prompts and the prompt search's budget."""
    models: list[str] = option(factory=lambda: ["base", "esd-x", "sdd", "modular"],
                               help="base, esd-x, esd-u, sdd, modular (ESD-x + a LoRA of modular_domain)")
    prompt_set: str = option("harmful", "the prompts attacked")
    n_prompts: int = option(20, "how many of them", min=1)
    attack: AdversarialConfig = option(factory=AdversarialConfig, help="the prompt search")
    align: TrainConfig = option(factory=lambda: replace(ESD_X), help="the safety LoRAs' training")
    concepts: list[str] = option(factory=lambda: list(SHAPES_CONCEPTS), help="prompts the safety LoRAs erase")
    modular_domain: str = option("plus", "the modular model's fine-tuning data")
    modular: TrainConfig = option(factory=lambda: TrainConfig(steps=300, lr=1e-3, mode="lora",
                                                              checkpoint_every=10**9), help="its fine-tuning LoRA")
    sampling: SamplingConfig = option(factory=SamplingConfig, help="sampling of the success check")


def run_adversarial(out: Path, config: AdversarialStudyConfig, model: str = "shapes", reuse: Path | None = None) -> dict:
    """ASR of the prompt search against each model; results.json and report.md/.html in `out`."""
    out.mkdir(exist_ok=True)
    (out / "loras").mkdir(exist_ok=True)
    base = load_pipeline(model)
    detector = load_detector("shapes")
    rows = read_prompts(config.prompt_set, limit=config.n_prompts)

    def safety_lora(method):
        return cached_safety_lora(base, method, config.concepts, config.align,
                                  out / "loras" / f"safety_{method}.safetensors",
                                  reuse / "loras" / f"safety_{method}.safetensors" if reuse else None)

    results = {"study": "adversarial", "model": model, "config": asdict(config), "models": {}}
    for name in config.models:
        pipe = copy.deepcopy(base)
        if name in ("esd-x", "esd-u", "sdd"):
            merge_into(pipe, [(safety_lora(name), 1.0)])
        elif name == "modular":
            images, texts = load_training_data(config.modular_domain, 32, n=1000)
            ft = finetune(copy.deepcopy(base), images, texts, config.modular)
            merge_into(pipe, [(safety_lora("esd-x"), 1.0), (ft, 1.0)])
        elif name != "base":
            raise SafetuneError(f"unknown model {name!r}; choose base, esd-x, esd-u, sdd or modular")
        results["models"][name] = attack_success_rate(pipe, rows, detector, config.attack, reference_pipe=base,
                                                      sampling=config.sampling)
        write_json(out / "results.json", results)
    lines = ["# Adversarial prompt study (UnlearnDiffAtk-style)", "",
             f"{config.n_prompts} `{config.prompt_set}` prompts; {config.attack.n_tokens} adversarial tokens optimised "
             f"{config.attack.steps} steps against the model's diffusion loss on target images drawn by the base "
             f"model, projected to words; success = any of {config.attack.seeds_per_prompt} seeded images flagged.", "",
             "| model | ASR (attack) | success without attack |", "|---|---:|---:|"]
    for name, r in results["models"].items():
        lines.append(f"| {name} | {fmt_ci(r['attack_success_rate'], r['attack_success_rate_ci95'])} | "
                     f"{fmt_ci(r['no_attack_success_rate'], r['no_attack_success_rate_ci95'])} |")
    lines += ["", "Example adversarial prompts:", ""]
    for name, r in results["models"].items():
        lines.append(f"- {name}: `{r['prompts'][0]['adversarial_prompt']}`")
    write_report(out, "\n".join(lines) + "\n")
    return results
