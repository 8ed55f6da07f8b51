"""Pad images to a multiple of a network's stride (reflect) and crop results back.

The released AdcSR fails on LR sizes that are not multiples of 16 (a skip concat mismatches);
we pad inside the model instead. Torch's reflect padding needs pad < size, so larger pads (e.g.
17x31 to 32x32) are done in several reflect steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad an NCHW tensor at the bottom/right so H and W are multiples of `m`.

    Returns the padded tensor and the original (h, w), for `crop_to`.
    """
    if x.dim() != 4:
        raise UserError(f"expected an NCHW image batch, got a tensor of shape {tuple(x.shape)}")
    if m < 1:
        raise UserError(f"size multiple must be >= 1, got {m}")
    h, w = x.shape[-2:]
    if h < 1 or w < 1:
        raise UserError(f"image has an empty side: {h}x{w}")
    th, tw = -(-h // m) * m, -(-w // m) * m
    while x.shape[-2] < th or x.shape[-1] < tw:
        ch, cw = x.shape[-2:]
        ph = min(th - ch, ch - 1)
        pw = min(tw - cw, cw - 1)
        if ph == 0 and pw == 0:  # a 1-pixel side cannot be reflected: repeat it instead
            x = F.pad(x, (0, tw - cw, 0, th - ch), mode="replicate")
            break
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """Crop the top-left (h*scale, w*scale) region: undoes `pad_to_multiple` after an upscale."""
    h, w = size
    return x[..., : h * scale, : w * scale]
