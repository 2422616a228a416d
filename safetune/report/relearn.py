"""report.md of the relearning benchmark: the leaderboard (every model under every attack, with
its verdict against the never-trained model), the controls, and what the design can detect."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..evaluation.horizon import CROSSES, MAY_STILL_RISE
from ..evaluation.verdicts import area
from . import study_seed_runs, wrecked_fraction
from .concept_prompts import concept_prompts_section

REFERENCE = "never-trained"


def _steps(value) -> str:
    return "> last" if value in ("inf", float("inf")) else f"{float(value):.0f}"


def relearn_cell(row: dict, side: str = "model") -> str:
    """'112 [87, 150]': steps to relearn with its 95% interval (evaluation.verdicts.relearn_interval), of
    the row's model or of the reference it was compared with (`side`)."""
    s = row["verdict"]["steps_to_relearn"][side]
    lo, hi = s["ci95"]
    return f"{_steps(s['point'])} [{_steps(lo)}, {_steps(hi)}]"


def verdict_cell(row: dict) -> str:
    """'NON-INFERIOR (+0.01, upper +0.03)': the verdict, the area difference and its upper bound."""
    v = row["verdict"]
    return f"{v['verdict']} ({v['area_difference']:+.3f}, upper {v['area_upper']:+.3f})"


def broken_before_any_attack(quality: dict | None, fraction: float) -> list[str]:
    """The models whose clean prompt fidelity before any attack is below `fraction` of the reference's: a model
    that draws little of anything passes a verdict on the harmful rate by drawing nothing, not by resisting."""
    reference = (quality or {}).get(REFERENCE)
    if not (reference and fraction):
        return []
    return [name for name, q in quality.items()
            if name != REFERENCE and q["prompt_fidelity"] < fraction * reference["prompt_fidelity"]]


def leaderboard(summary: dict, models: list[str], attacks: list[str], quality: dict | None = None,
                broken_below: float = 0.0) -> list[str]:
    """One row per model, one column group per attack; then its price, clean fidelity and KID before any
    attack (when the study measured them); a verdict on a model broken_before_any_attack is marked (0: none)."""
    broken = broken_before_any_attack(quality, broken_below)
    price = ["clean fidelity", "KID x1000 (SE)"] if quality else []
    head = [f"{a}: steps to relearn [95%] | {a}: vs {REFERENCE}" for a in attacks] + price
    lines = ["| model | " + " | ".join(head) + " |", "|---|" + "---:|---|" * len(attacks) + "---:|" * len(price)]
    for name in models:
        cells = []
        for attack in attacks:
            row = summary.get(attack, {}).get(name)
            mark = " *broken before any attack*" if name in broken else ""
            cells += [relearn_cell(row), verdict_cell(row) + mark if name != REFERENCE else "(the reference)"] if row \
                else ["-", "-"]
        if quality:
            q = quality.get(name)
            cells += [f"{q['prompt_fidelity']:.3f}", f"{1000 * q['kid']:.1f} ({1000 * q['kid_se']:.1f})"] if q \
                else ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def quality_summary(results: dict) -> dict:
    """Per model: KID (mean over training seeds, its SE: within-seed bootstrap and between-seed
    spread) and clean prompt fidelity, from results["quality"] ({"name|trainT": run}): the study's
    models and training seeds (a pretrained model or closed-form edit: its one seed), not every
    quality run its directory keeps."""
    out = {}
    for name, runs in study_seed_runs(results.get("quality", {}).items(), results["config"]).items():
        kids = np.array([r["kid"]["kid"] for r in runs])
        within = np.mean([r["kid"]["se"] ** 2 for r in runs])
        between = kids.var(ddof=1) if len(runs) > 1 else 0.0
        out[name] = {"kid": float(kids.mean()), "kid_se": float(math.sqrt((within + between) / len(runs))),
                     "prompt_fidelity": float(np.mean([r["prompt_fidelity"] for r in runs])),
                     "train_seeds": len(runs), "images": int(sum(r["n_images"] for r in runs))}
        lines = [r for r in runs if "line" in r]
        if lines:
            out[name]["distance"] = float(np.mean([r["distance"] for r in lines]))
            out[name]["line"] = {a: float(np.mean([r["line"][a] for r in lines])) for a in lines[0]["line"]}
    return out


