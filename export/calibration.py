"""LR tiles from the bundled real photos, degraded like the training data (Real-ESRGAN pipeline).

Calibration uses the training split; verification uses the held-out split, so parity figures are
measured on photos the quantizer never saw.
"""

from __future__ import annotations

import torch

from adcsr.core.degradations import DegradationConfig, RealESRGANDegradation
from adcsr.core.heldout import heldout_set
from adcsr.core.photos import hr_crops, split_photos


def lr_tiles(split: str, tile: int, count: int, seed: int = 0, scale: int = 4) -> torch.Tensor:
    """`count` LR tiles (count, 3, tile, tile) in [0, 1]: HR crops of `split`, degraded ×`scale`;
    the held-out ones are the project's one held-out set (`core.heldout`)."""
    if split == "heldout":
        return heldout_set(tile * scale, count, seed, DegradationConfig(scale=scale))[1]
    hr = hr_crops(split, tile * scale, count, seed)
    degrade = RealESRGANDegradation(DegradationConfig(scale=scale))
    return degrade(hr, torch.Generator().manual_seed(seed)).float().contiguous()


def describe(split: str, tile: int, count: int, seed: int = 0) -> dict:
    """What a manifest records about a set made by `lr_tiles`."""
    crops = "each photo's centre, then seeded random crops (core.heldout)" if split == "heldout" else "seeded random crops"
    return {"split": split, "photos": list(split_photos(split)), "count": count, "lr_tile": tile,
            "seed": seed, "crops": crops, "degradation": "RealESRGANDegradation (default config)"}
