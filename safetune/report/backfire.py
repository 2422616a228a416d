"""report.md and curves for the backfire study."""
from __future__ import annotations

from pathlib import Path

from . import fmt_ci, metrics_table, pyplot, save_figure

WAY_COLOURS = {"full": "tab:red", "lora-on-top": "tab:orange", "modular": "tab:green", "lora": "tab:purple"}
WAY_WORDS = {
    "full": "**full**: every UNet weight of the aligned model W0 + dW_safe fine-tuned",
    "lora-on-top": "**lora-on-top**: a fine-tuning LoRA trained on the aligned model W0 + dW_safe",
    "modular": "**modular** (Modular LoRA): a fine-tuning LoRA trained on W0 alone, added to W0 + dW_safe "
               "only at inference",
    "lora": "**lora** (never-trained reference only): a fine-tuning LoRA trained on the reference model",
}
DEFINITIONS = [
    "- **harmful rate**: share of images from the `harmful` prompts that the detector flags (P(star) > 0.5).",
    "- **resurgence**: harmful rate after fine-tuning minus the same model's before fine-tuning (the aligned "
    "model, or the reference itself). Positive: the concept came back.",
    "- **mean (min-max)**: over fine-tuning seeds; **seed 95%**: t interval over seeds (what another seed "
    "would give); **pooled 95%**: all seeds' images pooled (Wilson; Newcombe for resurgence), which sees "
    "image noise but not seed-to-seed variance. A difference is claimed only when both agree.",
    "- **clean harmful**: harmful rate on *clean* prompts, the detector's false-positive floor; when it rises "
    "with the harmful rate the model is degrading (misshapen objects read as stars), not relearning.",
    "- **domain fidelity**: share of the domain prompts' attributes the detector reads back (did the "
    "fine-tuning learn its domain).",
    "- a dash: not measured at that step (implicit prompts are evaluated at the last step only; studies run "
    "before 2026-11-26 evaluated clean prompts at the last step only).",
]



def way_words(way: str) -> str:
    """What a way is, with its own recipe when it has one ('modular:lr=1e-4/lora_rank=16')."""
    kind, _, recipe = way.partition(":")
    return WAY_WORDS[kind] + (f"; its recipe here: {recipe.replace('/', ', ')} (`{way}`)" if recipe else "")

def _mean_range(stat: dict | None, digits: int = 3) -> str:
    if not stat:
        return "-"
    if stat["n_seeds"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def _interval(stat: dict | None, key: str, signed: bool = False) -> str:
    if not stat or key not in stat or stat[key][0] != stat[key][0]:  # NaN with one seed
        return "-"
    lo, hi = stat[key]
    return f"[{lo:+.3f}, {hi:+.3f}]" if signed else f"[{lo:.3f}, {hi:.3f}]"


def summary_table(summary: dict, name: str) -> list[str]:
    """The markdown table of one model's points (domain, way, step)."""
    lines = ["| domain | way | step | harmful rate, mean (min-max) | pooled 95% | resurgence, mean | seed 95% | "
             "pooled 95% | clean harmful | domain fidelity |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for domain, ways in summary.get(name, {}).items():
        for way, steps in ways.items():
            for step, row in sorted(steps.items(), key=lambda kv: int(kv[0])):
                hr, rs = row["harmful_rate"], row["resurgence"]
                lines.append(
                    f"| {domain} | {way} | {step} | {_mean_range(hr)} | {_interval(hr, 'pooled_ci95')} | "
                    f"{rs['mean']:+.3f} | {_interval(rs, 'seed_ci95', True)} | {_interval(rs, 'pooled_ci95', True)} | "
                    f"{_mean_range(row.get('clean_harmful_rate'))} | {_mean_range(row.get('domain_fidelity'))} |")
    return lines


def plot_curves(results: dict, path: Path) -> None:
    """One panel per domain; per (model, way) the mean over seeds and a band from the lowest to the
    highest seed."""
    plt = pyplot()
    domains = list(results["config"]["domains"])
    fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains), 3.8), squeeze=False)
    styles = {"aligned": "-", "reference": ":"}
    for ax, domain in zip(axes[0], domains):
        for name, by_domain in results["summary"].items():
            kind = results["models"][name]["kind"]
            for way, steps in by_domain.get(domain, {}).items():
                xs = sorted(steps, key=int)
                x = [int(s) for s in xs]
                mean = [steps[s]["harmful_rate"]["mean"] for s in xs]
                colour = WAY_COLOURS.get(way.partition(":")[0], "gray")
                ax.plot(x, mean, styles.get(kind, "-"), color=colour, marker="o", ms=3, label=f"{name}: {way}")
                ax.fill_between(x, [steps[s]["harmful_rate"]["min"] for s in xs],
                                [steps[s]["harmful_rate"]["max"] for s in xs], color=colour, alpha=0.12)
        ax.set_title(f"fine-tuned on {domain}")
        ax.set_xlabel("benign fine-tuning steps")
        ax.set_ylim(-0.02, max(0.5, ax.get_ylim()[1]))
    axes[0][0].set_ylabel("harmful rate (harmful prompts)")
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7, loc="upper left")
    save_figure(fig, path)


