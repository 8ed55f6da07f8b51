"""PSNR and SSIM on the MATLAB-style luma (Y of BT.601 YCbCr, range [16, 235]) with a crop border.

This is how SR papers report fidelity: `rgb2ycbcr` of MATLAB, `border` pixels cut from every side,
SSIM with an 11×11 Gaussian window (σ = 1.5) over the valid region and data range 255. Computed
in float64 so that it agrees with scikit-image's reference functions to ~1e-10.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

_Y_WEIGHTS = (65.481, 128.553, 24.966)  # MATLAB rgb2ycbcr, inputs in [0, 1]
_SSIM_SIGMA, _SSIM_RADIUS = 1.5, 5  # skimage: truncate 3.5 → radius int(3.5 σ + 0.5) = 5
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def as_batch(img: torch.Tensor | np.ndarray, name: str = "image") -> torch.Tensor:
    """(N,3,H,W) or (3,H,W) RGB in [0, 1] (tensor or numpy; uint8 is divided by 255) → float64 NCHW."""
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(np.array(img, dtype=np.float64) / (255.0 if img.dtype == np.uint8 else 1.0))
    if not isinstance(img, torch.Tensor):
        raise UserError(f"{name} must be a tensor or numpy array, got {type(img).__name__}")
    if img.dtype == torch.uint8:
        img = img.double() / 255.0
    elif not img.is_floating_point():
        raise UserError(f"{name} must be float in [0, 1] or uint8, got {img.dtype}")
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[1] != 3:
        raise UserError(f"{name} must be RGB shaped (N,3,H,W) or (3,H,W), got {tuple(img.shape)}")
    return img.detach().to(torch.float64)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """NCHW RGB in [0, 1] → (N,1,H,W) MATLAB luma in [16, 235]."""
    w = img.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    return 16.0 + (img * w).sum(1, keepdim=True)


def _pair_y(a, b, crop_border: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    single = getattr(a, "ndim", 0) == 3
    a, b = as_batch(a, "first image"), as_batch(b, "second image")
    if a.shape != b.shape:
        raise UserError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if crop_border < 0:
        raise UserError(f"crop_border must be >= 0, got {crop_border}")
    h, w = a.shape[-2:]
    if h <= 2 * crop_border or w <= 2 * crop_border:
        raise UserError(f"a {w}×{h} image leaves nothing after cropping {crop_border} px per side")
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if crop_border:
        ya = ya[..., crop_border:-crop_border, crop_border:-crop_border]
        yb = yb[..., crop_border:-crop_border, crop_border:-crop_border]
    return ya, yb, single


def _out(values: torch.Tensor, single: bool):
    return float(values[0]) if single else values


def psnr_y(a, b, crop_border: int = 4):
    """PSNR (dB) on Y with data range 255; a float for one (3,H,W) image, a float64 (N,) tensor for a batch.

    Identical images give +inf, as scikit-image does.
    """
    ya, yb, single = _pair_y(a, b, crop_border)
    mse = (ya - yb).pow(2).flatten(1).mean(1)
    return _out(10.0 * torch.log10(255.0**2 / mse), single)


def parity_psnr(reference, other) -> float:
    """PSNR (dB) of `other` against `reference` on all channels, images in [0, 1] (torch or numpy),
    float64: how exports report their agreement with the PyTorch model."""
    diff = np.asarray(reference, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def mean_psnr_y(a: torch.Tensor, b: torch.Tensor, crop_border: int = 4) -> float:
    """The mean over a batch of `psnr_y` (both clamped to [0, 1]): the one held-out figure every
    stage and the report quote."""
    return float(torch.as_tensor(psnr_y(a.clamp(0, 1), b.clamp(0, 1), crop_border)).double().mean())


def _gaussian_window(dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return g / g.sum()


def ssim_y(a, b, crop_border: int = 4):
    """SSIM on Y (Gaussian 11×11 window, σ 1.5, population covariance, data range 255), mean over the valid map.

    A float for one (3,H,W) image, a float64 (N,) tensor for a batch.
    """
    ya, yb, single = _pair_y(a, b, crop_border)
    size = 2 * _SSIM_RADIUS + 1
    if min(ya.shape[-2:]) < size:
        raise UserError(f"SSIM needs at least {size}×{size} px after cropping, got {tuple(ya.shape[-2:])}")
    g = _gaussian_window(ya.dtype)
    kh, kw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # 'valid' = skimage's map with the padded edge cut off
        return F.conv2d(F.conv2d(x, kh), kw)

    mu_a, mu_b = blur(ya), blur(yb)
    var_a = blur(ya * ya) - mu_a**2
    var_b = blur(yb * yb) - mu_b**2
    cov = blur(ya * yb) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    return _out(s.flatten(1).mean(1), single)
