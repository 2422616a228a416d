"""The miniature Stable Diffusion: the same diffusers and transformers classes as SD 1.x, at 32x32.

AutoencoderKL (32x32x3 -> 8x8x4 latents), CLIPTextModel with a word-level vocabulary stored as a
CLIP BPE tokenizer (whole words built by merges, so `CLIPTokenizer.from_pretrained` reads it and
every standard SD script runs on it), UNet2DConditionModel with cross-attention, DDPM for training
and DDIM for sampling.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..data.shapesworld import ADDED_WORDS, RESOLUTION, vocabulary

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 16  # "a large yellow striped shape with five points on the right on a ..." fits

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=RESOLUTION,
)
UNET_CONFIG = dict(
    sample_size=RESOLUTION // 4, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=64,
    attention_head_dim=2, norm_num_groups=16,
)
TEXT_CONFIG = dict(
    hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS, projection_dim=64,
)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word (what CLIPTokenizer does), to check that merges build whole words."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        a, b = parts[i], parts[i + 1]
        merged, j = [], 0
        while j < len(parts):
            if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
                merged.append(a + b)
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = merged
    return parts


def word_level_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP vocab + merges in which every word of `words` is one token.

    Letters (and letters ending a word) are in the vocab too, so an unknown word still tokenizes.
    Merges are added until the real BPE algorithm turns each word into a single token.
    """
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = [BOS, EOS] + letters + [c + "</w>" for c in letters]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while len(parts := _bpe(word, ranks)) > 1:
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in tokens:
                tokens.append(pair[0] + pair[1])
    return {tok: i for i, tok in enumerate(tokens)}, merges


def grow_token_embeddings(text_encoder, vocab_size: int, seed: int = 0) -> None:
    """Append embedding rows for tokens added to the vocabulary, drawn as CLIP initialises them
    (normal, std 0.02 x initializer_factor) from their own generator: existing rows and every other
    weight stay exactly as they were, so the model's outputs on earlier prompts do not change."""
    import torch

    old = text_encoder.get_input_embeddings().weight
    if vocab_size <= old.shape[0]:
        return
    std = 0.02 * text_encoder.config.initializer_factor
    gen = torch.Generator().manual_seed(seed * 7919 + vocab_size)
    new_rows = torch.randn(vocab_size - old.shape[0], old.shape[1], generator=gen) * std
    embedding = torch.nn.Embedding(vocab_size, old.shape[1])
    with torch.no_grad():
        embedding.weight.copy_(torch.cat([old.detach(), new_rows.to(old)]))
    text_encoder.set_input_embeddings(embedding)
    text_encoder.config.vocab_size = vocab_size


def base_vocab_size() -> int:
    """Tokens of the vocabulary the shipped model was pretrained with (before ADDED_WORDS)."""
    return len(word_level_bpe(vocabulary()[: len(vocabulary()) - len(ADDED_WORDS)])[0])


def write_tokenizer(directory: Path) -> None:
    """The word-level vocabulary as CLIP BPE files (vocab.json, merges.txt) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = word_level_bpe(vocabulary())
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_TOKENS, "bos_token": BOS,
        "eos_token": EOS, "unk_token": EOS, "pad_token": EOS, "do_lower_case": True,
    }, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2))


def build_components(seed: int = 0, tokenizer_dir: Path | None = None) -> dict:
    """Fresh, randomly initialised components of the miniature SD (the start of pretraining)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if tokenizer_dir is None:
        tokenizer_dir = Path(tempfile.mkdtemp(prefix="safetune-tok-"))
        write_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    # built at the original vocabulary size so that a seed draws the same weights it always drew;
    # rows for ADDED_WORDS come after, from their own generator
    text_config = CLIPTextConfig(
        vocab_size=base_vocab_size(), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG)
    parts = {
        "vae": AutoencoderKL(**VAE_CONFIG),
        "text_encoder": CLIPTextModel(text_config),
        "tokenizer": tokenizer,
        "unet": UNet2DConditionModel(**UNET_CONFIG),
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }
    grow_token_embeddings(parts["text_encoder"], len(tokenizer.get_vocab()), seed)
    return parts


def assemble_pipeline(components: dict):
    """A StableDiffusionPipeline from components (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def tiny_random_pipeline(family: str = "sd1", seed: int = 0):
    """A randomly initialised pipeline of a real family at miniature size, for tests and smoke runs:
    'sd1' (epsilon), 'sd2' (v-prediction, linear projections, per-block heads), 'sdxl' (two text
    encoders, pooled text + size conditioning), 'sd3' (MMDiT, two CLIPs + T5, rectified flow) and
    'flux' (double- and single-stream blocks, CLIP pooled + T5, guidance embedding, packed latents).
    The T5 encoders read the same word-level vocabulary as the CLIPs (a CLIPTokenizer stands in for
    T5's sentencepiece one, which cannot be built without a download)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    tok_dir = Path(tempfile.mkdtemp(prefix="safetune-tok-"))
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    torch.manual_seed(seed)
    text_kwargs = dict(vocab_size=len(tokenizer.get_vocab()), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       max_position_embeddings=MAX_TOKENS, num_attention_heads=4, num_hidden_layers=2,
                       intermediate_size=64, hidden_size=32, projection_dim=32, hidden_act="gelu")
    vae = AutoencoderKL(**VAE_CONFIG)
    if family == "sd1":
        return assemble_pipeline(build_components(seed=seed, tokenizer_dir=tok_dir))
    if family == "sd2":
        parts = build_components(seed=seed, tokenizer_dir=tok_dir)
        parts["unet"] = UNet2DConditionModel(**{**UNET_CONFIG, "attention_head_dim": (2, 4),
                                                "use_linear_projection": True})
        parts["scheduler"] = DDIMScheduler(**{**SCHEDULER_CONFIG, "prediction_type": "v_prediction"})
        return assemble_pipeline(parts)
    if family == "sdxl":
        unet = UNet2DConditionModel(
            sample_size=RESOLUTION // 4, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=8 * 6 + 32,
            cross_attention_dim=64, norm_num_groups=16)
        scheduler = EulerDiscreteScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                           beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                           timestep_spacing="leading")
        return StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text_kwargs)),
                                         text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_kwargs)),
                                         tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    if family in ("sd3", "flux"):
        return _tiny_transformer_pipeline(family, tokenizer, text_kwargs)
    raise ValueError(f"unknown family {family!r}; choose sd1, sd2, sdxl, sd3 or flux")


def _tiny_transformer_pipeline(family: str, tokenizer, text_kwargs: dict):
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer.get_vocab()), d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                 num_heads=4, relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0))
    vae = AutoencoderKL(**VAE_CONFIG, shift_factor=0.1, scaling_factor=1.5)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    if family == "sd3":
        transformer = SD3Transformer2DModel(
            sample_size=RESOLUTION // 4, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=32,
            pooled_projection_dim=64, pos_embed_max_size=16)
        return StableDiffusion3Pipeline(
            transformer=transformer, scheduler=scheduler, vae=vae, tokenizer=tokenizer, tokenizer_2=tokenizer,
            tokenizer_3=tokenizer, text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**text_kwargs)),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_kwargs)), text_encoder_3=t5)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * 4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 4, 8])
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=vae, tokenizer=tokenizer,
                        tokenizer_2=tokenizer, text_encoder=CLIPTextModel(CLIPTextConfig(**text_kwargs)),
                        text_encoder_2=t5)