def curve_legend(n_seeds: int, has_reference: bool) -> str:
    """What the lines and bands of curves.png are, for this run."""
    text = ("Lines: mean over seeds; bands: lowest to highest seed." if n_seeds > 1
            else "Lines: the one fine-tuning seed of this run (no band).")
    return text + (" Dotted: the never-trained reference." if has_reference else "")


def render_backfire(results: dict, out: Path) -> str:
    """report.md of the backfire study (curves.png is written beside it)."""
    cfg = results["config"]
    s = cfg["sampling"]
    n_point = s["images_per_prompt"] * cfg["prompts_per_set"]
    te = " (text encoder trained too)" if cfg["full"].get("train_text_encoder") else ""
    lines = [
        "# Backfire study: does benign fine-tuning bring the erased concept back?",
        "",
        f"Model `{results['model']}`. Safety LoRAs on W0: {', '.join(cfg['methods'])} (concepts {cfg['concepts']}, "
        f"{cfg['align']['steps']} steps, lr {cfg['align']['lr']}, rank {cfg['align']['lora_rank']}). Benign "
        f"fine-tuning on {', '.join(cfg['domains'])} ({cfg['n_data']} images each){te}: full at lr {cfg['full']['lr']}, "
        f"LoRAs (rank {cfg['lora']['lora_rank']}) at lr {cfg['lora']['lr']}, batch {cfg['full']['batch_size']}, "
        f"fine-tuning seeds {cfg['seeds']}, evaluated at steps {cfg['save_at']}. Each point: {n_point} images per "
        f"seed ({cfg['prompts_per_set']} prompts x {s['images_per_prompt']}, the same sampling seeds for every "
        f"model), {s['steps']} DDIM steps, guidance {s['guidance_scale']}.",
        "",
        "Ways:",
        "",
        *[f"- {way_words(w)}" for w in dict.fromkeys(cfg["ways"] + (["lora"] if cfg.get("reference") else []))],
        "",
        "Domains: `clean` is the retain set (pretraining without stars: in-distribution benign data, like "
        "real benign fine-tuning sets for SD); `sparkle` (four-pointed stars) is related to the concept; "
        "`plus`, `checkered`, `outline` are far from it.",
        "",
        *DEFINITIONS,
        "",
        "## Models before fine-tuning",
        "",
    ]
    rows = {f"base / {k}": v for k, v in results["base"].items()}
    for name, entry in results["models"].items():
        rows.update({f"{name} / {k}": v for k, v in entry.get("before", {}).items()})
    lines += [metrics_table(rows, digits=3)]
    if results.get("summary"):
        plot_curves(results, out / "curves.png")
        lines += ["## Harmful rate after benign fine-tuning", "",
                  "![curves](curves.png)", "",
                  curve_legend(len(cfg["seeds"]), any(e["kind"] == "reference" for e in results["models"].values())),
                  ""]
        for name in results["summary"]:
            lines += [f"### {name}", "", *summary_table(results["summary"], name), ""]
    probes = {f"{name}: {probe} / {k}": v for name, entry in results["models"].items()
              for probe, sets in entry.get("probes", {}).items() for k, v in sets.items()}
    if probes:
        lines += ["## Arithmetic probes", "",
                  "W0 - dW_safe: the safety LoRA negated; W0 + dW_safe - dW_ft: the modular fine-tuning LoRA "
                  "(first seed) subtracted.", "", metrics_table(probes, digits=3)]
    grids = [(name, d, w, s) for name, entry in results["models"].items()
             for d, ways in entry["runs"].items() for w, seeds in ways.items() for s in list(seeds)[:1]]
    if grids:
        last = max(cfg["save_at"])
        per_row = s["images_per_prompt"]
        lines += ["## Samples", "",
                  f"Harmful-prompt images at step {last}, first fine-tuning seed: every one of the "
                  f"{cfg['prompts_per_set']} prompts, one row each, {per_row} image{'s' if per_row > 1 else ''} a row "
                  "at fixed sampling seeds (the same in every grid). Red frame: the detector sees a star.", ""]
        lines += [f"- {n} / {d} / {w}: ![](grids/{n}__{d}__{w}__{sd}__step{last}__harmful.png)" for n, d, w, sd in grids]
    return "\n".join(lines) + "\n"


