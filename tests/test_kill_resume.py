"""kill -9 in the middle of a fine-tuning job, resume: the same LoRA as an uninterrupted run. Only the
killed job needs a process of its own; the uninterrupted run and the resume run in this one."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from safetune.lora.weights import LoRA

ARGS = ["finetune", "--data", "plus", "--n", "32", "--steps", "60", "--batch-size", "4", "--mode", "lora",
        "--checkpoint-every", "5", "--lr", "1e-3"]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, run_cli):
    assert run_cli(*ARGS, "--out", tmp_path / "straight.safetensors").returncode == 0
    out = tmp_path / "killed.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "safetune", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed.safetensors.checkpoint" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["step"] >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written
    resumed = run_cli(*ARGS, "--out", out)
    assert resumed.returncode == 0 and "resum" in resumed.stderr.lower(), resumed.stderr
    a, b = LoRA.load(tmp_path / "straight.safetensors"), LoRA.load(out)
    for name in a.factors:
        torch.testing.assert_close(b.delta(name), a.delta(name), rtol=0, atol=1e-6)
