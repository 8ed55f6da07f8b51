"""ResShift's VQGAN-f4 autoencoder as diffusers' `VQModel`, and the released LDM-format weights.

3-channel latent, 8192 codes, widths 128·(1, 2, 4), two residual blocks per level, attention in
the mid blocks only (`attn_resolutions: []`). `encode(x).latents` is the release's `encode`
(encoder + `quant_conv`, not quantised); `decode` quantises first, as the release's does. Images
are in [-1, 1].

The release (`autoencoder_vq_f4.pth`) keeps LDM's module names; `ldm_to_diffusers` maps them key
by key (1×1-conv attention projections become linear weights).
"""

from __future__ import annotations

import os
import re

import torch
from diffusers import VQModel

from ..errors import UserError
from .release_checkpoint import fit_state, read_release_state

_FULL = dict(block_out_channels=(128, 256, 512), layers_per_block=2, num_vq_embeddings=8192, norm_num_groups=32)
_TINY = dict(block_out_channels=(16, 32, 32), layers_per_block=1, num_vq_embeddings=64, norm_num_groups=8)
PRESETS = {"full": _FULL, "tiny": _TINY}


def vqgan_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise UserError(f"unknown VQGAN preset {preset!r} (known: {', '.join(PRESETS)})")
    levels = len(PRESETS[preset]["block_out_channels"])
    return dict(in_channels=3, out_channels=3, latent_channels=3, vq_embed_dim=3, scaling_factor=1.0,
                down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                **PRESETS[preset])


def build_vqgan(preset: str) -> VQModel:
    return VQModel(**vqgan_config(preset))


_RESNET = {"nin_shortcut": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _ldm_key(key: str, levels: int) -> str:
    """One LDM name → its diffusers name (unchanged when the names agree)."""
    if m := re.fullmatch(r"(encoder|decoder)\.(down|up)\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", key):
        side, kind, level, block, layer, p = m.groups()
        index = int(level) if kind == "down" else levels - 1 - int(level)  # diffusers lists up blocks lowest-res first
        return f"{side}.{kind}_blocks.{index}.resnets.{block}.{_RESNET.get(layer, layer)}.{p}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", key):
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key):
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.block_([12])\.(\w+)\.(weight|bias)", key):
        return f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_RESNET.get(m[3], m[3])}.{m[4]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(\w+)\.(weight|bias)", key):
        return f"{m[1]}.mid_block.attentions.0.{_ATTN.get(m[2], m[2])}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.norm_out\.(weight|bias)", key):
        return f"{m[1]}.conv_norm_out.{m[2]}"
    return key


def ldm_to_diffusers(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """The release's VQ state dict in `VQModel`'s names. LDM training checkpoints also carry the
    training loss's weights (`loss.*`); they are not part of the autoencoder and are dropped."""
    out = {}
    for key, value in state.items():
        if key.startswith("loss."):
            continue
        new = _ldm_key(key, levels)
        if ".mid_block.attentions.0.to_" in new and new.endswith("weight") and value.dim() == 4:
            value = value[:, :, 0, 0]  # LDM's 1×1 convs → linear layers
        out[new] = value
    return out


def load_ldm_vqgan(path: str | os.PathLike, preset: str = "full") -> VQModel:
    """The released `autoencoder_vq_f4.pth` (or a file in its layout) → `VQModel`; every key must fit."""
    model = build_vqgan(preset)
    state = ldm_to_diffusers(read_release_state(path, "VQGAN autoencoder"), len(model.config.block_out_channels))
    fit_state(model, state, path, "VQGAN autoencoder")
    return model.eval()
