"""The adversarial study: ASR of the UnlearnDiffAtk-style prompt attack against each aligned model."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..align import ESD_X, align_lora
from ..attacks.adversarial import AdversarialConfig, attack_success_rate
from ..data.prompts import read_prompts
from ..evaluate.detectors import load_detector
from ..evaluate.sampling import SamplingConfig
from ..finetune import finetune
from ..data.folder import load_training_data
from ..io import write_json, write_text
from ..lora.weights import LoRA, merge_into
from ..models.loading import load_pipeline
from ..report import fmt_ci
from ..train import TrainConfig


@dataclass
class AdversarialStudyConfig:
    models: list[str] = field(default_factory=lambda: ["base", "esd-x", "sdd", "modular"])
    prompt_set: str = "harmful"
    n_prompts: int = 20
    attack: AdversarialConfig = field(default_factory=AdversarialConfig)
    align: TrainConfig = field(default_factory=lambda: replace(ESD_X))
    modular_domain: str = "plus"
    modular_steps: int = 300
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


def _safety_lora(base, method, out: Path, config: AdversarialStudyConfig, reuse: Path | None) -> LoRA:
    for candidate in ([reuse / "loras" / f"safety_{method}.safetensors"] if reuse else []) + \
                     [out / "loras" / f"safety_{method}.safetensors"]:
        if candidate.exists():
            return LoRA.load(candidate)
    lora = align_lora(copy.deepcopy(base), method, ["a star", "a pentagram"], config.align)
    lora.save(out / "loras" / f"safety_{method}.safetensors")
    return lora


def run_adversarial(out: Path, config: AdversarialStudyConfig, model: str = "shapes", reuse: Path | None = None) -> dict:
    out.mkdir(exist_ok=True)
    (out / "loras").mkdir(exist_ok=True)
    base = load_pipeline(model)
    detector = load_detector("shapes")
    rows = read_prompts(config.prompt_set, limit=config.n_prompts)
    results = {"study": "adversarial", "model": model, "config": asdict(config), "models": {}}
    for name in config.models:
        pipe = copy.deepcopy(base)
        if name in ("esd-x", "esd-u", "sdd"):
            merge_into(pipe, [(_safety_lora(base, name, out, config, reuse), 1.0)])
        elif name == "modular":
            safe = _safety_lora(base, "esd-x", out, config, reuse)
            images, texts = load_training_data(config.modular_domain, 32, n=1000)
            ft = finetune(copy.deepcopy(base), images, texts,
                          TrainConfig(steps=config.modular_steps, lr=1e-3, batch_size=32, checkpoint_every=10**9))
            merge_into(pipe, [(safe, 1.0), (ft, 1.0)])
        elif name != "base":
            raise ValueError(f"unknown model {name!r}")
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
    write_text(out / "report.md", "\n".join(lines) + "\n")
    return results
