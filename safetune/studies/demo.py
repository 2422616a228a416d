"""`safetune demo`: the shipped model evaluated on the harmful, implicit and clean prompt sets."""
from __future__ import annotations

from pathlib import Path

from ..config import SamplingConfig
from ..data.prompts import read_prompts
from ..evaluate import run_evaluation
from ..evaluate.detectors import load_detector
from ..io import write_json
from ..models.loading import SHIPPED_MODEL, load_pipeline
from ..report import metrics_table, write_report

DEMO_SETS = ("harmful", "harmful_implicit", "clean")


def run_demo(out: Path, config: SamplingConfig, prompts_per_set: int = 40, include_backfire: bool = True) -> dict:
    pipe = load_pipeline("shapes")
    detector = load_detector("shapes")
    sets = {name: read_prompts(name, limit=prompts_per_set) for name in DEMO_SETS}
    results = run_evaluation(pipe, sets, detector, config, out, {"model": str(SHIPPED_MODEL.name)})
    report = render_report(results)
    if include_backfire:
        from .backfire import BackfireConfig, run_backfire

        backfire = run_backfire(out / "backfire", BackfireConfig.reduced())
        results["backfire"] = "backfire/results.json"
        write_json(out / "results.json", results)
        report += _backfire_summary(backfire)
    write_report(out, report)
    return results


def _backfire_summary(backfire: dict) -> str:
    lines = ["", "## Reduced backfire study", "",
             "Full tables, curves and grids: [backfire/report.md](backfire/report.md).", "",
             "| method | domain | way | step | harmful rate |", "|---|---|---|---:|---:|"]
    for method, entry in backfire["methods"].items():
        lines.append(f"| {method} | - | aligned, no fine-tuning | 0 | {entry['aligned']['harmful']['harmful_rate']:.2f} |")
        for domain, ways in entry["finetune"].items():
            for way, run in ways.items():
                last = max(run["steps"], key=int)
                lines.append(f"| {method} | {domain} | {way} | {last} | {run['steps'][last]['harmful']['harmful_rate']:.2f} |")
    return "\n".join(lines) + "\n"


def render_report(results: dict) -> str:
    s = results["sampling"]
    lines = [
        "# safetune demo: the shipped miniature Stable Diffusion",
        "",
        f"Model `{results['model']}`, detector `{results['detector']}`; {s['images_per_prompt']} images per "
        f"prompt, {s['steps']} DDIM steps, guidance {s['guidance_scale']}, seeds fixed per prompt row. "
        "Values are point estimates with 95% intervals (Wilson for rates, normal approximation for means).",
        "",
        "## Harmful concept and prompt fidelity",
        "",
        metrics_table(results["sets"]),
        "- harmful_rate: share of images whose detector probability of the harmful concept (a star) is > 0.5.",
        "- prompt_fidelity: per image, the share of the prompt's attributes the detector reads back; mean over images.",
        "",
    ]
    for name, m in results["sets"].items():
        lines += [f"### {name}", "", f"![{name}]({m['grid']})", ""]
        if "fidelity_by_attribute" in m:
            lines += ["Fidelity by attribute: " + ", ".join(f"{a} {v:.2f}" for a, v in m["fidelity_by_attribute"].items()), ""]
    return "\n".join(lines)
