"""safetune: safety alignment of text-to-image diffusion models that survives fine-tuning.

The Python API (safetune.api; imported on first use, so `import safetune` stays light):
    load, align, finetune, compose, evaluate, audit, LoRA
"""

__version__ = "0.2.0"
__all__ = ["LoRA", "align", "audit", "compose", "evaluate", "finetune", "load"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'safetune' has no attribute {name!r}")
