"""safetune: safety alignment of text-to-image diffusion models that survives fine-tuning."""

__version__ = "0.1.0"
