"""Colour correction of an SR result towards its LR input, applied once per whole image.

One-step diffusion SR can drift in colour; StableSR and OSEDiff correct it after decoding.
`adain_color_fix` matches each channel's mean and standard deviation to the LR image's;
`wavelet_color_fix` keeps the SR image's high frequencies and takes the low frequencies from the
(bicubically upsampled) LR image, split with an à trous wavelet (Gaussian-like 3×3 kernel,
dilation doubling per level). Written here from those descriptions: no library provides them.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .errors import UserError

ADAIN_EPS = 1e-5  # keeps a flat channel's std off zero (the tiler's streamed AdaIN uses the same)


def _as_batch(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise UserError(f"{what} must be a 3×H×W or N×3×H×W RGB image, got shape {tuple(x.shape)}")
    return x.float()


def adain_color_fix(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Shift and scale each channel of `sr` to the per-channel mean and std of `lr`."""
    s, l = _as_batch(sr, "sr"), _as_batch(lr, "lr")
    s_mean, s_std = s.mean((2, 3), keepdim=True), s.std((2, 3), keepdim=True)
    l_mean, l_std = l.mean((2, 3), keepdim=True), l.std((2, 3), keepdim=True)
    out = (s - s_mean) / (s_std + ADAIN_EPS) * l_std + l_mean
    return out.reshape(sr.shape)


def wavelet_blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """One à trous smoothing step: the [1 2 1]ᵀ[1 2 1]/16 kernel with holes of `dilation`."""
    k1 = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device) / 4.0
    kernel = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 3, 3)
    padded = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, dilation=dilation, groups=x.shape[1])


def wavelet_split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) with high + low == x: the sum of `levels` detail bands and the residual."""
    low = x
    for i in range(levels):
        low = wavelet_blur(low, 2**i)
    return x - low, low


def wavelet_color_fix(sr: torch.Tensor, lr: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of `sr` plus low frequencies of `lr` upsampled (bicubic) to sr's size."""
    s, l = _as_batch(sr, "sr"), _as_batch(lr, "lr")
    if l.shape[-2:] != s.shape[-2:]:
        l = F.interpolate(l, size=s.shape[-2:], mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    high, _ = wavelet_split(s, levels)
    _, low = wavelet_split(l, levels)
    return (high + low).reshape(sr.shape)


COLOR_FIXES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "adain": adain_color_fix,
    "wavelet": wavelet_color_fix,
}


def get_color_fix(name: str | Callable | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """None (or "none"), a callable `(sr, lr) -> sr`, or one of the names in `COLOR_FIXES`."""
    if name is None or name == "none":
        return None
    if callable(name):
        return name
    if name not in COLOR_FIXES:
        raise UserError(f"unknown colour fix '{name}' (choose from {', '.join(COLOR_FIXES)})")
    return COLOR_FIXES[name]
