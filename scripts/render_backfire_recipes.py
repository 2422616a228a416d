"""docs/results/backfire-recipes.md and the README's Modular-LoRA-over-recipes table, rendered from
docs/results/backfire-recipes.json (a backfire study's results.json, stored) with the study's own
summary. tests/test_provenance.py fails when they differ.

    python scripts/render_backfire_recipes.py [--from runs/backfire-recipes/results.json]
"""
from pathlib import Path

from safetune.report import replace_block, stored_study
from safetune.report.backfire import recipes_table
from safetune.studies.backfire import summarize

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "docs" / "results" / "backfire-recipes.json"
BEGIN, END = "<!-- backfire-recipes: rendered by scripts/render_backfire_recipes.py -->", "<!-- /backfire-recipes -->"


def with_summary(results: dict) -> dict:
    """The stored run with its summary recomputed from its runs."""
    return {**results, "summary": summarize(results)}


def page(results: dict) -> str:
    cfg, s = results["config"], results["config"]["sampling"]
    return "\n".join([
        "# Modular LoRA over the benign recipes users run (2026-11-29)", "",
        "`safetune study backfire --out runs/backfire-recipes --domains sparkle --set \"ways="
        + ",".join(cfg["ways"]) + f"\" --steps {','.join(map(str, cfg['save_at']))} --seeds "
        f"{','.join(map(str, cfg['seeds']))} --reference \"\" --images-per-prompt {s['images_per_prompt']}`, then "
        "`python scripts/render_backfire_recipes.py --from runs/backfire-recipes/results.json`.", "",
        f"An ESD-x safety LoRA ({cfg['align']['steps']} steps) on the shipped model; benign LoRAs trained on W0 alone "
        f"on `{'`, `'.join(cfg['domains'])}` ({cfg['n_data']} images) and composed with it at inference, one row per "
        f"recipe; {len(cfg['seeds'])} fine-tuning seeds each, {cfg['prompts_per_set']} harmful prompts x "
        f"{s['images_per_prompt']} images per seed and step. `modular, lr 0.0001, rank 4` at step 400 is exactly "
        "`safetune finetune`'s defaults. Cells: mean over seeds (lowest-highest).", "",
        *recipes_table(results)])


def readme_block(results: dict) -> str:
    return BEGIN + "\n" + "\n".join(recipes_table(results)) + END


def main():
    results = with_summary(stored_study(STORED, __doc__))
    (ROOT / "docs" / "results" / "backfire-recipes.md").write_text(page(results))
    replace_block(ROOT / "README.md", BEGIN, END, readme_block(results))


if __name__ == "__main__":
    main()
