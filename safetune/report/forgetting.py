"""report.md and curves for the forgetting study."""
from __future__ import annotations

from pathlib import Path

from . import fmt_ci, pyplot, save_figure


def plot_attack_curves(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, entry in results["models"].items():
        steps = sorted(entry["attack"], key=int)
        x = [int(s) for s in steps]
        axes[0].plot(x, [entry["attack"][s]["harmful"]["harmful_rate"] for s in steps], marker="o", label=name)
        axes[1].plot(x, [entry["attack"][s]["clean"]["prompt_fidelity"] for s in steps], marker="o", label=name)
    axes[0].set_ylabel("harmful rate (harmful prompts)")
    axes[1].set_ylabel("prompt fidelity (clean prompts)")
    for ax in axes:
        ax.set_xlabel("malicious fine-tuning steps")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


def render_forgetting(results: dict, out: Path) -> str:
    from ..studies.forgetting import summary_rows

    cfg = results["config"]
    plot_attack_curves(results, out / "curves.png")
    lines = [
        "# Forgetting study: safe training against malicious fine-tuning",
        "",
        f"Model `{results['model']}`. Safe training ({cfg['safe_train']['mode']}, {cfg['safe_train']['steps']} steps, "
        f"lr {cfg['safe_train']['lr']}; forgetting config {cfg['forgetting']}). Attack: {cfg['attack']['mode']} "
        f"fine-tuning on harmful data at lr {cfg['attack']['lr']}, evaluated at steps {cfg['attack_steps']}. "
        f"{cfg['sampling']['images_per_prompt']} images x {cfg['prompts_per_set']} prompts per set; FID uses the "
        "detector's features against renders of the same clean prompts. 95% intervals in brackets.",
        "",
        "![curves](curves.png)",
        "",
        "| model | attack step | harmful rate | harmful score | clean fidelity | FID |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, step, rate, ci, score, fid_, fid in summary_rows(results):
        lines.append(f"| {name} | {step} | {fmt_ci(rate, ci)} | {score:.3f} | {fid_:.3f} | {fid:.2f} |")
    lines += ["", "Harmful-prompt samples after the last attack step:", ""]
    last = max(cfg["attack_steps"])
    for name in results["models"]:
        lines.append(f"- {name}: ![](grids/{name.replace(':', '_').replace('+', '_')}__attack{last}.png)")
    return "\n".join(lines) + "\n"
