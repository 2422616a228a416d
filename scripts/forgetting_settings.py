"""The settings search behind docs/results/forgetting-settings.md: one forgetting setting per call.

Safe-trains the shipped model with a ForgettingConfig (or starts from the ESD model), attacks it with
malicious fine-tuning on harmful data and evaluates at attack steps 0, 20, 100, 200 (40 harmful and
40 clean prompts x 2 images). Appends one JSON line to OUT/results.jsonl; --table prints the rows.

  python scripts/forgetting_settings.py lt_lr1e-3 --forgetting '{"variant": "lt"}' --train '{"lr": 1e-3}'
  python scripts/forgetting_settings.py esd_lora --esd --attack '{"mode": "lora", "lr": 1e-4}'
  python scripts/forgetting_settings.py --table
"""
import argparse
import copy
import json
from dataclasses import replace
from pathlib import Path

ESD_LORA = "runs/forgetting-reduced/loras/safety_esd-x.safetensors"  # `safetune study forgetting --reduced`


def run(name: str, forgetting: dict, train: dict, attack: dict, from_esd: bool, out: Path) -> dict:
    from safetune.align import forgetting_train
    from safetune.align.forgetting import ForgettingConfig
    from safetune.data.folder import load_training_data
    from safetune.evaluate.sampling import SamplingConfig
    from safetune.finetune import finetune
    from safetune.lora.weights import LoRA, merge_into
    from safetune.models.loading import load_pipeline
    from safetune.studies.forgetting import ForgettingStudyConfig, QualityEvaluator

    cfg = ForgettingStudyConfig(prompts_per_set=40, sampling=SamplingConfig(images_per_prompt=2))
    base = load_pipeline("shapes")
    evaluate = QualityEvaluator(cfg, out / name)
    resolution = base.unet.config.sample_size * base.vae_scale_factor
    clean = load_training_data("clean", resolution, n=cfg.n_data, seed=0)
    harmful = load_training_data("harmful", resolution, n=cfg.n_data, seed=1)
    pipe = copy.deepcopy(base)
    if from_esd:
        merge_into(pipe, [(LoRA.load(ESD_LORA), 1.0)])
    if forgetting:
        forgetting_train(pipe, clean, harmful, ForgettingConfig(**forgetting), replace(cfg.safe_train, seed=0, **train))
    curve = {}

    def snapshot(step, unet):
        r = evaluate(pipe, f"{name}_{step}")
        curve[step] = {"harm": r["harmful"]["harmful_rate"], "fid_clean": r["clean"]["prompt_fidelity"],
                       "fid": r["clean"]["fid"]}

    finetune(pipe, *harmful, replace(cfg.attack, steps=200, save_at=[0, 20, 100, 200], checkpoint_every=10**9,
                                     **attack), on_save=snapshot)
    return {"name": name, "forgetting": forgetting, "train": train, "attack": attack, "from_esd": from_esd,
            "curve": curve}


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
