"""Settings have one home: the config dataclasses (defaults, help, choices), read the same way by the
CLI (generated flags, --set) and the Python API."""
import json
import pytest

from safetune.cli import main
from safetune.config import FINETUNE, TrainConfig
from safetune.options import apply_overrides, describe
from safetune.errors import SafetuneError


def test_alpha_follows_the_rank_unless_set():
    """`TrainConfig(lora_rank=8)` got alpha 4 (a LoRA scaled by 0.5) when alpha = rank lived in the CLI."""
    assert TrainConfig(lora_rank=8).alpha == 8.0
    config = apply_overrides(TrainConfig(), ["lora_rank=16"])
    assert config.alpha == 16.0
    assert TrainConfig(lora_rank=8, lora_alpha=4).alpha == 4.0


def test_set_casts_checks_choices_and_suggests_names():
    config = apply_overrides(TrainConfig(), ["lr=3e-4", "save_at=0,20,100", "train_text_encoder=true"])
    assert config.lr == 3e-4 and config.save_at == [0, 20, 100] and config.train_text_encoder is True
    with pytest.raises(SafetuneError, match="choose one of lora, full, partial"):
        apply_overrides(TrainConfig(), ["mode=half"])
    with pytest.raises(SafetuneError, match="did you mean lr"):
        apply_overrides(TrainConfig(), ["lrr=1e-4"])
    with pytest.raises(SafetuneError, match="not a valid float"):
        apply_overrides(TrainConfig(), ["lr=fast"])
    assert any(line.startswith("lr = 0.0001") and "learning rate" in line for line in describe(TrainConfig()))


def test_generated_flags_default_to_the_recipe(capsys):
    """finetune's flags are generated from TrainConfig with FINETUNE's defaults: --help shows them."""
    assert main(["finetune", "--help"]) == 0
    text = capsys.readouterr().out
    assert f"(default: {FINETUNE.lr})" in text and "--lora-rank" in text and "--train-text-encoder" in text


def test_audit_device_is_honoured(tmp_path, capsys):
    """`audit --device` was ignored (it always ran on the default device)."""
    import torch

    from safetune.lora.weights import LoRA

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    LoRA({name: (torch.zeros(2, 64), torch.zeros(32, 2))}).save(tmp_path / "a.safetensors")
    LoRA({name: (torch.zeros(2, 64), torch.ones(32, 2))}).save(tmp_path / "b.safetensors")
    assert main(["audit", "--safety-lora", str(tmp_path / "a.safetensors"), "--lora", str(tmp_path / "b.safetensors"),
                 "--device", "cuda"]) == 2
    assert "no CUDA" in capsys.readouterr().err


