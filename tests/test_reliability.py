"""Each row of the reliability issue, as a new user met it: the one-line error (exit 2, nothing
written) or the right behaviour. Every test here failed before its fix."""
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from safetune.cli import main
from safetune.errors import SafetuneError
from safetune.lora.weights import LoRA, pipeline_modules


def err(capsys, argv, *needles, code=2):
    assert main(argv) == code
    text = capsys.readouterr().err.strip()
    assert text.count("\n") == 0 and text.startswith("safetune: error:"), text
    for needle in needles:
        assert needle in text, text
    return text


def test_generate_never_deletes_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err(capsys, ["generate", "--prompts", "a red star", "--images-per-prompt", "1", "--steps", "2", "--out", str(out)],
        "not empty", "--overwrite")
    assert main(["generate", "--prompts", "a red star", "--images-per-prompt", "1", "--steps", "2", "--out", str(out),
                 "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "grid.png").is_file()
    # a second overwrite replaces what safetune wrote (fewer images now) and still keeps the notes
    assert main(["generate", "--prompts", "a red star", "--images-per-prompt", "2", "--steps", "2", "--out", str(out),
                 "--overwrite"]) == 0
    assert main(["generate", "--prompts", "a blue star", "--images-per-prompt", "1", "--steps", "2", "--out", str(out),
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00000_seed0.png", "grid.png"]
    assert (out / "notes.txt").read_text() == "mine"


def test_generate_out_dot_is_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    err(capsys, ["generate", "--prompts", "a red star", "--out", "."], "not empty")
    assert main(["generate", "--prompts", "a red star", "--images-per-prompt", "1", "--steps", "2", "--out", ".",
                 "--overwrite"]) == 0
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "keep.txt").read_text() == "x"


def test_resume_with_other_settings_is_refused_and_a_resume_says_so(tmp_path, capsys, monkeypatch):
    from safetune import train as trainer

    out = tmp_path / "safe.safetensors"
    base = ["align", "--steps", "4", "--batch-size", "2", "--checkpoint-every", "2", "--set", "concept_samples=2",
            "--out", str(out)]
    real = trainer.save_checkpoint

    def save_then_stop(path, step, *args, **kwargs):
        real(path, step, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    assert main(base) == 130  # Ctrl-C after the first checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    capsys.readouterr()
    err(capsys, base[:-2] + ["--concept", "a circle", "--lr", "5e-3", "--out", str(out)],
        "other settings", "concepts", "delete")
    assert not out.exists()
    assert main(base) == 0
    assert "resuming at step 2 of 4" in capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["concepts"] == ["a star", "a pentagram"]


def test_prompt_set_typo_is_refused_and_literal_text_stays_possible(tmp_path, capsys):
    err(capsys, ["evaluate", "--prompts", "harmfull", "--out", str(tmp_path / "e")], "did you mean 'harmful'",
        "text:harmfull")
    assert not (tmp_path / "e").exists()
    assert main(["generate", "--prompts", "text:harmfull", "--images-per-prompt", "1", "--steps", "2",
                 "--out", str(tmp_path / "g")]) == 0
    assert json.loads((tmp_path / "g" / "images.json").read_text())[0]["prompt"] == "harmfull"


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf"])
def test_non_finite_lora_scale_is_refused(tmp_path, capsys, scale):
    lora = tmp_path / "l.safetensors"
    LoRA({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": (torch.zeros(1, 64), torch.zeros(32, 1))}
         ).save(lora)
    err(capsys, ["evaluate", "--prompts", "harmful", "--lora", f"{lora}:{scale}", "--out", str(tmp_path / "e")],
        "not a finite number")


def test_huge_lora_scale_warns(caplog):
    from safetune.lora.weights import parse_lora_arg

    with caplog.at_level("WARNING"):
        assert parse_lora_arg("x.safetensors:1e9") == ("x.safetensors", 1e9)
        assert parse_lora_arg("x.safetensors:-0.5") == ("x.safetensors", -0.5)
    assert len(caplog.records) == 1 and "far outside" in caplog.records[0].getMessage()


def test_limit_must_be_positive(tmp_path, capsys):
    for limit in ("-1", "0"):
        err(capsys, ["evaluate", "--prompts", "harmful", "--limit", limit, "--out", str(tmp_path / "e")], "--limit")


def foreign_lora(path: Path) -> Path:
    """A LoRA of another architecture: the right module names, other shapes."""
    LoRA({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": (torch.zeros(4, 48), torch.zeros(32, 4))}
         ).save(path)
    return path


@pytest.fixture
def two_loras(tmp_path, shipped_pipe):
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    w = pipeline_modules(shipped_pipe)[name].weight
    g = torch.Generator().manual_seed(0)
    good = LoRA({name: (torch.randn(4, w.shape[1], generator=g) * 0.01, torch.randn(w.shape[0], 4, generator=g) * 0.01)})
    good.save(tmp_path / "good.safetensors")
    return tmp_path / "good.safetensors", foreign_lora(tmp_path / "foreign.safetensors")


def test_a_lora_of_another_model_is_refused_everywhere(tmp_path, capsys, two_loras):
    good, foreign = map(str, two_loras)
    # the guard checks each file against the model before composing: the message names the file
    err(capsys, ["audit", "--safety-lora", good, "--lora", foreign, "--no-measure"], foreign, "another base model")
    err(capsys, ["audit", "--safety-lora", foreign, "--lora", good], foreign, "another base model")
    err(capsys, ["lora", "inspect", good, foreign], "different base models")
    err(capsys, ["lora", "subtract", good, foreign, "--out", str(tmp_path / "d.safetensors")], "different base models")
    err(capsys, ["compose", "--safety-lora", good, "--lora", foreign, "--out", str(tmp_path / "c")],
        foreign, "another base model")
    assert not (tmp_path / "d.safetensors").exists() and not (tmp_path / "c").exists()


def test_the_same_lora_as_safety_and_user_lora_is_refused(tmp_path, capsys, two_loras):
    good = str(two_loras[0])
    err(capsys, ["compose", "--safety-lora", good, "--lora", good, "--out", str(tmp_path / "c")], "given twice")


def test_unwritable_out_fails_before_any_work(tmp_path, capsys):
    """/proc refuses new files even to root: the probe finds it before minutes of training."""
    for argv in (["generate", "--prompts", "a star", "--out", "/proc/safetune-out"],
                 ["align", "--out", "/proc/safetune.safetensors"],
                 ["compose", "--lora", str(foreign_lora(tmp_path / "f.safetensors")), "--out", "/proc/safetune-out"]):
        err(capsys, argv, "cannot write")


def test_missing_cuda_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err(capsys, ["generate", "--prompts", "a star", "--device", "cuda", "--out", str(tmp_path / "g")], "no CUDA")
    err(capsys, ["generate", "--prompts", "a star", "--device", "gpu", "--out", str(tmp_path / "g")], "not a device")


def test_words_the_shipped_model_does_not_know_are_named(tmp_path, capsys):
    assert main(["generate", "--prompts", "a fluffy dog riding a bicycle", "--images-per-prompt", "1", "--steps", "2",
                 "--out", str(tmp_path / "g")]) == 0
    text = capsys.readouterr().err
    assert "does not know the words bicycle, dog, fluffy, riding" in text and "ShapesWorld" in text


def test_degenerate_images_are_invalid_not_harmful(detector):
    from safetune.evaluation.metrics import score_images

    black = Image.new("RGB", (32, 32))
    grey = Image.new("RGB", (32, 32), (120, 120, 120))
    from safetune.data.shapesworld import Scene, render

    star = render(Scene("star", "red", "large", "middle", "black"))
    m = score_images([black, grey, star, star], ["a red star"] * 4, detector)
    assert m["n_invalid"] == 2 and m["n_images"] == 4
    assert m["harmful_rate"] == pytest.approx(0.5)  # the two stars; never the black or grey squares
    assert m["fidelity_by_attribute"]["shape"] == pytest.approx(0.5)


def test_threads_flag_sets_torch_threads_and_refuses_nonsense(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "lora", "inspect", "--help"]) == 0
        err(capsys, ["--threads", "0", "world", "prompts", "--out", "/tmp/x"], "--threads")
    finally:
        torch.set_num_threads(before)


def test_study_refuses_a_folder_it_did_not_write_and_bad_settings_before_work(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "data.csv").write_text("x")
    err(capsys, ["study", "backfire", "--out", str(tmp_path / "s")], "not written by a safetune study")
    err(capsys, ["study", "backfire", "--methods", "magic", "--out", str(tmp_path / "t")], "unknown safety method")
    err(capsys, ["study", "forgetting", "--methods", "esd+magic", "--out", str(tmp_path / "t")], "unknown part")
    err(capsys, ["study", "backfire", "--set", "seedz=1", "--out", str(tmp_path / "t")], "did you mean seeds")
    assert not (tmp_path / "t").exists()


def test_a_second_run_on_the_same_out_is_refused_while_the_first_lives(tmp_path, capsys):
    """Two `generate` runs on one --out both reported success while the second deleted the first's
    images as "stale": the first now holds a lock beside --out; a dead run's lock is taken over."""
    import subprocess
    import sys

    out = tmp_path / "g"
    lock = tmp_path / ".g.safetune-lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(str(holder.pid))
        assert main(["generate", "--prompts", "text:a red circle", "--images-per-prompt", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"another safetune run (pid {holder.pid})" in err and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["generate", "--prompts", "text:a red circle", "--images-per-prompt", "1", "--steps", "2",
                 "--out", str(out)]) == 0  # the dead run's lock is taken over
    assert (out / "images.json").is_file() and not lock.exists()  # and released when the command ends


def test_a_truncated_checkpoint_weights_file_is_one_line(tmp_path):
    from safetune.checkpoint import load_checkpoint

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "state.json").write_text('{"step": 3}')
    (tmp_path / "ck" / "trainable.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{trunc")
    with pytest.raises(SafetuneError, match="checkpoint cannot be read .* to start over"):
        load_checkpoint(tmp_path / "ck", {"trainable": torch.nn.Linear(2, 2)})


def test_generate_makes_the_images_per_prompt_its_help_states_and_takes_limit(tmp_path, capsys):
    from safetune.commands.sample import GENERATE

    assert main(["generate", "--help"]) == 0
    assert f"(default: {GENERATE.images_per_prompt})" in capsys.readouterr().out
    assert main(["generate", "--prompts", "clean", "--limit", "2", "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    images = json.loads((tmp_path / "g" / "images.json").read_text())
    rows = images["images"] if isinstance(images, dict) else images
    assert len(rows) == 2 * GENERATE.images_per_prompt


def test_an_uncached_hub_model_offline_is_one_line(tmp_path, capsys):
    """It was three lines, one pointing at "the stacktrace above", which the user never sees."""
    err(capsys, ["generate", "--model", "someone/not-cached-model", "--prompts", "a red circle", "--out",
                 str(tmp_path / "g")], "someone/not-cached-model: not in the local Hugging Face cache", "huggingface-cli")
    assert not (tmp_path / "g").exists()
