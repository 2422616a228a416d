"""The training stages. Each is a loss and a set of trainable parameters run by the one trainer
(`safetune.train`):

    safety.align_lora        ESD-x / ESD-u / SDD safety LoRA on W0 (dW_safe)
    lt_ng.forgetting_train   LT / NG forgetting-based safe training (Pan et al. 2024)
    distill.distill_train    distort-and-distill: resists malicious fine-tuning (beyond the papers)
    finetuning.finetune      benign or malicious fine-tuning, full or LoRA, text encoder optional
    pretraining.pretrain     the miniature Stable Diffusion on ShapesWorld (VAE, then text encoder + UNet)
"""
from ..config import DistillConfig, ForgettingConfig
from .distill import distill_train
from .finetuning import finetune
from .lt_ng import forgetting_train
from .safety import ESD_X, METHODS, align_lora

__all__ = ["ESD_X", "METHODS", "DistillConfig", "ForgettingConfig", "align_lora", "distill_train", "finetune",
           "forgetting_train"]