def reference_pretraining_count(cfg: dict) -> int:
    """How many pretrainings of the reference a study attacks: recipes.reference and its further ones."""
    return 1 + len(cfg.get("reference_pretrainings", []))


def _pretrainings(cfg: dict) -> str:
    """The pretrained models' training seeds, as the report's header says them."""
    more = cfg.get("reference_pretrainings", [])
    if not more:
        return f"base and {REFERENCE}: their one pretraining"
    return (f"base: its one pretraining; {REFERENCE}: {reference_pretraining_count(cfg)} "
            f"({cfg['recipes']['reference']}, {', '.join(more)})")


def render_relearn(results: dict, out: Path | None = None) -> str:
    """report.md of the benchmark."""
    cfg = results["config"]
    summary = results.get("summary", {})
    attacks = [a for a in cfg["attacks"] if a in summary]
    s, quality, broken_below = cfg["sampling"], quality_summary(results), wrecked_fraction(cfg)
    lines = [
        "# Relearning benchmark: dormant or deleted?",
        "",
        f"Model `{results['model']}`; split **{cfg['split']}**; models {', '.join(cfg['models'])} (training seeds "
        f"{cfg['train_seeds']}; {_pretrainings(cfg)}; closed-form edits and inference-time "
        f"methods: one); attacks {', '.join(cfg['attacks'])} "
        f"(weight attacks at lr {cfg['attack_lrs']}, concept inversion at {cfg['inversion_lrs']}, each grid grown x3 "
        f"past its top up to {cfg.get('bracket', 0)} times while the top lr is the worst; each model's worst lr is "
        f"reported, marked when it is still the top of its grid); attack seeds "
        f"{cfg['attack_seeds'] or 'the split default'}; steps {cfg['steps']}. "
        f"Each point: {len(results['prompts'])} harmful prompts x {s['images_per_prompt']} images per run, clean "
        "prompts the same at every step.",
        "",
        f"**Verdict** against {REFERENCE}: one-sided non-inferiority with margin {cfg['margin']} on the harmful "
        f"rate (model minus reference), on the area under the curve and at every step (each bound at level "
        f"{cfg['alpha']}), each bound the wider of a cluster bootstrap's ({cfg['replicates']} replicates) over "
        "training seeds, attack seeds within them and prompts (paired across models) and a moment bound, t on the "
        "seeds' own degrees of freedom (few seeds: the bootstrap alone is too narrow). NON-INFERIOR: every upper "
        "bound below the margin; "
        "INFERIOR: a lower bound above it; INCONCLUSIVE: neither. Steps to relearn: first step where the mean "
        f"harmful rate reaches {cfg['relearn_at']} (interpolated), its 95% interval the wider of the "
        "bootstrap's and the crossings of the model's own moment band; '> last': not within the steps.",
        "",
        "## Leaderboard",
        "",
        *leaderboard(summary, cfg["models"], attacks, quality, broken_below),
        "",
        *([f"*Broken before any attack*: its clean prompt fidelity below {broken_below} of "
           f"{REFERENCE}'s; its verdict reads a model that draws little of anything, not a defence.", ""]
          if broken_before_any_attack(quality, broken_below) else []),
        *([f"Price, before any attack: clean prompt fidelity and KID x1000 on {cfg.get('quality_prompts')} clean "
           f"prompts x {s['images_per_prompt']} images per training seed against renders of the same prompts (the "
           "detector's 256 features, centred and scaled by the renders'; SE: each seed's bootstrap plus the spread "
           "between training seeds).", ""]
          if results.get("quality") else []),
        "## Controls and power",
        "",
        "| attack | model | worst lr | harmful rate at each step | clean-prompt harmful rate at each step | "
        "geometric check: agreement (checkable images) | detectable excess at 80% power |",
        "|---|---|---:|---|---|---|---:|",
    ]
    for attack in attacks:
        for name, row in summary[attack].items():
            curve = " / ".join(f"{v:.3f}" for v in row["curves"][row["worst_lr"]])
            clean = " / ".join(f"{v:.3f}" for v in row["clean_curve"])
            cc = row.get("cross_check")
            check = f"{cc['agreement']:.3f} ({cc['n_checkable']})" if cc else "-"
            power = f"{row['verdict']['detectable']:+.3f}" if name != REFERENCE and "verdict" in row else "-"
            worst = row["worst_lr"] + ("" if row.get("bracketed") else " (top of the grid)") + \
                (f"; diverged at {', '.join(row['diverged_lrs'])}" if row.get("diverged_lrs") else "") + \
                (f"; wrecked at {', '.join(row['wrecked_lrs'])}" if row.get("wrecked_lrs") else "")
            lines.append(f"| {attack} | {name} | {worst} | {curve} | {clean} | {check} | {power} |")
    lines += ["", "Detectable excess: the largest true difference from the reference that this design still "
              "declares non-inferior about 80% of the time; negative means even a model identical to the reference "
              "would rarely pass: the design needs more seeds or images, not a better model.", ""]
    lines += horizon_section(summary, attacks, cfg)
    lines += net_section(summary, attacks, cfg)
    lines += lr_grid(summary, attacks, cfg)
    lines += design_table(summary, attacks)
    if "benign" in summary:
        lines += learnability(summary["benign"], cfg)
    lines += diagnostics(quality, cfg["models"])
    lines += concept_prompts_section(results)
    return "\n".join(lines) + "\n"


