"""Compress's settings, defined once: `adcsr compress`'s flags and the pipeline's `compress`
section read their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adcsr.core.errors import UserError
from adcsr.core.models.release_ratios import DECODER_RATIO, UNET_RATIO

CRITERIA = ("release", "first", "magnitude", "taylor")  # see prune.py


@dataclass
class CompressConfig:
    unet_ratio: float = UNET_RATIO  # fraction of UNet channels removed (the release: 25%)
    decoder_ratio: float = DECODER_RATIO  # fraction of VAE-decoder channels removed (the release: 50%)
    criterion: Literal["release", "first", "magnitude", "taylor"] = "release"
    calibration: int = 4  # photo crops for the taylor criterion
    lr_size: int = 128  # LR side the compression report counts MACs at

    def __post_init__(self):
        for name in ("unet_ratio", "decoder_ratio"):
            r = getattr(self, name)
            if not 0.0 <= r < 1.0:
                raise UserError(f"{name} must be in [0, 1), got {r}")
        if self.criterion not in CRITERIA:
            raise UserError(f"unknown pruning criterion {self.criterion!r} (choose {', '.join(CRITERIA)})")
        if self.lr_size < 16 or self.lr_size % 16:
            raise UserError(f"lr_size must be a positive multiple of 16, got {self.lr_size}")
        if self.calibration < 1:
            raise UserError("calibration must be at least 1")
