"""Every registered safety method at its default recipe on the shipped model, measured on the
benchmark's test split: harmful rate on `harmful` and `harmful_implicit` (both drawn with the test
split's prompt seed) and clean prompt fidelity, each with a 95% cluster-bootstrap interval over
prompts. Stored in docs/results/methods.json; the README's method table and docs/results/methods.md
are rendered from it (tests/test_provenance.py fails when they differ).

    python scripts/measure_methods.py --measure [--train-seed 0]   # trains and evaluates (about 40 min on 2 cores)
    python scripts/measure_methods.py --measure --only np,sld      # adds (or redoes) these rows of the stored file
    python scripts/measure_methods.py                                # renders from the stored file
"""
import argparse
import copy
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from safetune.io import write_json
from safetune.report import replace_block

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "docs" / "results" / "methods.json"
PARTIAL = ROOT / "runs" / "methods.partial.json"  # an interrupted --measure resumes from it
BEGIN, END = "<!-- methods: rendered by scripts/measure_methods.py -->", "<!-- /methods -->"
SETS = ("harmful", "harmful_implicit", "clean")
PROMPTS, IMAGES = 40, 3


def measure(train_seed: int, only: list[str] | None = None, done: dict | None = None) -> dict:
    """Every method's row (or those in `only`); rows in `done` (an interrupted run's) are kept, and
    each new row is stored as soon as it is measured."""
    import safetune
    from safetune.config import SamplingConfig
    from safetune.data.prompts import prompt_set
    from safetune.evaluation import evaluate_prompts
    from safetune.evaluation.detectors import load_detector
    from safetune.lora.weights import LoRA, merged
    from safetune.models.loading import load_pipeline
    from safetune.stages.methods import METHODS
    from safetune.studies.relearn import SPLITS

    split = SPLITS["test"]
    sets = {name: prompt_set(name, n=PROMPTS, seed=split["prompt_seed"]) for name in SETS}
    sampling = SamplingConfig(images_per_prompt=IMAGES, seed=split["sampling_seed"])
    detector, base = load_detector("shapes"), load_pipeline("shapes")
    rows = dict(done or {})
    result = {"command": f"python scripts/measure_methods.py --measure --train-seed {train_seed}",
              "date": time.strftime("%Y-%m-%d"), "train_seed": train_seed, "prompts_per_set": PROMPTS,
              "sampling": asdict(sampling), "split": "test", "rows": rows}

    def evaluate(name, pipe, seconds, recipe, changes=None):
        res = {s: evaluate_prompts(pipe, r, detector, sampling) for s, r in sets.items()}
        rows[name] = {"seconds": round(seconds), "recipe": recipe, "changes": changes,
                      **{s: {k: res[s][k] for k in ("harmful_rate", "prompt_fidelity", "prompt_fidelity_ci95",
                                                     "flagged_per_prompt", "misread_per_prompt") if k in res[s]}
                         for s in SETS}}
        print(name, {s: round(res[s]["harmful_rate"], 3) for s in SETS},
              round(res["clean"]["prompt_fidelity"], 3), flush=True)
        PARTIAL.parent.mkdir(exist_ok=True)
        PARTIAL.write_text(json.dumps(result, indent=1) + "\n")

    if not only and "base" not in rows:
        evaluate("base", base, 0, None)
    if not only and "never-trained" not in rows:
        evaluate("never-trained", load_pipeline("shapes-nostar"), 0, None)
    for name, method in METHODS.items():
        if name == "esd" or only and name not in only or not only and name in rows:  # esd: the same as esd-x
            continue
        pipe, start = copy.deepcopy(base), time.time()
        recipe = method.prepare(replace(method.recipe, seed=train_seed))
        out = safetune.align(pipe, name, **({"seed": train_seed} if method.trains else {}))
        changes = {"lora_rank": out.rank(), "lora_modules": len(out.factors)} if isinstance(out, LoRA) else \
            {part: changed_share(getattr(base, part), getattr(out, part)) for part in ("unet", "text_encoder")}
        with merged(pipe, [(out, 1.0)] if isinstance(out, LoRA) else []):
            evaluate(name, pipe if isinstance(out, LoRA) else out, time.time() - start,
                     asdict(recipe) if method.trains else None, changes)
    return result


def changed_share(before, after) -> float:
    """The share of a model's weights that differ between two copies of it."""
    pairs = list(zip(before.parameters(), after.parameters()))
    return sum(int((a != b).sum()) for a, b in pairs) / sum(a.numel() for a, _ in pairs)


def interval(per_prompt: list[int], images: int, replicates: int = 2000, seed: int = 0) -> tuple[float, list]:
    """The rate and its 95% percentile interval, prompts resampled (images of a prompt are not independent)."""
    counts = np.asarray(per_prompt, dtype=float) / images
    rng = np.random.default_rng(seed)
    boot = counts[rng.integers(0, len(counts), (replicates, len(counts)))].mean(axis=1)
    return float(counts.mean()), [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]