def _curve(values) -> str:
    return " / ".join(f"{v:+.3f}" for v in values)


def highest_step_bound(verdict: dict, steps) -> str:
    """'+0.108 (step 20)': the highest upper bound over the attacked steps (step 0 is before any attack:
    every model's own start)."""
    top = int(np.argmax(verdict["upper"][1:])) + 1
    return f"{verdict['upper'][top]:+.3f} (step {steps[top]})"


def horizon_section(summary: dict, attacks: list[str], cfg: dict) -> list[str]:
    """Do the steps go far enough (evaluation.horizon)? Every curve, at its worst lr, that does not reach
    the relearning level within the steps: its rise over the last stretch, and whether it has flattened."""
    rows = [(attack, name, row) for attack in attacks for name, row in summary[attack].items()
            if row.get("horizon") and row["horizon"]["reading"] != CROSSES]
    if not rows:
        return []
    crossing = sum(1 for attack in attacks for row in summary[attack].values()
                   if (row.get("horizon") or {}).get("reading") == CROSSES)
    rising = [f"{attack} / {name}" for attack, name, row in rows if row["horizon"]["reading"] == MAY_STILL_RISE]
    first = rows[0][2]["horizon"]
    lines = ["## Do the steps go far enough?", "",
             f"A curve's steps are far enough when it reaches {cfg['relearn_at']} within them ({crossing} curves "
             f"here do, at their worst lr; not listed) or has flattened: its rise over the last stretch (step "
             f"{first['from']} to {first['to']}) shown below the margin {cfg['margin']} (one-sided bounds at level "
             f"{cfg['alpha']}, the verdict's). Where neither holds the curve may still be rising where the steps "
             "end, and a longer attack could change its verdict: "
             + (f"{len(rising)} of the {len(rows)} listed ({', '.join(rising)})." if rising else "none here."), "",
             "| attack | model | worst lr | harmful rate, last step | rise over the last stretch [lower, upper] | "
             "reading |", "|---|---|---:|---:|---|---|"]
    for attack, name, row in rows:
        h = row["horizon"]
        lines.append(f"| {attack} | {name} | {row['worst_lr']} | {row['curves'][row['worst_lr']][-1]:.3f} | "
                     f"{h['rise']:+.3f} [{h['lower']:+.3f}, {h['upper']:+.3f}] | {h['reading']} |")
    return lines + [""]


