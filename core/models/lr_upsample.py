"""Bicubic ×s upsampling as a fixed convolution + PixelShuffle: the student's LR skip.

`F.interpolate(mode="bicubic")` would be the one-liner, but it lowers to a cubic Resize that not
every phone backend runs (XNNPACK has no bicubic resize; the HTP and Core ML paths differ). Each
of the s² output phases is a fixed 5×5 filter of the edge-padded LR, so the same numbers come out
of a Conv, a Concat of edge slices and a DepthToSpace, which every backend here delegates.
Written by hand: no maintained library expresses resizing in this form. The filters are read off
torch's own bicubic (A = −0.75, half-pixel centres, edges clamped) by upsampling impulses, so the
module equals `F.interpolate(..., mode="bicubic", align_corners=False)` to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_TAPS = 5  # half-pixel bicubic at ×s reads LR pixels i−2 … i+2 for the s² phases of pixel i
_PAD = _TAPS // 2


def bicubic_phase_filters(scale: int) -> torch.Tensor:
    """(s², 1, 5, 5): filter p = (py·s + px) gives output pixel (s·i + py, s·j + px) from the
    5×5 LR neighbourhood of (i, j)."""
    n = 2 * _TAPS + 1  # impulses far enough from the edges that no clamping reaches them
    centre = n // 2
    filters = torch.zeros(scale * scale, 1, _TAPS, _TAPS, dtype=torch.float64)
    for dy in range(_TAPS):
        for dx in range(_TAPS):
            impulse = torch.zeros(1, 1, n, n, dtype=torch.float64)
            impulse[0, 0, centre + dy - _PAD, centre + dx - _PAD] = 1
            up = F.interpolate(impulse, scale_factor=scale, mode="bicubic", align_corners=False)
            block = up[0, 0, scale * centre: scale * (centre + 1), scale * centre: scale * (centre + 1)]
            filters[:, 0, dy, dx] = block.reshape(-1)
    return filters.float()


def _edge_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Replicate-pad the last two dims by `p` with slices and concats (a plain Pad in 'edge' mode
    is not delegated everywhere)."""
    x = torch.cat([x[..., :, :1]] * p + [x] + [x[..., :, -1:]] * p, dim=-1)
    return torch.cat([x[..., :1, :]] * p + [x] + [x[..., -1:, :]] * p, dim=-2)


class BicubicUpsample(nn.Module):
    """NCHW → bicubic ×`scale` (unclamped), per channel."""

    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.channels, self.scale = channels, scale
        # not persistent: rebuilt from (channels, scale), so saved students hold no extra tensor
        self.register_buffer("weight", bicubic_phase_filters(scale).repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(_edge_pad(x, _PAD), self.weight, groups=self.channels)
        return F.pixel_shuffle(y, self.scale)
