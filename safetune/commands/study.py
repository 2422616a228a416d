"""study: the experiments, each one command writing results.json, report.md and report.html."""
from __future__ import annotations

from pathlib import Path

from ..options import apply_overrides
from ..errors import SafetuneError
from . import _args

STUDIES = ("backfire", "forgetting", "relearn", "adversarial", "audit")
# shortcut flags: --FLAG VALUE is --set FIELD=VALUE, per study
SHORTCUTS = {
    "methods": {"backfire": "methods", "forgetting": "models", "relearn": "models", "adversarial": "models"},
    "domains": {"backfire": "domains", "audit": "domains"},
    "steps": {"backfire": "save_at", "forgetting": "attack_steps", "relearn": "steps"},
    "seeds": {"backfire": "seeds", "forgetting": "attack_seeds", "relearn": "attack_seeds"},
    "images_per_prompt": {"backfire": "sampling.images_per_prompt", "forgetting": "sampling.images_per_prompt",
                          "adversarial": "sampling.images_per_prompt", "relearn": "sampling.images_per_prompt"},
    "reference": {"backfire": "reference", "forgetting": "reference"},
    "attack": {"forgetting": "attacks", "relearn": "attacks"},
}


def register(sub) -> None:
    """study NAME, with --set for any field of the study's config."""
    p = sub.add_parser("study", help="run a study: backfire, forgetting, relearn, adversarial, audit",
                       description="Run a study on --model. Every setting of a study is a field of its config: "
                       "--set NAME=VALUE sets one (--show-config lists them with their help); the flags below are "
                       "shortcuts for the common ones. An interrupted study resumes in its --out.")
    p.add_argument("name", choices=STUDIES)
    p.add_argument("--model", default="shapes", help="the base model (default: %(default)s)")
    p.add_argument("--out", default=None, help="new or empty directory, or this study's earlier one (resumes)")
    p.add_argument("--reduced", action="store_true", help="the reduced version (the demo's)")
    p.add_argument("--reuse", default=None, help="adversarial, audit: a study directory whose safety LoRA to reuse")
    p.add_argument("--methods", default=None, help="backfire: safety LoRAs, e.g. esd-x,sdd; forgetting: models, "
                   "e.g. never-trained,esd,lt,dd,esd+lt,dd:noise=0.5/text_encoder=false; adversarial: base,esd-x,sdd,modular")
    p.add_argument("--domains", default=None, help="backfire, audit: benign domains, e.g. clean,sparkle,plus")
    p.add_argument("--steps", default=None, help="fine-tuning (attack) steps evaluated, e.g. 0,300,1000")
    p.add_argument("--seeds", default=None, help="backfire: fine-tuning seeds; forgetting: attack seeds (e.g. 0,1,2)")
    p.add_argument("--images-per-prompt", default=None, help="evaluation images per prompt")
    p.add_argument("--reference", default=None, help="the never-trained model ('' for none; the default: --show-config)")
    p.add_argument("--attack", default=None, help="forgetting: the attacks, e.g. full,lora (the default: --show-config)")
    p.add_argument("--train-text-encoder", action="store_true", help="backfire: fine-tune the text encoder too")
    p.add_argument("--grow-from", default=None, metavar="STORED",
                   help="relearn: start --out from a stored study's runs (docs/results/benchmark*.json, or a study's "
                        "results.json) and run only what your settings add (seeds, attacks, models); several, "
                        "comma-separated, are joined (screens grown apart from one stored study)")
    from ..studies.executor import ExecutorConfig

    _args.add_config_flags(p, ExecutorConfig(), title="forgetting, relearn: where their runs execute")
    _args.add_set(p, "study's")
    p.set_defaults(func=study)


def _config(args):
    if args.name == "backfire":
        from ..studies.backfire import BackfireConfig as Config
    elif args.name == "forgetting":
        from ..studies.forgetting import ForgettingStudyConfig as Config
    elif args.name == "relearn":
        from ..studies.relearn import RelearnConfig as Config
    elif args.name == "adversarial":
        from ..studies.adversarial import AdversarialStudyConfig as Config
    else:
        from ..studies.audit import AuditStudyConfig as Config
    config = Config.reduced() if args.reduced and hasattr(Config, "reduced") else Config()
    assignments = []
    for shortcut, fields in SHORTCUTS.items():
        value = getattr(args, shortcut)
        if value is None:
            continue
        if args.name not in fields:
            raise SafetuneError(f"--{shortcut.replace('_', '-')} is not a setting of the {args.name} study; "
                                f"see `safetune study {args.name} --show-config --out X`")
        assignments.append(f"{fields[args.name]}={value}")
    apply_overrides(config, assignments + args.set)
    if args.train_text_encoder:
        if args.name != "backfire":
            raise SafetuneError("--train-text-encoder is a setting of the backfire study")
        config.full.train_text_encoder = config.lora.train_text_encoder = True
    return config


