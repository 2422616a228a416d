"""LoRA files: standard diffusers/peft safetensors, merged into a pipeline's weights."""
from __future__ import annotations

from pathlib import Path

from ..errors import SafetuneError


def merge_loras_into_pipeline(pipe, loras: list[tuple[str, float]]) -> None:
    """Load each LoRA with diffusers' own loader, then fuse them: W = W0 + sum_i s_i * B_i A_i."""
    names = []
    for i, (path, scale) in enumerate(loras):
        if not Path(path).is_file():
            raise SafetuneError(f"{path}: LoRA file not found")
        name = f"lora_{i}"
        try:
            pipe.load_lora_weights(path, adapter_name=name)
        except (ValueError, RuntimeError, OSError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0][:300]
            raise SafetuneError(f"{path}: LoRA does not fit this model ({first}); "
                                "train it on the same base model") from exc
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()
