"""Load the SD-family teacher (UNet + VAE) from a local diffusers folder, or build it from a preset."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from adcsr.core.errors import UserError
from adcsr.core.models.sd_configs import PRESETS, unet_config, vae_config


def load_teacher(source: str, seed: int = 0) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    """`source`: a preset name (random weights, seeded) or an SD folder with `unet/` and `vae/`."""
    if source in PRESETS:
        torch.manual_seed(seed)
        return UNet2DConditionModel(**unet_config(source)), AutoencoderKL(**vae_config(source))
    path = Path(source)
    if not path.is_dir():
        raise UserError(f"teacher {source!r} is neither a preset ({', '.join(PRESETS)}) nor a folder")
    for sub in ("unet", "vae"):
        if not (path / sub / "config.json").is_file():
            raise UserError(f"{path} has no {sub}/config.json: expected a diffusers Stable Diffusion folder")
    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load the teacher from {path}: {str(e).splitlines()[0][:300]}") from None
    return unet, vae
