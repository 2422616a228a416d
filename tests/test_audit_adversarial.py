import torch

from safetune.attacks.prompt_search import AdversarialConfig, attack_prompt, attack_success_rate
from safetune.studies.audit import choose_threshold


def test_threshold_choice_separates_groups():
    assert 0.1 < choose_threshold([0.0, 0.05, 0.1], [0.6, 0.7, 0.9]) < 0.6
    assert choose_threshold([0.0, 0.5], [0.4, 0.9]) > 0.0


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
