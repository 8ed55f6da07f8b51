"""Real-ESRGAN second-order degradation (HR -> realistic LR) on torch, seeded by a torch.Generator.

Written by hand from the published formulas: basicsr cannot be imported here (it needs
torchvision). Pipeline per image, each image drawing its own parameters:

  stage 1: blur -> random resize (up/down/keep) -> Gaussian or Poisson noise -> JPEG
  stage 2: blur (with probability blur_prob) -> random resize around HR/scale -> noise
  final:   [resize to HR/scale -> sinc -> JPEG] or [JPEG -> resize -> sinc], each order half the
           time; the sinc filter (size from stage2.blur.kernel_sizes, cutoff in [π/3, π]) is
           applied with probability final_sinc_prob
  output:  clamped to [0, 1] and quantized to 8 bits, round(x * 255) / 255, like a real file.

Defaults: AdcSR's training values for stage 1 (resize range [0.3, 1.5], noise range [1, 15],
JPEG quality [60, 95]) and the final sinc probability 0.8; Real-ESRGAN x4plus for the rest.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import UserError
from .kernels import (
    BlurConfig,
    bernoulli,
    check_probabilities,
    check_probability,
    check_range,
    choice,
    sample_blur_kernel,
    sample_sinc_kernel,
    uniform,
)

ResizeMode = Literal["area", "bilinear", "bicubic"]
FINAL_SINC_CUTOFF = (math.pi / 3, math.pi)  # Real-ESRGAN's range for the final sinc filter
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@dataclass
class StageConfig:
    """One degradation stage. Noise sigma is in 8-bit units (sigma / 255 on [0, 1] images)."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.3, 1.5)
    gaussian_noise_prob: float = 0.5  # otherwise Poisson noise
    noise_range: tuple[float, float] = (1.0, 15.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (60.0, 95.0)

    def validate(self, where: str) -> None:
        """One-line UserError for a bad value, naming it as `where`.field."""
        self.blur.validate(f"{where}.blur")
        check_probability(self.blur_prob, f"{where}.blur_prob")
        check_probabilities(self.resize_prob, f"{where}.resize_prob")
        check_range(self.resize_range, f"{where}.resize_range", low=1e-3)
        if not self.resize_range[0] <= 1.0 <= self.resize_range[1]:
            lo, hi = self.resize_range
            raise UserError(f"{where}.resize_range must contain 1 (down below, up above), got [{lo}, {hi}]")
        check_probability(self.gaussian_noise_prob, f"{where}.gaussian_noise_prob")
        check_range(self.noise_range, f"{where}.noise_range")
        check_range(self.poisson_scale_range, f"{where}.poisson_scale_range")
        check_probability(self.gray_noise_prob, f"{where}.gray_noise_prob")
        check_range(self.jpeg_range, f"{where}.jpeg_range", low=1, high=100)


def _stage2_defaults() -> StageConfig:
    """Real-ESRGAN x4plus second stage; its jpeg_range is the final JPEG's."""
    return StageConfig(
        blur=BlurConfig(sigma_range=(0.2, 1.5)),
        blur_prob=0.8,
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
        jpeg_range=(30.0, 95.0),
    )


@dataclass
class DegradationConfig:
    scale: int = 4
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=_stage2_defaults)
    final_sinc_prob: float = 0.8
    resize_modes: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise UserError(f"scale must be a positive integer, got {self.scale}")
        self.stage1.validate("stage1")
        self.stage2.validate("stage2")
        check_probability(self.final_sinc_prob, "final_sinc_prob")
        if not self.resize_modes:
            raise UserError("resize_modes: give at least one mode")


