"""Sample, detect, score: the evaluation every study and command shares."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from ..config import SamplingConfig
from ..io import save_image, write_json
from .grid import image_grid
from .metrics import image_scores, mean_interval, summarize_scores
from .sampling import image_seeds, sample

log = logging.getLogger(__name__)


def evaluate_prompts(pipe, rows: list[dict], detector, config: SamplingConfig, grid_path: Path | None = None,
                     scorers: dict | None = None) -> dict:
    """Sample `images_per_prompt` images per row with fixed seeds and score them: the detector's
    metrics, and a mean with its 95% interval per `scorers` entry (name -> f(images, prompts))."""
    jobs = image_seeds(rows, config)
    start = time.perf_counter()
    images = sample(pipe, jobs, config)
    seconds = time.perf_counter() - start
    prompts = [p for p, _, _ in jobs]
    per_image = image_scores(images, prompts, detector)
    metrics = summarize_scores(per_image, detector.threshold)
    for name, score in (scorers or {}).items():
        metrics[name], metrics[name + "_ci95"] = mean_interval(score(images, prompts))
    # per prompt: what a cluster bootstrap over prompts resamples (evaluation.verdicts)
    metrics["flagged_per_prompt"] = per_image["flagged"].reshape(len(rows), -1).sum(axis=1).tolist()
    if per_image["checks"] is not None:  # per prompt and attribute: images that did not show what was asked
        metrics["misread_per_prompt"] = misread_per_prompt(per_image["checks"], len(rows))
    if getattr(detector, "geometric_check", False):  # an independent second opinion (evaluation.geometry)
        from .geometry import cross_check

        metrics["cross_check"] = cross_check(per_image["flagged"], images)
    metrics.update(n_prompts=len(rows), seeds=[jobs[0][1], jobs[-1][1]], sampling_seconds=round(seconds, 2))
    if grid_path is not None:  # every prompt, one labelled row each; flagged images framed in red
        save_image(grid_path, image_grid(images, columns=config.images_per_prompt,
                                         labels=[row["prompt"] for row in rows], flagged=per_image["flagged"]))
        metrics["grid"] = grid_path.name
    return metrics


def misread_per_prompt(checks: list[dict[str, bool]], n_prompts: int) -> dict[str, list[int]]:
    """{attribute: per prompt, the images whose attribute was not read back}, for the attributes
    every prompt asks for (a cluster bootstrap needs a count for every prompt)."""
    per = len(checks) // n_prompts
    asked = set.intersection(*(set(c) for c in checks)) if checks else set()
    return {attr: [sum(not c[attr] for c in checks[i * per:(i + 1) * per]) for i in range(n_prompts)]
            for attr in sorted(asked)}


def run_evaluation(pipe, prompt_sets: dict[str, list[dict]], detector, config: SamplingConfig,
                   out_dir: Path, meta: dict) -> dict:
    """Evaluate several prompt sets into `out_dir`: results.json plus one grid per set."""
    out_dir.mkdir(exist_ok=True)
    results = {**meta, "detector": detector.name, "sampling": asdict(config), "sets": {}}
    for name, rows in prompt_sets.items():
        log.info("evaluating %s: %d prompts x %d images", name, len(rows), config.images_per_prompt)
        results["sets"][name] = evaluate_prompts(pipe, rows, detector, config, out_dir / f"grid_{name}.png")
        m = results["sets"][name]
        log.info("%s: harmful rate %.3f of %d images%s", name, m["harmful_rate"], m["n_images"],
                 f", prompt fidelity {m['prompt_fidelity']:.3f}" if "prompt_fidelity" in m else "")
        write_json(out_dir / "results.json", results)  # partial results survive an interruption
    return results
