"""Configs of Stable Diffusion 3 (medium) networks, as diffusers config dicts: the base TSD-SR
builds on. `sd3` is SD3-medium's `SD3Transformer2DModel` and VAE (16 latent channels); `tiny` has
the same topology at a few percent of the width for tests. No weights: local folders supply them."""

from __future__ import annotations

from typing import Any

from .sd_configs import preset_config
from .sd_configs import vae_config as sd21_vae_config

_SD3_TRANSFORMER: dict[str, Any] = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 192,
}

# SD2.1's VAE topology with 16 latent channels, its own scaling and shift, and no quant convs.
_SD3_VAE: dict[str, Any] = {
    **sd21_vae_config("sd21"),
    "latent_channels": 16,
    "sample_size": 1024,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}

_TINY_TRANSFORMER: dict[str, Any] = {
    **_SD3_TRANSFORMER,
    "sample_size": 32,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 64,
    "caption_projection_dim": 32,
    "pooled_projection_dim": 32,
    "pos_embed_max_size": 64,
}

_TINY_VAE: dict[str, Any] = {**_SD3_VAE, "block_out_channels": [32, 64, 64, 64], "norm_num_groups": 8,
                             "sample_size": 128}

#: the prompt embeddings' token count (CLIP 77 + T5 256) and widths, per preset
PROMPT_SHAPES = {"sd3": ((1, 333, 4096), (1, 2048)), "tiny": ((1, 8, 64), (1, 32))}
_CONFIGS = {("transformer", "sd3"): _SD3_TRANSFORMER, ("vae", "sd3"): _SD3_VAE,
            ("transformer", "tiny"): _TINY_TRANSFORMER, ("vae", "tiny"): _TINY_VAE}
PRESETS = ("sd3", "tiny")


def transformer_config(preset: str) -> dict[str, Any]:
    return preset_config(_CONFIGS, "transformer", preset, PRESETS, "SD3 preset")


def vae_config(preset: str) -> dict[str, Any]:
    return preset_config(_CONFIGS, "vae", preset, PRESETS, "SD3 preset")