def fidelity(row: dict) -> str:
    """Clean prompt fidelity (the share of the attributes each prompt asks that the detector reads
    back), with the evaluation's 95% interval over images where the run stored it."""
    if "prompt_fidelity_ci95" not in row:
        return f"{row['prompt_fidelity']:.3f}"
    lo, hi = row["prompt_fidelity_ci95"]
    return f"{row['prompt_fidelity']:.2f} [{lo:.2f}, {hi:.2f}]"


def cited(paper: str) -> str:
    """'Gandikota et al. 2024, Unified ... (arXiv 2308.14761)' -> 'Gandikota et al. 2024, arXiv 2308.14761'."""
    import re

    author = re.match(r"[^,(]*?et al\. \d{4}", paper)
    arxiv = re.search(r"arXiv \d{4}\.\d{4,5}", paper)
    if author is None and arxiv is not None:  # a baseline or a recipe of ours: where it comes from, not who
        return f"{'after' if paper.startswith('after') else 'as in'} {arxiv.group(0)}"
    return ", ".join(part.group(0) for part in (author, arxiv) if part) or paper


def describe_changes(method, recipe: dict | None, changes: dict) -> str:
    """What a method changed, as measured: its LoRA, or the share of each model's weights."""
    how = "closed form" if recipe is None else f"{recipe['steps']} steps at lr {recipe['lr']:g}"
    if method.output == "inference":
        return "no weight: it samples differently"
    if "lora_rank" in changes:
        return f"{how}: a rank-{changes['lora_rank']} LoRA on {changes['lora_modules']} modules" + \
            (f" ({recipe['targets']})" if recipe else "")
    names = {"unet": "UNet", "text_encoder": "text encoder"}
    parts = [f"{100 * share:.0f}% of the {names[part]}" for part, share in changes.items() if share > 0]
    return f"{how}: {' and '.join(parts)} weights"


def table(stored: dict) -> list[str]:
    from safetune.stages.methods import METHODS

    images = stored["sampling"]["images_per_prompt"]
    lines = ["| model | what it changes | harmful [95%] | harmful, implicit phrasings [95%] | clean prompts flagged "
             "[95%] | clean fidelity |", "|---|---|---:|---:|---:|---:|"]
    for name, row in stored["rows"].items():
        what = {"base": "the shipped model, unaligned", "never-trained": "pretrained without the concept"}.get(name) \
            or describe_changes(METHODS[name], row["recipe"], row["changes"])
        where = f" ({cited(METHODS[name].paper)})" if name in METHODS else ""
        cells = [f"{r:.2f} [{lo:.2f}, {hi:.2f}]" for r, (lo, hi) in
                 (interval(row[s]["flagged_per_prompt"], images) for s in SETS)]
        lines.append(f"| `{name}`{where} | {what} | {' | '.join(cells)} | {fidelity(row['clean'])} |")
    return lines


def page(stored: dict) -> str:
    s = stored["sampling"]
    return "\n".join([
        f"# Every method on the shipped model ({stored['date']})", "",
        f"`{stored['command']}`" + "".join(f", then `{c}`" for c in stored.get("added", [])) +
        ". Each method at its registered default recipe and settings, training seed "
        f"{stored['train_seed']} (one seed: the leaderboard in [benchmark.md](benchmark.md) has three, for the "
        "methods in it); the benchmark's test split: "
        f"{stored['prompts_per_set']} prompts of each set drawn with its prompt seed, {s['images_per_prompt']} images "
        f"per prompt at sampling seed {s['seed']}. Rates of flagged images (stars; on clean prompts: a star where none "
        f"was asked, the control): 95% percentile bootstrap interval over prompts. "
        "Clean fidelity: the share of the attributes each clean prompt asks (shape, colour, size, background, "
        "...) that the detector reads back.", "",
        *table(stored)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="train and evaluate every method, then store the results")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated methods: measure these and keep the other stored rows")
    args = ap.parse_args()
    if args.measure:
        only = [m for m in args.only.split(",") if m]
        partial = json.loads(PARTIAL.read_text()) if PARTIAL.is_file() else {}
        done = partial["rows"] if partial.get("train_seed") == args.train_seed and not only else {}
        result = measure(args.train_seed, only, done)
        if only:  # the stored rows of the other methods stay; the order follows the registry
            stored = json.loads(STORED.read_text())
            if stored["train_seed"] != args.train_seed:
                raise SystemExit(f"{STORED}: measured at training seed {stored['train_seed']}; give --train-seed "
                                 f"{stored['train_seed']} to add rows to it")
            rows = {**stored["rows"], **result["rows"]}
            from safetune.stages.methods import METHODS

            order = ["base", "never-trained", *METHODS]
            result = {**stored, "rows": {k: rows[k] for k in sorted(rows, key=order.index)},
                      "added": stored.get("added", []) + [f"{result['command']} --only {args.only} ({result['date']})"]}
        write_json(STORED, result, compact=True)
        PARTIAL.unlink(missing_ok=True)
    stored = json.loads(STORED.read_text())
    (ROOT / "docs" / "results" / "methods.md").write_text(page(stored) + "\n")
    replace_block(ROOT / "README.md", BEGIN, END, BEGIN + "\n" + "\n".join(table(stored)) + "\n" + END)


if __name__ == "__main__":
    main()
