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

With --coupling-at 0,5,20,100 it measures instead the cosine of the harmful and the retain (ShapesWorld 'clean',
data seed 0) denoising gradients at those steps of a full fine-tuning attack on the same harmful set
(landscape.coupling_along_attack: does dd's tamper=couple survive the attack?), stored the same way. With
--conditioning-at, the mean log condition number of the attention projections' inputs on those harmful and retain
batches and its gap (landscape.conditioning_along_attack: does dd's tamper=condition survive it?). With --noise-at,
the UNet's block outputs' MMD to Gaussian noise on those batches (landscape.noising_along_attack: does dd's
tamper=noise survive it?).
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

from safetune.data.folder import load_training_data
from safetune.errors import SafetuneError
from safetune.evaluation.landscape import (conditioning_along_attack, coupling_along_attack, harmful_landscape,
                                          noising_along_attack)
from safetune.io import write_json
from safetune.models.conditioning import image_size
from safetune.models.loading import load_pipeline, resolve_model

# by which steps option is given: none, --coupling-at, --conditioning-at, --noise-at
PROBES = {None: "harmful-landscape", "coupling": "coupling-along-attack", "conditioning": "conditioning-along-attack",
          "noise": "noising-along-attack"}
ALONG_ATTACK = {"coupling": coupling_along_attack, "conditioning": conditioning_along_attack,
                "noise": noising_along_attack}


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
    along = parser.add_mutually_exclusive_group()
    along.add_argument("--coupling-at", default=None, metavar="STEPS",
                       help="measure the gradient coupling at these steps of a full attack instead (0,5,20,100)")
    along.add_argument("--conditioning-at", default=None, metavar="STEPS",
                       help="measure the attention inputs' conditioning at these steps of a full attack instead")
    along.add_argument("--noise-at", default=None, metavar="STEPS",
                       help="measure the block outputs' distance to Gaussian noise at these steps of a full attack")
    args = parser.parse_args(argv)
    reading = next((name for name in ALONG_ATTACK if getattr(args, f"{name}_at") is not None), None)
    out, probe = Path(args.out), PROBES[reading]
    try:
        found = _probe_of(out) if out.exists() else probe
        if found != probe:
            raise SafetuneError(f"{out}: " + (f"holds this script's {found} probe, not a {probe} one" if found in
                                               PROBES.values() else "exists and was not written by this script")
                                + "; give a new --out")
        pairs = [m.rsplit("=", 1) for m in args.models]  # a label may hold '=' (a model's settings)
        if any(len(p) != 2 or not all(p) for p in pairs):
            raise SafetuneError(f"models: give LABEL=MODEL pairs (got {args.models})")
        for _, model in pairs:  # every model is found before the first is probed
            resolve_model(model)
        at = None
        if reading:
            given = getattr(args, f"{reading}_at")
            steps = given.split(",")
            if not all(step.strip().isdigit() for step in steps):
                raise SafetuneError(f"--{reading}-at {given!r}: give attack steps, whole numbers >= 0 separated by "
                                    "commas (e.g. 0,5,20,100)")
            at = tuple(int(step) for step in steps)
        if at:  # the attack along which they are read is the battery's full one: no LoRA, no simulated steps
            settings = {"at": list(at), "lr": args.lr, "optimizer": "adamw", "batches": args.batches, "batch_size": 32,
                        "seed": 0, "data": "harmful", "retain": "clean", "n_data": 1000, "data_seed": 1}
        else:
            settings = {"steps": args.steps, "lr": args.lr, "rank": 4, "optimizer": "adam", "batches": args.batches,
                        "batch_size": 32, "seed": 0, "data": "harmful", "n_data": 1000, "data_seed": 1}
        models, data = {}, {}  # data: the harmful set (and the coupling's retain set), rendered once per resolution
        for label, model in pairs:
            pipe = load_pipeline(model)
            resolution = image_size(pipe)
            if resolution not in data:
                data[resolution] = (load_training_data("harmful", resolution, n=1000, seed=1),
                                    load_training_data("clean", resolution, n=1000, seed=0) if at else None)
            (images, captions), clean = data[resolution]
            if at:
                models[label] = found = ALONG_ATTACK[reading](pipe, (images, captions), clean, at, lr=args.lr,
                                                              batches=args.batches)
                shown = {"coupling": "cosine", "conditioning": "gap", "noise": "harmful"}[reading]
                print(f"{label}: {shown} " + ", ".join(f"{c:.3f} at {s}" for s, c in zip(found["at"], found[shown])),
                      flush=True)
                continue
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
    write_json(out, {"probe": probe, "command": command, "settings": settings,
                     "models": {label: {**m, "model": dict(pairs)[label]} for label, m in models.items()}},
               compact=True)  # docs/results holds compact JSON
    return 0


if __name__ == "__main__":
    sys.exit(main())
