"""Tables read across focused studies of the relearning benchmark, each row from the study that asked
its question: the immunisation's ablation (each ingredient from its screen) and every bracketed
comparison, on the harmful rate and net of the clean control (each from the study that bracketed it)."""
from __future__ import annotations

from .relearn import REFERENCE, highest_step_bound, quality_summary, reference_pretraining_count, relearn_cell, \
    verdict_cell


def ablation_table(rows: list[tuple[str, dict, str, dict]], attacks: list[str], baseline: str,
                   baseline_label: str) -> list[str]:
    """One row per ingredient, each read from the study that screened it ((label, results with their
    summary, model, {attack: its paired comparison against `baseline` in that study, or None})): its
    training seeds, its harmful rate before any attack, where each attack ends (its last step, worst
    lr) with the verdict against the never-trained model and the area difference against the
    baseline (named `baseline_label`) of the same seeds, and its price."""
    head = ["ingredient", "training seeds", "before any attack"]
    head += [f"{a}: at its last step | {a}: vs {REFERENCE} | {a}: vs {baseline_label} (area, 90%)" for a in attacks]
    lines = ["| " + " | ".join(head + ["clean fidelity", "KID x1000 (SE)"]) + " |",
             "|---|---:|---:|" + "---:|---|---:|" * len(attacks) + "---:|---:|"]
    for label, results, name, against in rows:
        summary, quality = results["summary"], quality_summary(results)[name]
        curves = [summary[a][name]["curves"][summary[a][name]["worst_lr"]] for a in attacks]
        cells = [label, str(quality["train_seeds"]), f"{curves[0][0]:.3f}"]
        for attack, curve in zip(attacks, curves):
            cells += [f"{curve[-1]:.3f}", verdict_cell(summary[attack][name]) if name != REFERENCE else "(the reference)",
                      "(the baseline)" if name == baseline else paired_cell(against.get(attack))]
        cells += [f"{quality['prompt_fidelity']:.3f}", f"{1000 * quality['kid']:.1f} ({1000 * quality['kid_se']:.1f})"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paired_cell(comparison: dict | None) -> str:
    """'-0.027 [-0.093, +0.041]': a paired comparison's area difference and its 90% interval."""
    if comparison is None:
        return "-"
    return (f"{comparison['area_difference']:+.3f} [{comparison['area_lower']:+.3f}, "
            f"{comparison['area_upper']:+.3f}]")


def _sides(rows: list[tuple[str, dict, str, str]]):
    """Each bracketed comparison with its two sides' summary rows: the model's and the reference's."""
    for study, results, name, attack in rows:
        summary = results["summary"][attack]
        yield study, results, name, attack, summary[name], summary[REFERENCE]


def _bounds(verdict: dict, results: dict) -> str:
    """'-0.010 (+0.089) | +0.164 (step 200) | INCONCLUSIVE (0.025)': a comparison's area difference (its
    upper bound), its highest step bound and its verdict at its study's level."""
    return (f"{verdict['area_difference']:+.3f} ({verdict['area_upper']:+.3f}) | "
            f"{highest_step_bound(verdict, results['config']['steps'])} | {verdict['verdict']} ({verdict['alpha']:.3g})")


def bracketed_table(rows: list[tuple[str, dict, str, str]]) -> list[str]:
    """Each bracketed comparison in one table, read from the focused study that bracketed it ((the study's
    name, its results with their summary, the model, the attack)): the model at its worst usable lr
    against the reference at its own, with the lrs tried, where each ends, steps to relearn, the area's
    and the weakest step's bounds, the verdict at the study's level (a study's level counts the earlier
    looks at its data), whether each curve's steps go far enough (evaluation.horizon) and how many
    pretrainings of the reference the study attacked (its training seeds)."""
    lines = ["| attack | model | lrs tried | its worst usable lr | the reference's | harmful, last step: "
             f"model / {REFERENCE} | steps to relearn [95%]: model / {REFERENCE} | area: difference (upper) | "
             f"the highest step bound | verdict (level) | the steps' end: model / {REFERENCE} | "
             f"pretrainings of {REFERENCE} | study |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for study, results, name, attack, row, reference in _sides(rows):
        v = row["verdict"]
        tried = ", ".join(lr + (" (wrecked)" if lr in row["wrecked_lrs"] else "") for lr in row["curves"])
        relearn = f"{relearn_cell(row)} / {relearn_cell(row, 'reference')}"
        ends = " / ".join(f"{r['curves'][r['worst_lr']][-1]:.3f}" for r in (row, reference))
        worst = " | ".join(r["worst_lr"] + ("" if r["bracketed"] else " (top of the grid)") for r in (row, reference))
        horizon = " / ".join(r["horizon"]["reading"] for r in (row, reference))  # evaluation.horizon
        lines.append(f"| {attack} | {name} | {tried} | {worst} | {ends} | {relearn} | {_bounds(v, results)} | "
                     f"{horizon} | {reference_pretraining_count(results['config'])} | [{study}](docs/results/benchmark-{study}.md) |")
    return lines


def bracketed_net_table(rows: list[tuple[str, dict, str, str]]) -> list[str]:
    """The bracketed comparisons (rows as bracketed_table's) read net of the clean control: each side at
    its own worst usable lr for the net rate, where each ends, the area's and the weakest step's bounds,
    the net verdict at the study's level beside the harmful rate's."""
    lines = [f"| attack | model | worst lr, net: model / {REFERENCE} | net rate, last step: model / {REFERENCE} | "
             "area: difference (upper) | the highest step bound | verdict, net (level) | verdict, harmful rate | "
             "study |",
             "|---|---|---:|---:|---:|---:|---|---|---|"]
    for study, results, name, attack, row, reference in _sides(rows):
        v = row["net"]["verdict"]
        worst = " / ".join(r["net"]["worst_lr"] for r in (row, reference))
        ends = " / ".join(f"{r['net']['curves'][r['net']['worst_lr']][-1]:+.3f}" for r in (row, reference))
        lines.append(f"| {attack} | {name} | {worst} | {ends} | {_bounds(v, results)} | "
                     f"{row['verdict']['verdict']} | [{study}](docs/results/benchmark-{study}.md) |")
    return lines


def unbracketed_table(rows: list[tuple[str, str, dict, dict]]) -> list[str]:
    """The rows whose own lr grid is not bracketed, each at its one lr against the reference at its
    bracketed worst lr ((the attack, the model, its study's results with their summary, the comparison:
    studies.relearn_summary.against_reference)), and what the row's own bracket can change."""
    lines = ["| attack | model | its lr (its grid's top) | the reference's worst lr | area: difference [lower, upper] | "
             "verdict (level) | its own bracket |", "|---|---|---:|---:|---:|---|---|"]
    for attack, name, results, v in rows:
        bracket = "can only raise its area: INFERIOR stands" if v["settled"] else \
            "needed: it may change the verdict"
        lines.append(f"| {attack} | {name} | {results['summary'][attack][name]['worst_lr']} | {v['reference_lr']} | "
                     f"{v['area_difference']:+.3f} [{v['area_lower']:+.3f}, {v['area_upper']:+.3f}] | "
                     f"{v['verdict']} ({v['alpha']:.3g}) | {bracket} |")
    return lines
