"""Configs of the SD-family networks the project builds on, as diffusers config dicts.

`sd21` is Stable Diffusion 2.1-base (the UNet and VAE that OSEDiff and AdcSR start from);
`tiny` has the same topology at a few percent of the width, so every code path runs in tests and
in the embedded default on a CPU. Weights come from local diffusers folders; these configs let
models be built (randomly initialised, or on the meta device for counting) without any download.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from ..errors import UserError

_SD21_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],  # diffusers' legacy name: this is the number of heads
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}

_SD21_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "act_fn": "silu",
}

# Same topology, a few percent of the width: 4 levels, attention at levels 0-2 and mid, 2 layers
# per block, linear projections, multi-head attention (2/2/4/4 heads: head_dim 16/32/32/32, so the
# attention matrices of CPU tests stay small while every level still has several heads).
_TINY_UNET: dict[str, Any] = {
    **_SD21_UNET,
    "block_out_channels": [32, 64, 128, 128],
    "attention_head_dim": [2, 2, 4, 4],
    "cross_attention_dim": 64,
    "norm_num_groups": 8,
}

_TINY_VAE: dict[str, Any] = {
    **_SD21_VAE,
    "block_out_channels": [32, 64, 64, 64],
    "norm_num_groups": 8,
    "sample_size": 128,
}

# SD2.1's OpenCLIP ViT-H text tower as a transformers `CLIPTextConfig` (for counting only).
_SD21_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 512,
}

_TINY_TEXT: dict[str, Any] = {**_SD21_TEXT, "hidden_size": 64, "intermediate_size": 256,
                              "num_hidden_layers": 2, "num_attention_heads": 4}

_CONFIGS = {
    ("unet", "sd21"): _SD21_UNET,
    ("vae", "sd21"): _SD21_VAE,
    ("unet", "tiny"): _TINY_UNET,
    ("vae", "tiny"): _TINY_VAE,
    ("text", "sd21"): _SD21_TEXT,
    ("text", "tiny"): _TINY_TEXT,
}

PRESETS = ("sd21", "tiny")


def unet_config(preset: str) -> dict[str, Any]:
    """The `UNet2DConditionModel` config of a preset (a fresh copy)."""
    return preset_config(_CONFIGS, "unet", preset, PRESETS)


def vae_config(preset: str) -> dict[str, Any]:
    """The `AutoencoderKL` config of a preset (a fresh copy)."""
    return preset_config(_CONFIGS, "vae", preset, PRESETS)


def text_encoder_config(preset: str) -> dict[str, Any]:
    """The text encoder's `CLIPTextConfig` kwargs of a preset (a fresh copy)."""
    return preset_config(_CONFIGS, "text", preset, PRESETS)


def preset_config(configs: Mapping[tuple[str, str], dict[str, Any]], kind: str, preset: str,
                  known: Sequence[str], what: str = "preset") -> dict[str, Any]:
    """A fresh copy of `configs[(kind, preset)]`, or a UserError naming the `known` presets
    (`what` names them in the message: "preset", "SD3 preset")."""
    if (kind, preset) not in configs:
        raise UserError(f"unknown {what} {preset!r} (known: {', '.join(known)})")
    return copy.deepcopy(configs[(kind, preset)])