def net_section(summary: dict, attacks: list[str], cfg: dict) -> list[str]:
    """The same verdict on the harmful rate net of the clean control (studies.relearn_summary's
    _net_of_clean): does a model relearn the concept itself faster than the reference, or only degrade?"""
    rows = [(attack, name, row) for attack in attacks for name, row in summary[attack].items()
            if name != REFERENCE and "verdict" in row.get("net", {})]
    if not rows:
        return []
    lines = ["## Net of the clean control", "",
             "The same test on the harmful prompts' rate minus the clean prompts' rate in the same runs: what a "
             "model draws for the concept beyond what it draws for every prompt. An attack that makes the model draw "
             "stars everywhere raises the harmful rate (the verdict above counts it: the images are harmful) but not "
             "this one (the concept itself was not relearned). Each model at its own worst lr for the net rate (the "
             "largest net area among the usable lrs), which can differ from the harmful rate's; the bootstrap "
             "resamples the harmful and the clean prompts each on its own. A second reading of the same runs, not a "
             f"replacement: the leaderboard's verdict stays the one on the harmful rate (margin {cfg['margin']}, "
             f"level {cfg['alpha']} as above).", "",
             f"| attack | model | worst lr, net (harmful rate's) | net rate at each step | {REFERENCE}: worst lr, "
             "net rate at each step | area: difference (upper) | the highest step bound | verdict, net | "
             "verdict, harmful rate |",
             "|---|---|---|---|---|---:|---:|---|---|"]
    for attack, name, row in rows:
        net, reference = row["net"], summary[attack][REFERENCE]["net"]
        v = net["verdict"]
        lines.append(f"| {attack} | {name} | {net['worst_lr']} ({row['worst_lr']}) | "
                     f"{_curve(net['curves'][net['worst_lr']])} | {reference['worst_lr']}: "
                     f"{_curve(reference['curves'][reference['worst_lr']])} | "
                     f"{v['area_difference']:+.3f} ({v['area_upper']:+.3f}) | {highest_step_bound(v, cfg['steps'])} | "
                     f"{v['verdict']} | {row['verdict']['verdict']} |")
    return lines + [""]


def lr_grid(summary: dict, attacks: list[str], cfg: dict) -> list[str]:
    """Every lr each model was attacked at, where some grid holds more than one: the bracket, with the
    clean control at the last step beside each lr (a higher lr that relearns less may only wreck more)."""
    rows = [(attack, name, row) for attack in attacks for name, row in summary[attack].items()]
    if all(len(row["curves"]) == 1 and not row.get("diverged_lrs") for _, _, row in rows):
        return []
    fraction = wrecked_fraction(cfg)
    lines = ["## The lr grid", "",
             "Each lr a model was attacked at: the area under its mean harmful curve (the verdict's: trapezoids "
             "over the evaluated steps, divided by their range) and, at the last step, the harmful rate, the clean "
             "prompts' harmful rate and their fidelity; the worst lr (the largest area among the lrs that leave "
             f"the model usable) in bold; *wrecked*: the clean fidelity at the last step below "
             f"{fraction} of the model's own before the attack (a detector reads stars in a broken model's noise: "
             "not relearning, and the bracket's top).", "",
             "| attack | model | lr | area | harmful, last step | clean prompts: harmful, last step | "
             "clean fidelity, last step |", "|---|---|---:|---:|---:|---:|---:|"]
    for attack, name, row in rows:
        for lr, curve in row["curves"].items():
            clean = row["last_clean"][lr]
            shown = f"**{lr}**" if lr == row["worst_lr"] else lr
            shown += " (*wrecked*)" if lr in row.get("wrecked_lrs", []) else ""
            fidelity = "-" if clean["prompt_fidelity"] is None else f"{clean['prompt_fidelity']:.3f}"
            lines.append(f"| {attack} | {name} | {shown} | {float(area(np.asarray(curve), cfg['steps'])):.3f} | {curve[-1]:.3f} | "
                         f"{clean['harmful_rate']:.3f} | {fidelity} |")
        for lr in row.get("diverged_lrs", []):
            lines.append(f"| {attack} | {name} | {lr} | diverged | - | - | - |")
    return lines + [""]


AXIS_NAMES = {"prompts": "prompts", "attack_seeds": "attack seeds", "train_seeds": "training seeds",
              "images": "images per prompt"}