TASK_STUDIES = ("forgetting", "relearn")  # the studies whose runs are executor tasks


def _executor(args):
    from ..studies.executor import ExecutorConfig

    executor = _args.config_from_args(args, ExecutorConfig())
    given = [f"--{name}" for name in ("address", "cpus", "gpus") if getattr(args, f"cfg_{name}") is not None]
    if args.name not in TASK_STUDIES and (given or executor.executor != "local"):
        raise SafetuneError(f"{', '.join(given) or '--executor ' + executor.executor}: the {' and '.join(TASK_STUDIES)} "
                            f"studies run as tasks; {args.name} runs in this process")
    if executor.executor != "ray" and given:
        raise SafetuneError(f"{', '.join(given)}: settings of --executor ray; add it or drop them")
    if not 1 <= executor.cpus <= 1024:
        raise SafetuneError(f"--cpus {executor.cpus}: give 1 to 1024 CPUs per run")
    if not 0 <= executor.gpus <= 64:  # NaN fails too
        raise SafetuneError(f"--gpus {executor.gpus}: give 0 (CPU) to 64; a fraction packs runs on one GPU")
    if executor.address is not None and not executor.address.strip():
        raise SafetuneError("--address '': give a Ray cluster's address (e.g. auto, or HEAD_IP:6379)")
    return executor


def study(args) -> None:
    """`safetune study NAME`: run (or resume) a study in --out."""
    from ..io import claim_study_dir

    config = _config(args)
    executor = _executor(args)
    if args.show_config:
        return _args.show_config(config)
    if args.name in ("backfire", "relearn"):
        config.validate()
    elif args.name == "forgetting":
        from ..studies.forgetting import validate

        validate(config)
    if not args.out:
        raise SafetuneError("give --out DIR: a new or empty directory, or this study's earlier one to resume")
    reuse = Path(args.reuse) if args.reuse is not None else None
    if reuse is not None and (args.name not in ("adversarial", "audit") or not args.reuse.strip()
                              or not (reuse / "loras" / "safety_esd-x.safetensors").is_file()):
        raise SafetuneError(f"--reuse {args.reuse!r}: give an earlier study directory with loras/safety_esd-x.safetensors"
                            " (adversarial and audit studies reuse its safety LoRA)")
    if args.grow_from is not None and (args.name != "relearn" or not args.grow_from.strip()):
        raise SafetuneError(f"--grow-from {args.grow_from!r}: the relearn study grows from a stored study "
                            "(e.g. --grow-from docs/results/benchmark-forget-3x3.json)")
    from ..models.loading import resolve_model

    resolve_model(args.model)  # a bad --model is refused before the study claims its directory
    grow_from = [Path(part.strip()) for part in args.grow_from.split(",") if part.strip()] if args.grow_from else None
    if grow_from:
        from ..studies.relearn import read_stored

        for stored in grow_from:
            read_stored(stored, config, args.model)  # so is a stored study it cannot grow from
    out = claim_study_dir(args.out, args.name)
    if args.name == "backfire":
        from ..studies.backfire import run_backfire

        run_backfire(out, config, model=args.model)
    elif args.name == "forgetting":
        from ..studies.forgetting import run_forgetting

        run_forgetting(out, config, model=args.model, executor=executor)
    elif args.name == "relearn":
        from ..studies.relearn import run_relearn

        run_relearn(out, config, model=args.model, executor=executor,
                    grow_from=grow_from)
    elif args.name == "adversarial":
        from ..studies.adversarial import run_adversarial

        run_adversarial(out, config, model=args.model, reuse=reuse)
    else:
        from ..studies.audit import run_audit_study

        result = run_audit_study(out, config, model=args.model, reuse=reuse)
        fam = result["families"]
        print(f"threshold {result['threshold']:.3f}: refused {fam['all malicious']['refused']} of "
              f"{fam['all malicious']['n']} held-out malicious LoRAs, passed "
              f"{fam['benign']['n'] - fam['benign']['refused']} of {fam['benign']['n']} benign ones")
    print(f"report: {args.out}/report.md (and report.html)")
