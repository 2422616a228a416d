import pytest
import torch

from safetune.attacks.adversarial import AdversarialConfig, attack_prompt, attack_success_rate
from safetune.audit import AuditThresholds, cancel_overlap, verdict
from safetune.cli import main
from safetune.lora.weights import LoRA, pipeline_modules
from safetune.studies.audit import choose_threshold


def lora_on(pipe, pattern, seed):
    g = torch.Generator().manual_seed(seed)
    return LoRA({n: (torch.randn(4, m.weight.shape[1], generator=g) * 0.05, torch.randn(m.weight.shape[0], 4, generator=g) * 0.05)
                 for n, m in pipeline_modules(pipe).items() if n.startswith("unet.") and n.endswith(pattern)})


def test_overlap_catches_a_cancelling_lora_and_passes_an_unrelated_one(shipped_pipe):
    safe = lora_on(shipped_pipe, "attn2.to_k", 1)
    assert cancel_overlap(-safe, safe)["overlap"] == pytest.approx(1.0, abs=1e-5)
    noisy_cancel = -safe + lora_on(shipped_pipe, "attn2.to_k", 2).scaled(0.3)
    assert cancel_overlap(noisy_cancel, safe)["overlap"] > 0.8
    other = cancel_overlap(lora_on(shipped_pipe, "attn2.to_k", 3), safe)["overlap"]
    assert abs(other) < 0.2
    assert cancel_overlap(lora_on(shipped_pipe, "attn1.to_q", 4), safe)["shared_modules"] == 0


def test_verdict_uses_overlap_and_measured_rise():
    t = AuditThresholds(overlap=0.2, max_increase=0.05)
    assert not verdict(0.5, None, None, t)["pass"]
    low = {"harmful_rate": 0.05, "harmful_rate_ci95": [0.02, 0.1]}
    high = {"harmful_rate": 0.5, "harmful_rate_ci95": [0.4, 0.6]}
    assert not verdict(0.0, low, high, t)["pass"]
    assert verdict(0.0, low, low, t)["pass"]


def test_threshold_choice_separates_groups():
    assert 0.1 < choose_threshold([0.0, 0.05, 0.1], [0.6, 0.7, 0.9]) < 0.6
    assert choose_threshold([0.0, 0.5], [0.4, 0.9]) > 0.0


def test_compose_refuses_a_cancelling_lora_unless_forced(shipped_pipe, tmp_path, capsys):
    safe = lora_on(shipped_pipe, "attn2.to_k", 1)
    safe.save(tmp_path / "safe.safetensors")
    (-safe).save(tmp_path / "undo.safetensors")
    args = ["compose", "--safety-lora", str(tmp_path / "safe.safetensors"), "--lora", str(tmp_path / "undo.safetensors")]
    assert main(args + ["--out", str(tmp_path / "c")]) == 2
    assert "would cancel" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main(args + ["--force", "--out", str(tmp_path / "c")]) == 0
    assert main(["audit", "--safety-lora", str(tmp_path / "safe.safetensors"), "--lora", str(tmp_path / "undo.safetensors"),
                 "--no-measure"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_adversarial_prompt_is_typable_and_asr_is_reported(shipped_pipe, detector):
    config = AdversarialConfig(n_tokens=2, steps=3, seeds_per_prompt=1)
    target = torch.randn(2, 4, 8, 8)
    prompt = attack_prompt(shipped_pipe, "a star", target, config)
    words = prompt.split()
    assert len(words) == 2 + 2 and prompt.endswith("a star") and "</w>" not in prompt
    long = "a large yellow striped shape with five points on the right on a purple background"
    cut = attack_prompt(shipped_pipe, long, target, config)
    assert long.startswith(" ".join(cut.split()[2:])) and len(shipped_pipe.tokenizer(cut).input_ids) <= 16
    ids = shipped_pipe.tokenizer(prompt).input_ids
    assert len(ids) == len(words) + 2  # every adversarial word is one vocabulary token
    result = attack_success_rate(shipped_pipe, [{"prompt": "a star"}], detector, config)
    assert set(result) >= {"attack_success_rate", "attack_success_rate_ci95", "no_attack_success_rate"}
    assert 0 <= result["attack_success_rate"] <= 1 and result["n_prompts"] == 1
