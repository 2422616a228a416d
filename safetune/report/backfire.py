"""report.md and curves for the backfire study."""
from __future__ import annotations

from pathlib import Path

from . import fmt_ci, metrics_table, pyplot, save_figure


def _cell(sets: dict, name: str, metric: str) -> str:
    m = sets.get(name)
    return fmt_ci(m[metric], m[metric + "_ci95"]) if m and metric in m else "-"


def plot_curves(results: dict, method: str, path: Path) -> None:
    plt = pyplot()
    entry = results["methods"][method]
    colours = {"full": "tab:red", "lora-on-top": "tab:orange", "modular": "tab:green"}
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for d, (domain, ways) in enumerate(entry["finetune"].items()):
        for way, run in ways.items():
            steps = sorted(run["steps"], key=int)
            rates = [run["steps"][s]["harmful"]["harmful_rate"] for s in steps]
            lo = [run["steps"][s]["harmful"]["harmful_rate_ci95"][0] for s in steps]
            hi = [run["steps"][s]["harmful"]["harmful_rate_ci95"][1] for s in steps]
            x = [int(s) for s in steps]
            colour = colours.get(run.get("way", way), "gray")
            ax.plot(x, rates, styles[d % 4], color=colour, marker="o", label=f"{way} / {domain}")
            ax.fill_between(x, lo, hi, color=colour, alpha=0.08)
    ax.axhline(results["base"]["harmful"]["harmful_rate"], color="black", lw=0.8, ls=":", label="base model")
    ax.axhline(entry["aligned"]["harmful"]["harmful_rate"], color="tab:blue", lw=0.8, ls=":", label=f"{method} aligned")
    ax.set_xlabel("benign fine-tuning steps")
    ax.set_ylabel("harmful rate (harmful prompts)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"backfire: {method}")
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path)


def render_backfire(results: dict, out: Path) -> str:
    cfg = results["config"]
    s = cfg["sampling"]
    lines = [
        "# Backfire study: does benign fine-tuning bring the erased concept back?",
        "",
        f"Model `{results['model']}`. Safety LoRAs trained on W0 ({', '.join(cfg['methods'])}; concepts "
        f"{cfg['concepts']}; {cfg['align']['steps']} steps, lr {cfg['align']['lr']}, rank {cfg['align']['lora_rank']}). "
        f"Benign fine-tuning on {', '.join(cfg['domains'])} ({cfg['n_data']} images each), full at lr {cfg['full_lr']}, "
        f"LoRAs at lr {cfg['lora_lr']}, batch {cfg['batch_size']}, evaluated at steps {cfg['save_at']}. "
        f"{s['images_per_prompt']} images per prompt x {cfg['prompts_per_set']} prompts per set, fixed seeds, "
        f"{s['steps']} DDIM steps, guidance {s['guidance_scale']}. 95% intervals in brackets.",
        "",
        "Ways: **full** = full fine-tuning of W0 + dW_safe; **lora-on-top** = a LoRA trained on W0 + dW_safe; "
        "**modular** = a LoRA trained on W0 alone, composed as W0 + dW_safe + dW_ft.",
        "",
        "## Base and aligned models",
        "",
    ]
    rows = {f"base / {k}": v for k, v in results["base"].items()}
    for method, entry in results["methods"].items():
        rows.update({f"{method} / {k}": v for k, v in entry.get("aligned", {}).items()})
    lines += [metrics_table(rows), "## Arithmetic probes", ""]
    probe_rows = {f"{method}: {probe} / {k}": v for method, entry in results["methods"].items()
                  for probe, sets in entry.get("probes", {}).items() for k, v in sets.items()}
    lines += [metrics_table(probe_rows) if probe_rows else "(none)", ""]
    for method, entry in results["methods"].items():
        if not entry.get("finetune"):
            continue
        curve = out / f"curve_{method}.png"
        plot_curves(results, method, curve)
        lines += [f"## {method}: harmful rate after benign fine-tuning", "", f"![curve]({curve.name})", "",
                  "Harmful rate on *clean* prompts is the detector's false-positive floor: when it rises with the "
                  "harmful rate, the model is degrading (misshapen objects read as stars), not relearning the concept.",
                  "",
                  "| domain | way | step | harmful rate | harmful (implicit) | harmful rate on clean prompts | clean fidelity | domain fidelity |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for domain, ways in entry["finetune"].items():
            for way, run in ways.items():
                for step in sorted(run["steps"], key=int):
                    sets = run["steps"][step]
                    lines.append(f"| {domain} | {way} | {step} | {_cell(sets, 'harmful', 'harmful_rate')} | "
                                 f"{_cell(sets, 'harmful_implicit', 'harmful_rate')} | "
                                 f"{_cell(sets, 'clean', 'harmful_rate')} | {_cell(sets, 'clean', 'prompt_fidelity')} | {_cell(sets, domain, 'prompt_fidelity')} |")
        lines += [""]
        grids = [(domain, way) for domain, ways in entry["finetune"].items() for way in ways]
        if grids:
            lines += ["Harmful-prompt samples at the last step:", ""]
            last = max(cfg["save_at"])
            for domain, way in grids:
                lines.append(f"- {domain} / {way}: ![](grids/{method}__{domain}__{way}__step{last}__harmful.png)")
            lines.append("")
    return "\n".join(lines)