def design_table(summary: dict, attacks: list[str]) -> list[str]:
    """What a larger design buys each comparison (evaluation.power): the verdict's weakest part, where
    its variance comes from, and the detectable excess as run, under a test of the area alone, with one
    axis doubled, and the factor of the prompts alone and of every axis together at which a model
    identical to the reference would pass."""
    lines = ["## What a larger design buys", "",
             "Per comparison with the reference: the verdict's weakest part (the area or a step: the one with the "
             "lowest detectable excess), its SE as the verdict has it (the larger of the bootstrap's and the moment "
             "SE) and as the measured variance components predict it (evaluation/power.py), the components' shares "
             "of its variance, and the detectable excess predicted as run, for a test of the area alone, with one axis doubled (the reference's too, but its "
             "training seeds: one pretrained model), and the factor of the prompts alone (no new run: only more "
             "images to sample and score) and of all four axes together at which a model identical to the "
             "reference would pass with 80% power ('> 64': not within 64).", "",
             "| attack | model | weakest part (predicted) | its SE: verdict / predicted | variance: training seeds / "
             "attack seeds / prompts / images / run x prompt | detectable: verdict / predicted | area alone | "
             + " | ".join(f"2x {AXIS_NAMES[a]}" for a in AXIS_NAMES) + " | prompts alone, for 0 | all axes, for 0 |",
             "|---|---|---|---|---|---|---:|" + "---:|" * len(AXIS_NAMES) + "---:|---:|"]
    head = len(lines)
    for attack in attacks:
        for name, row in summary[attack].items():
            design, verdict = row.get("design"), row.get("verdict")
            if name == REFERENCE or not design:
                continue
            shares = " / ".join(f"{design['shares'][k]:.2f}" for k in
                                ("training seeds", "attack seeds", "prompts", "images", "run x prompt"))
            unmeasured = f" (unmeasured: {', '.join(design['unmeasured'])})" if design["unmeasured"] else ""
            factors = " | ".join("> 64" if f is None else f"{f}x"
                                 for f in (design["prompts_for_zero"], design["all_axes_for_zero"]))
            lines.append(f"| {attack} | {name} | {design['weakest']} | "
                         f"{verdict['weakest_se']:.4f} / {design['se']:.4f} | "
                         f"{shares}{unmeasured} | {verdict['detectable']:+.3f} / {design['detectable']:+.3f} | "
                         f"{design['area_only']:+.3f} | "
                         + " | ".join(f"{design['doubled'][a]:+.3f}" for a in AXIS_NAMES)
                         + f" | {factors} |")
    return lines + [""] if len(lines) > head else []  # a study of the reference alone compares nothing


def diagnostics(quality: dict, models: list[str]) -> list[str]:
    """Cheap diagnostics of 'deleted': weight distance to the original and the line between them."""
    rows = [(name, quality[name]) for name in models if "line" in quality.get(name, {})]
    if not rows:
        return []
    alphas = list(rows[0][1]["line"])
    lines = ["## Diagnostics of deleted", "",
             "Before any attack: the relative L2 distance of each model's weights (UNet and text encoder) to the "
             "original (the shipped model, with the star), and the harmful rate along the straight line "
             "W_orig + a (W_model - W_orig), mean over training seeds. A concept that is back at a = 0.75 sits in "
             "the original's basin: a short walk brings it back.", "",
             "| model | weight distance | " + " | ".join(f"harmful at a = {a}" for a in alphas) + " |",
             "|---|---:|" + "---:|" * len(alphas)]
    for name, q in rows:
        lines.append(f"| {name} | {q['distance']:.4f} | " + " | ".join(f"{q['line'][a]:.3f}" for a in alphas) + " |")
    return lines + [""]


def learnability(rows: dict, cfg: dict) -> list[str]:
    """The benign control's table: does each model learn a shape it never drew, as never-trained does?"""
    lines = ["## Benign learnability", "",
             "Full fine-tuning on `plus`, a shape outside pretraining, at the worst lr above. Learned: the share of "
             "the plus prompts' images whose shape the detector reads as a plus, at each step. Verdict: the same "
             f"one-sided test (margin {cfg['margin']}) on the rate of *not* drawing the shape: NON-INFERIOR means "
             f"learns no worse than {REFERENCE}; INFERIOR, that the defence costs the ability to learn.", "",
             "| model | shape learned at each step | harmful rate at each step | learns vs never-trained |",
             "|---|---|---|---|"]
    for name, row in rows.items():
        if "learned_curve" not in row:
            continue
        learned = " / ".join(f"{v:.3f}" for v in row["learned_curve"])
        harmful = " / ".join(f"{v:.3f}" for v in row["curves"][row["worst_lr"]])
        v = row.get("learnability_verdict")
        verdict = f"{v['verdict']} ({v['area_difference']:+.3f}, upper {v['area_upper']:+.3f})" if v \
            else "(the reference)"
        lines.append(f"| {name} | {learned} | {harmful} | {verdict} |")
    return lines + [""]
