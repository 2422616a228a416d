"""The harmful landscape (safetune/evaluation/landscape.py) of each model given, on the study's harmful
training set (ShapesWorld 'harmful', 1,000 images, data seed 1, as `study relearn` trains its attacks
on), under the images' own captions and under the empty prompt (what the concept's words add), stored
as JSON with the command that made it; the models' numbers are paired (the same query batches, noise
and timesteps). safetune.report.landscape renders the stored file (scripts/render_benchmark_docs.py
puts it into docs/results/defence.md).

    python scripts/probe_landscape.py --out docs/results/landscape-dev.json shapes=shapes \\
        never-trained=shapes-nostar 'dd:forget_unseen_words=true|train0=runs/S/models/dd_..._train0' ...

A model is a diffusers directory or a name `load_pipeline` resolves; its label is what the docs quote
(it may hold '=': the last one separates it from the model).
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

from safetune.data.folder import load_training_data
from safetune.errors import SafetuneError
from safetune.evaluation.landscape import harmful_landscape
from safetune.io import write_json
from safetune.models.conditioning import image_size
from safetune.models.loading import load_pipeline, resolve_model

PROBE = "harmful-landscape"


def _probe_of(path: Path) -> str | None:
    """What wrote `path`, as this script marks its files (None: not this script, or not JSON)."""
    try:
        written = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return written.get("probe") if isinstance(written, dict) else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL", help="a label and a model directory or name")
    parser.add_argument("--out", required=True, help="the JSON to write (a new file, or one this script wrote)")
    parser.add_argument("--steps", type=int, default=4, help="simulated LoRA steps (default: 4, as dd's tamper term)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the simulated attack's lr (default: 1e-3)")
    parser.add_argument("--batches", type=int, default=8, help="query batches of 32 images (default: 8)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and _probe_of(out) != PROBE:
            raise SafetuneError(f"{out}: exists and was not written by this script; give a new --out")
        pairs = [m.rsplit("=", 1) for m in args.models]  # a label may hold '=' (a model's settings)
        if any(len(p) != 2 or not all(p) for p in pairs):
            raise SafetuneError(f"models: give LABEL=MODEL pairs (got {args.models})")
        for _, model in pairs:  # every model is found before the first is probed
            resolve_model(model)
        settings = {"steps": args.steps, "lr": args.lr, "rank": 4, "optimizer": "adam", "batches": args.batches,
                    "batch_size": 32, "seed": 0, "data": "harmful", "n_data": 1000, "data_seed": 1}
        models, data = {}, {}  # data: the harmful set, rendered once per resolution
        for label, model in pairs:
            pipe = load_pipeline(model)
            resolution = image_size(pipe)
            if resolution not in data:
                data[resolution] = load_training_data("harmful", resolution, n=1000, seed=1)
            images, captions = data[resolution]
            # under the concept's own captions, and under the empty prompt: what its words add
            models[label] = {prompts: harmful_landscape(pipe, images, texts, steps=args.steps, lr=args.lr,
                                                        batches=args.batches)
                             for prompts, texts in (("captions", captions), ("empty", [""] * len(captions)))}
            print(f"{label}: " + "; ".join(f"{prompts}: before {m['before']:.4f} after {m['after']:.4f} drop "
                                           f"{m['drop']:.4f}" for prompts, m in models[label].items()), flush=True)
    except (SafetuneError, ValueError) as exc:
        print(f"probe_landscape: error: {exc}", file=sys.stderr)
        return 2
    # quoted, so that the stored command reruns as it stands (a label holds '|')
    command = shlex.join(["python", "scripts/probe_landscape.py", *(sys.argv[1:] if argv is None else argv)])
    write_json(out, {"probe": PROBE, "command": command, "settings": settings,
                     "models": {label: {**m, "model": dict(pairs)[label]} for label, m in models.items()}},
               compact=True)  # docs/results holds compact JSON
    return 0


if __name__ == "__main__":
    sys.exit(main())
