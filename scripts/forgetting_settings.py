"""The settings search behind docs/results/forgetting-settings.md: one forgetting setting per call.

Safe-trains the shipped model with a ForgettingConfig (or starts from the ESD model), attacks it with
malicious fine-tuning on harmful data and evaluates at attack steps 0, 20, 100, 200 (40 harmful and
40 clean prompts x 2 images). Appends one JSON line to OUT/results.jsonl; --table prints the rows.

  python scripts/forgetting_settings.py lt_lr1e-3 --forgetting '{"variant": "lt"}' --train '{"lr": 1e-3}'
  python scripts/forgetting_settings.py esd_lora --esd --attack '{"mode": "lora", "lr": 1e-4}'
  python scripts/forgetting_settings.py --table
"""
import argparse
import json
from dataclasses import replace
from pathlib import Path

ESD_LORA = "runs/forgetting-reduced/loras/safety_esd-x.safetensors"  # `safetune study forgetting --reduced`


def run(name: str, forgetting: dict, train: dict, attack: dict, from_esd: bool, out: Path) -> dict:
    from safetune.align.forgetting import ForgettingConfig
    from safetune.evaluate.sampling import SamplingConfig
    from safetune.lora.weights import LoRA
    from safetune.models.loading import load_pipeline
    from safetune.studies.forgetting import (ForgettingStudyConfig, QualityEvaluator, protect_and_attack,
                                             study_data)

    cfg = ForgettingStudyConfig(prompts_per_set=40, sampling=SamplingConfig(images_per_prompt=2),
                                attack_steps=[0, 20, 100, 200])
    cfg.safe_train = replace(cfg.safe_train, **train)
    cfg.attack = replace(cfg.attack, **attack)
    base = load_pipeline("shapes")
    clean, harmful = study_data(base, cfg)
    curve = protect_and_attack(base, clean, harmful, QualityEvaluator(cfg, out / name), name, cfg,
                               ForgettingConfig(**forgetting) if forgetting else None,
                               LoRA.load(ESD_LORA) if from_esd else None)
    summary = {step: {"harm": r["harmful"]["harmful_rate"], "fid_clean": r["clean"]["prompt_fidelity"],
                      "fid": r["clean"]["fid"]} for step, r in curve.items()}
    return {"name": name, "forgetting": forgetting, "train": train, "attack": attack, "from_esd": from_esd,
            "curve": summary}


def table(rows: list[dict]) -> str:
    lines = ["| setting | start | safe training | attack | 0 | 20 | 100 | 200 | clean fidelity at 0 |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["curve"]
        rate = [f"{c[s]['harm']:.2f}" if s in c else "-" for s in ("0", "20", "100", "200")]
        attack = f"{r['attack'].get('mode', 'full')} lr {r['attack'].get('lr', 1e-4):g}"
        safe = ", ".join(f"{k} {v}" for k, v in {**r["forgetting"], **r["train"]}.items()) or "-"
        lines.append(f"| {r['name']} | {'ESD' if r['from_esd'] else 'base'} | {safe} | {attack} | {' | '.join(rate)} | {c['0']['fid_clean']:.2f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?")
    p.add_argument("--forgetting", default="{}", help="ForgettingConfig fields as JSON; {} = no safe training")
    p.add_argument("--train", default="{}", help="safe-training TrainConfig overrides as JSON")
    p.add_argument("--attack", default="{}", help="attack TrainConfig overrides as JSON (mode, lr)")
    p.add_argument("--esd", action="store_true", help="start from the ESD model")
    p.add_argument("--out", default="runs/forgetting-settings")
    p.add_argument("--table", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    if a.table:
        print(table([json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]))
        return
    out.mkdir(parents=True, exist_ok=True)
    row = run(a.name, json.loads(a.forgetting), json.loads(a.train), json.loads(a.attack), a.esd, out)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