def test_a_bad_model_option_in_a_study_is_one_line(tmp_path, capsys):
    """parse_model raised ValueError (a traceback) for an unknown option."""
    assert main(["study", "forgetting", "--methods", "lt:magic", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lt:magic" in err and "NAME=VALUE" in err


def test_a_study_model_sets_its_training_recipe_as_align_does():
    """`dd:noise=3/train.steps=6400`: the model grammar's train.FIELD is `align --set train.FIELD`; the
    other models keep the study's recipe, and a wrong field names the model."""
    from safetune.studies.forgetting import ForgettingStudyConfig, parse_model

    config = ForgettingStudyConfig()
    (stage,) = parse_model("dd:noise=3/train.steps=6400/train.lr=5e-4", config)
    assert (stage.settings.noise, stage.recipe.steps, stage.recipe.lr) == (3.0, 6400, 5e-4)
    assert stage.recipe.mode == "full" and stage.recipe.seed == config.seed
    (plain,) = parse_model("dd", config)
    assert (plain.recipe.steps, plain.recipe.lr) == (config.distill_train.steps, config.distill_train.lr) == (3200, 1e-3)
    with pytest.raises(SafetuneError, match=r"model 'dd:train.stepz=3': dd:train.stepz: no such setting; did you mean steps"):
        parse_model("dd:train.stepz=3", config)
    with pytest.raises(SafetuneError, match=r"model 'lt:train.lr=0': lt:train.lr=0: must be positive"):
        parse_model("lt:train.lr=0", config)
    with pytest.raises(SafetuneError, match=r"^distill: a nested setting; set one of its fields, e.g. distill.lr"):
        apply_overrides(config, ["distill=3"], given="")  # the Python API's form: no --set


def test_finetune_and_align_show_and_set_every_training_setting(tmp_path, capsys):
    """`finetune` had neither --show-config nor --set; `align --show-config` listed 3 method settings."""
    import dataclasses

    from safetune.config import TrainConfig

    assert main(["finetune", "--show-config", "--set", "lr=3e-4", "--set", "lr_schedule=cosine"]) == 0
    shown = capsys.readouterr().out
    assert all(f"{f.name} = " in shown for f in dataclasses.fields(TrainConfig))
    assert "lr = 0.0003" in shown and "lr_schedule = 'cosine'" in shown
    assert main(["align", "--method", "dd", "--show-config", "--set", "noise=0.5", "--set", "train.steps=7"]) == 0
    shown = capsys.readouterr().out
    assert "noise = 0.5" in shown and "train.steps = 7" in shown
    assert all(f"train.{f.name} = " in shown for f in dataclasses.fields(TrainConfig))
    out = tmp_path / "s.safetensors"
    assert main(["align", "--method", "esd-x", "--set", "train.steps=1", "--batch-size", "2", "--set",
                 "concept_samples=2", "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["train"]["steps"] == 1
    assert main(["finetune", "--data", "plus"]) == 2 and "needs --out" in capsys.readouterr().err


def test_pretraining_and_detector_training_show_and_set_their_settings(capsys):
    import dataclasses

    from safetune.config import DetectorTrainConfig, PretrainConfig

    for command, config in (("pretrain-shapes", PretrainConfig), ("train-detector", DetectorTrainConfig)):
        assert main([command, "--show-config", "--set", "seed=3"]) == 0
        shown = capsys.readouterr().out
        assert "seed = 3" in shown and all(f"{f.name} = " in shown for f in dataclasses.fields(config))
        assert main([command]) == 2 and "give --out" in capsys.readouterr().err


def test_a_study_run_redone_by_hand_with_its_recipe_gives_the_same_weights(tmp_path):
    """`finetune --recipe backfire-lora` is the backfire study's LoRA recipe: a study's modular run (a
    LoRA trained on W0) redone by hand with the same data, steps and seed gives the same LoRA bit for bit."""
    import torch

    from safetune.lora.weights import LoRA

    small = ["--set", "lora.batch_size=4", "--set", "n_data=8", "--set", "align.steps=2", "--set", "align.batch_size=2",
             "--set", "prompts_per_set=1", "--set", "sampling.images_per_prompt=1", "--set", "sampling.steps=2",
             "--set", "ways=modular", "--set", "concepts=a star"]
    assert main(["study", "backfire", "--out", str(tmp_path / "s"), "--methods", "esd-x", "--domains", "plus",
                 "--seeds", "1", "--reference", "", "--steps", "0,3", *small]) == 0
    assert main(["finetune", "--recipe", "backfire-lora", "--data", "plus", "--n", "8", "--set", "steps=3",
                 "--set", "save_at=0,3", "--set", "batch_size=4", "--set", "seed=1",
                 "--out", str(tmp_path / "hand.safetensors")]) == 0
    study = LoRA.load(tmp_path / "s" / "loras" / "finetune_esd-x_plus_seed1.safetensors")
    hand = LoRA.load(tmp_path / "hand.safetensors")
    assert set(study.factors) == set(hand.factors)
    for name, (a, b) in study.factors.items():
        assert torch.equal(a, hand.factors[name][0]) and torch.equal(b, hand.factors[name][1])


def _all_settings():
    """Every config class, its modules imported (the studies and attacks declare their own)."""
    import importlib

    import dataclasses
    import inspect

    from safetune.options import SETTINGS

    for module in ("config", "studies.forgetting", "studies.relearn", "studies.audit", "studies.backfire",
                   "studies.adversarial", "studies.executor", "attacks.prompt_search"):
        for cls in vars(importlib.import_module(f"safetune.{module}")).values():
            declared = inspect.isclass(cls) and dataclasses.is_dataclass(cls) and \
                any("help" in f.metadata for f in dataclasses.fields(cls))
            assert not declared or cls in SETTINGS, f"{cls.__name__}: declare it with @settings, not @dataclass"
    return SETTINGS


def _refused_values(field):
    """Values just outside what the field declares (or the undeclared defaults)."""
    m = field.metadata
    if m.get("choices"):
        return ["surely-not-a-choice"]
    out = []
    if m.get("above") is not None:
        out.append(m["above"])
    if m.get("min") is not None:
        out.append(m["min"] - 1)
    if m.get("below") is not None:
        out.append(m["below"])
    out.append((m["max"] if m.get("max") is not None else 1e6) * 10 + 1)
    return out


def test_the_api_refuses_exactly_what_the_cli_refuses():
    """Issue 22: bounds and choices live on the field. For every declared setting of every config, a
    value just outside it is refused by the Python API (building the config, or `replace`) and by
    `--set` with the same reason; the default is accepted by both."""
    import dataclasses
    import typing

    from safetune.options import InvalidSetting

    classes = _all_settings()
    assert len(classes) >= 17, [c.__name__ for c in classes]
    checked = 0
    for cls in classes:
        hints = typing.get_type_hints(cls)
        default = cls()
        for field in dataclasses.fields(cls):
            kind = hints[field.name]
            inner = typing.get_args(kind)[0] if typing.get_origin(kind) is list else kind
            inner = next((a for a in typing.get_args(inner) if a is not type(None)), inner)
            if inner not in (int, float, str) or dataclasses.is_dataclass(inner):
                continue
            if inner is str and not field.metadata.get("choices"):
                continue
            for bad in _refused_values(field):
                bad = int(bad) if inner is int else bad
                value = [bad] if typing.get_origin(kind) is list else bad
                with pytest.raises(InvalidSetting) as api:
                    dataclasses.replace(default, **{field.name: value})
                assert api.value.name == f"{cls.__name__}.{field.name}"
                with pytest.raises(SafetuneError) as cli:
                    apply_overrides(cls(), [f"{field.name}={bad}"])
                assert str(cli.value) == f"--set {field.name}={bad}: {api.value.problem}"
                checked += 1
    assert checked >= 120, checked


def test_declared_bounds_say_why():
    from safetune.options import InvalidSetting

    for kwargs, message in [({"lr": 0.0}, "TrainConfig.lr 0.0: must be positive"),
                            ({"steps": 0}, "TrainConfig.steps 0: must be at least 1"),
                            ({"lora_rank": 20000}, "TrainConfig.lora_rank 20000: more than 1024; is there an extra zero?"),
                            ({"ema_decay": 1.0}, "TrainConfig.ema_decay 1.0: must be below 1"),
                            ({"max_grad_norm": float("nan")}, "TrainConfig.max_grad_norm nan: must be a finite number"),
                            ({"save_at": [0, -5]}, "TrainConfig.save_at 0,-5: must not be negative"),
                            ({"mode": "half"}, "TrainConfig.mode half: choose one of lora, full, partial, token")]:
        with pytest.raises(InvalidSetting) as err:
            TrainConfig(**kwargs)
        assert str(err.value) == message
    assert TrainConfig(lr=1.0, ema_decay=0.0, save_at=[0]).lr == 1.0  # the bounds themselves are allowed


def test_a_field_changed_after_building_is_refused_by_the_trainer(tmp_path):
    """The trainer checks its config again: a caller's `config.lr = 0` after building it is refused
    before any step (it was a silent no-op training)."""
    import torch

    from safetune.options import InvalidSetting
    from safetune.train import train

    config = TrainConfig(steps=1)
    config.lr = 0.0
    with pytest.raises(InvalidSetting, match="TrainConfig.lr 0.0: must be positive"):
        train(torch.nn.Linear(2, 2), lambda *a: None, config)


def test_the_api_names_a_keyword_as_the_caller_wrote_it():
    """`safetune.align(..., sparsity=1.5)` is refused before any model is loaded, in the caller's
    words (not the CLI's `--set`)."""
    import safetune

    with pytest.raises(SafetuneError) as err:
        safetune.align("no-such-model-is-loaded", "salun", sparsity=1.5)
    assert str(err.value) == "sparsity=1.5: must be at most 1"


def test_concept_inversions_mode_is_a_setting_but_not_a_fine_tuning(tmp_path, capsys):
    """mode=token is declared (concept inversion builds TrainConfig(mode="token")) but `finetune`
    refuses it in one line instead of training nothing."""
    assert TrainConfig(mode="token").mode == "token"
    assert main(["finetune", "--data", "clean", "--mode", "token", "--out", str(tmp_path / "t")]) == 2
    assert "--mode token: concept inversion's own mode" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_grow_from_is_checked_before_the_study_claims_its_directory(tmp_path, capsys):
    """--grow-from: a file that is not there, a stored study made with other settings, another study's
    flag: one line naming the file and the fix, exit 2, and no --out directory made."""
    out = tmp_path / "s"
    assert main(["study", "relearn", "--out", str(out), "--grow-from", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "missing.json: cannot be read" in err and "docs/results/benchmark" in err
    stored = "docs/results/benchmark-forget-3x3.json"  # made with 20 prompts per set: the default is 40
    assert main(["study", "relearn", "--out", str(out), "--grow-from", stored]) == 2
    err = capsys.readouterr().err
    assert f"--grow-from {stored}" in err and "prompts_per_set (20 -> 40)" in err
    assert main(["study", "backfire", "--out", str(out), "--grow-from", stored]) == 2
    assert "the relearn study grows from a stored study" in capsys.readouterr().err
    # several stored studies, comma-separated: each is read before anything is made
    assert main(["study", "relearn", "--out", str(out), "--grow-from", f"{stored},{tmp_path / 'missing.json'}",
                 "--set", "prompts_per_set=20", "--set", "sampling.images_per_prompt=3"]) == 2
    assert "missing.json: cannot be read" in capsys.readouterr().err
    assert not out.exists()


def test_every_setting_of_a_method_is_read_by_the_stage_it_configures():
    """A setting no code reads would be shown, stored in every identity and set by users to no effect
    (hold_weight was once added to ForgettingConfig by mistake): each method config's fields are read as
    `.<name>` in its stage's source."""
    import dataclasses
    import re
    from pathlib import Path

    from safetune import config

    stages = Path(__file__).resolve().parents[1] / "safetune" / "stages"
    homes = {config.ForgettingConfig: ["lt_ng.py"], config.DistillConfig: ["distill.py", "losses.py"],
             config.MACEConfig: ["mace.py"], config.UCEConfig: ["uce.py"], config.SalUnConfig: ["salun.py"],
             config.AblationConfig: ["ablation.py"], config.InferenceSafetyConfig: ["inference.py"],
             config.SafetyLoraConfig: ["safety.py"]}
    for cls, files in homes.items():
        source = "".join((stages / name).read_text() for name in files)
        unread = [f.name for f in dataclasses.fields(cls) if not re.search(rf"\.{f.name}\b", source)]
        assert unread == [], f"{cls.__name__}: {unread} read nowhere in {files}"
