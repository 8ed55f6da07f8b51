"""The held-out set the export's parity tiles, `adcsr export verify` and the pipeline's report
take their crops from, at the size and count each needs. (The training stages' validation curves
still use their own seeded random held-out crops: on these centre crops the CI-size stage-0
autoencoder does not improve within its 150 steps, 16.3 → 15.8 dB, and its test asserts it does.)

Crop k comes from held-out photo k mod n: the first round is each photo's centre, later rounds
seeded random crops. The LR is the HR degraded ×scale by the training degradation (Real-ESRGAN's
second-order pipeline, default settings unless a stage's own are given), one generator seeded
by `seed` for the whole batch. Same arguments, same tensors, in every stage and every process.
"""

from __future__ import annotations

import torch

from .degradations import DegradationConfig, RealESRGANDegradation
from .errors import UserError
from .photos import random_crop, shared_photo, split_photos


def heldout_set(hr_size: int, count: int, seed: int = 0, degradation: DegradationConfig | None = None
                ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(photo name of each crop, LR (count, 3, hr_size/scale, ·), HR (count, 3, hr_size, hr_size))."""
    if hr_size < 1 or count < 1:
        raise UserError(f"held-out crop size and count must be positive, got size={hr_size}, count={count}")
    cfg = degradation or DegradationConfig()
    if hr_size % cfg.scale:
        raise UserError(f"held-out crop size {hr_size} is not a multiple of the scale {cfg.scale}")
    names = [n for n in split_photos("heldout") if min(shared_photo(n).shape[1:]) >= hr_size]
    if not names:
        raise UserError(f"no held-out photo is at least {hr_size}×{hr_size} pixels")
    g = torch.Generator().manual_seed(seed)
    crops, taken = [], []
    for k in range(count):
        name = names[k % len(names)]
        img = shared_photo(name)
        if k < len(names):
            top, left = (img.shape[1] - hr_size) // 2, (img.shape[2] - hr_size) // 2
            crops.append(img[:, top:top + hr_size, left:left + hr_size])
        else:
            crops.append(random_crop(img, hr_size, g))
        taken.append(name)
    hr = torch.stack(crops).clone()
    lr = RealESRGANDegradation(cfg)(hr, torch.Generator().manual_seed(seed)).float().contiguous()
    return taken, lr, hr