# ----------------------------------------------------------------------------- operators


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each image of x (N,C,H,W) with its kernel: (k,k) for all, or (N,k,k) one each.

    Borders are reflected (replicated when the image is smaller than the kernel's radius).
    """
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    kernels = kernel.to(x).expand(n, k, k) if kernel.ndim == 2 else kernel.to(x)
    pad = k // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    padded = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    # conv2d is a correlation: flip so this is a true convolution (same for symmetric kernels).
    out = F.conv2d(padded, weight.flip(-1, -2), groups=n * c)
    return out.reshape(n, c, h, w)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    align = None if mode == "area" else False
    return F.interpolate(x, size=size, mode=mode, align_corners=align)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, as writing and reading a PNG would."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def to_gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _per_image(
    x: torch.Tensor, gray: torch.Tensor, make: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Noise of shape x: make(images, index) per colour image, or per gray image (one channel,
    the same on every channel) where gray is True."""
    noise = torch.empty_like(x)
    gray = gray.to(torch.bool).cpu()
    for is_gray in (False, True):
        idx = torch.nonzero(gray == is_gray).flatten()
        if idx.numel():
            src = to_gray(x[idx]) if is_gray else x[idx]
            noise[idx] = make(src, idx).expand(-1, x.shape[1], -1, -1)
    return noise


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero-mean Gaussian noise shaped like x with std sigma[i] / 255 for image i."""
    sig = sigma.to(x).view(-1, 1, 1, 1) / 255.0

    def make(src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        z = torch.randn(src.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        return z * sig[idx.to(x.device)]

    return _per_image(x, gray, make)


def poisson_levels(img: torch.Tensor) -> torch.Tensor:
    """Per image: distinct 8-bit levels rounded up to a power of two (the photon-count scale)."""
    codes = torch.round(img.clamp(0, 1) * 255).long().flatten(1)
    counts = [int(torch.bincount(c, minlength=256).count_nonzero()) for c in codes]
    return torch.tensor([2.0 ** math.ceil(math.log2(c)) for c in counts], dtype=img.dtype, device=img.device)


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Real-ESRGAN's Poisson noise: with q the 8-bit image and L its poisson_levels,
    noise = scale * (Poisson(q * L) / L - q), so Var = scale² q / L (grows with intensity)."""
    s = scale.to(x).view(-1, 1, 1, 1)

    def make(src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        q = quantize(src)
        levels = poisson_levels(q).view(-1, 1, 1, 1)
        rate = (q * levels).to(generator.device)
        counts = torch.poisson(rate, generator=generator).to(x.device)
        return (counts / levels - q) * s[idx.to(x.device)]

    return _per_image(x, gray, make)


def jpeg(x: torch.Tensor, quality: Sequence[int]) -> torch.Tensor:
    """A real JPEG encode/decode (PIL, 4:2:0) of each image at its own quality; not differentiable."""
    if len(quality) != x.shape[0]:
        raise UserError(f"jpeg: {len(quality)} qualities for {x.shape[0]} images")
    out = []
    for img, q in zip(x, quality):
        arr = torch.round(img.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(q))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(dec).permute(2, 0, 1))
    return torch.stack(out).to(x)


# ----------------------------------------------------------------------------- pipeline


def sample_resize_factor(st: StageConfig, generator: torch.Generator) -> float:
    """Up (uniform in [1, high]), down (uniform in [low, 1]) or keep (1), by st.resize_prob."""
    direction = choice(generator, st.resize_prob)
    if direction == 0:
        return uniform(generator, 1.0, st.resize_range[1])
    if direction == 1:
        return uniform(generator, st.resize_range[0], 1.0)
    return 1.0


class RealESRGANDegradation:
    """`RealESRGANDegradation(cfg)(hr, generator) -> lr`: hr (N,3,H,W) in [0,1], H and W multiples
    of cfg.scale; lr (N,3,H/scale,W/scale) on multiples of 1/255. Same generator state, same output."""

    def __init__(self, cfg: DegradationConfig | None = None):
        self.cfg = cfg or DegradationConfig()

    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self._check(hr, generator)
        with torch.no_grad():
            return torch.cat([self._degrade_one(hr[i : i + 1].float(), generator) for i in range(hr.shape[0])])

    def _check(self, hr: torch.Tensor, generator: torch.Generator) -> None:
        s = self.cfg.scale
        if not isinstance(generator, torch.Generator):
            raise UserError(f"degradation needs a torch.Generator, got {type(generator).__name__}")
        if (
            not isinstance(hr, torch.Tensor)
            or hr.ndim != 4
            or hr.shape[0] < 1
            or hr.shape[1] != 3
            or not hr.is_floating_point()
        ):
            raise UserError(f"degradation expects a float (N, 3, H, W) tensor, got {_describe(hr)}")
        h, w = hr.shape[-2:]
        if h < s or w < s or h % s or w % s:
            raise UserError(f"image size {h}x{w} is not a positive multiple of the scale {s}")
        if hr.min() < 0 or hr.max() > 1 or torch.isnan(hr).any():
            raise UserError("degradation expects pixel values in [0, 1]")

    def _mode(self, g: torch.Generator) -> str:
        modes = self.cfg.resize_modes
        return modes[choice(g, (1.0 / len(modes),) * len(modes))]

    def _stage(self, x: torch.Tensor, st: StageConfig, base: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        """Blur, resize to base * random factor, noise (clamped): the part both stages share."""
        if bernoulli(g, st.blur_prob):
            x = filter2d(x, sample_blur_kernel(st.blur, g)[1])
        factor = sample_resize_factor(st, g)
        size = (max(1, int(base[0] * factor)), max(1, int(base[1] * factor)))
        x = resize(x, size, self._mode(g))
        gray = torch.tensor([bernoulli(g, st.gray_noise_prob)])
        if bernoulli(g, st.gaussian_noise_prob):
            noise = gaussian_noise(x, torch.tensor([uniform(g, *st.noise_range)]), gray, g)
        else:
            noise = poisson_noise(x, torch.tensor([uniform(g, *st.poisson_scale_range)]), gray, g)
        return (x + noise).clamp(0, 1)

    def _quality(self, st: StageConfig, g: torch.Generator) -> list[int]:
        return [int(round(uniform(g, *st.jpeg_range)))]

    def _degrade_one(self, hr: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        h, w = hr.shape[-2:]
        lr_size = (h // cfg.scale, w // cfg.scale)
        x = self._stage(hr, cfg.stage1, (h, w), g)
        x = jpeg(x, self._quality(cfg.stage1, g))
        x = self._stage(x, cfg.stage2, lr_size, g)
        sinc = None
        if bernoulli(g, cfg.final_sinc_prob):
            sinc = sample_sinc_kernel(g, cfg.stage2.blur.kernel_sizes, FINAL_SINC_CUTOFF)
        quality, mode = self._quality(cfg.stage2, g), self._mode(g)
        if bernoulli(g, 0.5):
            x = resize(x, lr_size, mode)
            x = filter2d(x, sinc) if sinc is not None else x
            x = jpeg(x, quality)
        else:
            x = jpeg(x, quality)
            x = resize(x, lr_size, mode)
            x = filter2d(x, sinc) if sinc is not None else x
        return quantize(x)


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
