"""Bad input: one line naming the problem, exit code 2, no traceback, nothing half-written."""
import subprocess
import sys

import pytest


def assert_clean_failure(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("safetune: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_model_path_that_is_not_a_diffusers_directory(tmp_path, run_cli):
    (tmp_path / "notamodel").mkdir()
    proc = run_cli("generate", "--model", str(tmp_path / "notamodel"), "--prompts", "a red circle",
                   "--out", str(tmp_path / "out"))
    assert_clean_failure(proc, "notamodel", "model_index.json")
    assert not (tmp_path / "out").exists()


def test_missing_model_directory(tmp_path):
    """The one run through the real entry point (`python -m safetune`, a process of its own): its exit
    code and stderr are what a shell sees; the other bad inputs run in this process (run_cli)."""
    proc = subprocess.run([sys.executable, "-m", "safetune", "generate", "--model", str(tmp_path / "nowhere"),
                           "--prompts", "x", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert_clean_failure(proc, "nowhere")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content,needle", [("", "no prompts"), ("prompt\n\n", "no prompts"),
                                            ("text,seed\nhello,1\n", "'prompt' column")])
def test_empty_or_malformed_csv(tmp_path, content, needle, run_cli):
    f = tmp_path / "p.csv"
    f.write_text(content)
    proc = run_cli("evaluate", "--prompts", str(f), "--out", str(tmp_path / "out"))
    assert_clean_failure(proc, "p.csv", needle)
    assert not (tmp_path / "out").exists()


def test_malformed_jsonl(tmp_path, run_cli):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a red circle"}\n{not json\n')
    assert_clean_failure(run_cli("evaluate", "--prompts", str(f), "--out", str(tmp_path / "o")), "p.jsonl:2")


def test_missing_output_parent(tmp_path, run_cli):
    proc = run_cli("generate", "--prompts", "a red circle", "--out", str(tmp_path / "no" / "such" / "out"))
    assert_clean_failure(proc, "parent directory", "does not exist")


def test_unknown_detector(tmp_path, run_cli):
    proc = run_cli("evaluate", "--prompts", "clean", "--detector", "clip-magic", "--out", str(tmp_path / "o"))
    assert_clean_failure(proc, "clip-magic")


def test_every_command_has_help(capsys):
    from safetune.cli import build_parser, main

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"demo", "generate", "evaluate", "pretrain-shapes", "train-detector", "world", "align", "finetune",
            "compose", "lora", "study"} <= set(commands)
    for name in commands:
        assert main([name, "--help"]) == 0
        assert f"usage: safetune {name}" in capsys.readouterr().out
