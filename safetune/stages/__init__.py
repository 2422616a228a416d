"""The training stages. Each is a loss and a set of trainable parameters run by the one trainer
(`safetune.train`):

    safety.align_lora        ESD-x / ESD-u / SDD safety LoRA on W0 (dW_safe)
    lt_ng.forgetting_train   LT / NG forgetting-based safe training (Pan et al. 2024)
    distill.distill_train    distort-and-distill: resists malicious fine-tuning (beyond the papers)
    finetuning.finetune      benign or malicious fine-tuning, full or LoRA, text encoder optional
    pretraining.pretrain     the miniature Stable Diffusion on ShapesWorld (VAE, then text encoder + UNet)
"""
import importlib

_HOMES = {"ESD_X": "safety", "align_lora": "safety", "METHODS": "methods", "distill_train": "distill",
          "finetune": "finetuning", "forgetting_train": "lt_ng"}
__all__ = ["ESD_X", "METHODS", "DistillConfig", "ForgettingConfig", "align_lora", "distill_train", "finetune",
           "forgetting_train"]


def __getattr__(name: str):
    """The stages are imported when first used: the CLI's --help reads the method registry
    (stages.methods) without importing torch."""
    if name in ("DistillConfig", "ForgettingConfig"):
        from .. import config

        return getattr(config, name)
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