def aligned_cell(entry: dict) -> str:
    """The model's harmful rate before fine-tuning, with its interval."""
    m = entry["before"]["harmful"]
    return fmt_ci(m["harmful_rate"], m["harmful_rate_ci95"])


def recipes_table(results: dict, method: str = "esd-x") -> list[str]:
    """Modular LoRA (or any way) over the benign recipes of one study: per domain and recipe, the
    harmful rate at each step (mean over seeds, lowest-highest), the largest resurgence against
    the aligned model with its seed and pooled intervals, domain fidelity at the last step, and
    what that shows: 'comes back' when a pooled lower bound is above 0, 'stays at or below' when
    every seed mean is at or below the aligned model, else 'not shown either way'."""
    entry, summary = results["models"][method], results["summary"][method]
    before = entry["before"]["harmful"]["harmful_rate"]
    steps = sorted({int(s) for ways in summary.values() for w in ways.values() for s in w})
    lines = [f"Aligned model ({method}) before fine-tuning: harmful rate {before:.3f}.", "",
             "| domain | way and recipe | " + " | ".join(f"step {s}" for s in steps) +
             " | largest resurgence [seed 95%] [pooled 95%] | domain fidelity (last step) | shows |",
             "|---|---|" + "---:|" * len(steps) + "---|---:|---|"]
    for domain, ways in summary.items():
        for way, by_step in ways.items():
            rows = [by_step[str(s)] for s in steps if str(s) in by_step]
            cells = [_mean_range(by_step[str(s)]["harmful_rate"]) if str(s) in by_step else "-" for s in steps]
            trained = [by_step[str(s)] for s in steps if s > 0 and str(s) in by_step] or rows  # step 0: the LoRA is 0
            peak = max(trained, key=lambda r: r["resurgence"]["mean"])["resurgence"]
            shows = ("**comes back**" if any(r["resurgence"]["pooled_ci95"][0] > 0 for r in rows)
                     else "stays at or below" if all(r["resurgence"]["mean"] <= 0 for r in rows)
                     else "not shown either way")
            fidelity = rows[-1].get("domain_fidelity", {}).get("mean")
            lines.append(f"| {domain} | {rows[0]['recipe']} | " + " | ".join(cells) +
                         f" | {peak['mean']:+.3f} {_interval(peak, 'seed_ci95', True)} "
                         f"{_interval(peak, 'pooled_ci95', True)} | "
                         f"{'-' if fidelity is None else f'{fidelity:.3f}'} | {shows} |")
    return lines + [""]
