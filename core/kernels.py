"""Blur kernels of the Real-ESRGAN degradation model, from their closed forms, on torch.

Written by hand: basicsr (the reference implementation) cannot be imported here (it needs
torchvision), and kornia lacks the generalized-Gaussian, plateau and sinc kernels.

Every kernel is a (k, k) float32 tensor with odd k that sums to 1. On the grid of integer offsets
(x, y) from the centre (x along columns, y along rows), with the covariance
Σ = R(θ) diag(σx², σy²) R(θ)ᵀ and q = [x y] Σ⁻¹ [x y]ᵀ:

- Gaussian:             exp(-q / 2)
- generalized Gaussian: exp(-q^β / 2)     (β = 1 is the Gaussian)
- plateau:              1 / (1 + q^β)
- sinc (circular low-pass with cutoff ω in radians per sample): ω J1(ω r) / (2π r), r = |(x, y)|
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

import torch

from .errors import UserError

KernelType = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_TYPES: tuple[str, ...] = typing.get_args(KernelType)


def _check_size(size: int) -> None:
    if size < 1 or size % 2 != 1:
        raise UserError(f"kernel size must be a positive odd number, got {size}")


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check_size(size)
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """q = [x y] Σ⁻¹ [x y]ᵀ on the kernel grid; the rotation is applied to the grid instead of Σ."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise UserError(f"kernel sigma must be positive, got ({sigma_x}, {sigma_y})")
    xx, yy = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy  # coordinates in the rotated frame: Rᵀ [x y]ᵀ
    v = -s * xx + c * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalized(k: torch.Tensor) -> torch.Tensor:
    return (k / k.sum()).to(torch.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """Isotropic (sigma_y None) or anisotropic Gaussian, rotated by theta radians."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(torch.exp(-0.5 * q))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> torch.Tensor:
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(torch.exp(-0.5 * q.pow(beta)))


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> torch.Tensor:
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(1.0 / (1.0 + q.pow(beta)))


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular (2-D) ideal low-pass filter with `cutoff` in radians per sample, truncated to size."""
    if not 0 < cutoff <= math.pi:
        raise UserError(f"sinc cutoff must be in (0, pi], got {cutoff}")
    xx, yy = _grid(size)
    r = torch.sqrt(xx**2 + yy**2)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    k = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r > 0, k, torch.full_like(r, cutoff**2 / (4 * math.pi)))  # the limit at r = 0
    return _normalized(k)


@dataclass
class BlurConfig:
    """One stage's random blur (Real-ESRGAN x4plus defaults, first stage). Checked by `validate`,
    which the enclosing DegradationConfig calls so that errors name the stage."""

    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_list: tuple[KernelType, ...] = KERNEL_TYPES  # type: ignore[assignment]
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    sigma_range: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)

    def validate(self, where: str = "blur") -> None:
        """One-line UserError for a bad value, naming it as `where`.field."""
        if not self.kernel_sizes:
            raise UserError(f"{where}.kernel_sizes: give at least one size")
        for s in self.kernel_sizes:
            if s < 3 or s % 2 != 1:
                raise UserError(f"{where}.kernel_sizes: sizes must be odd and at least 3, got {s}")
        if len(self.kernel_list) != len(self.kernel_prob):
            raise UserError(f"{where}.kernel_list and {where}.kernel_prob must have the same length")
        check_probabilities(self.kernel_prob, f"{where}.kernel_prob")
        check_probability(self.sinc_prob, f"{where}.sinc_prob")
        check_range(self.sigma_range, f"{where}.sigma_range", low=1e-6)
        check_range(self.betag_range, f"{where}.betag_range", low=1e-6)
        check_range(self.betap_range, f"{where}.betap_range", low=1e-6)


def check_probability(p: float, where: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise UserError(f"{where}: a probability must be in [0, 1], got {p}")


def check_probabilities(ps: tuple[float, ...], where: str) -> None:
    for p in ps:
        check_probability(p, where)
    if abs(sum(ps) - 1.0) > 1e-6:
        raise UserError(f"{where}: probabilities must sum to 1, got {sum(ps):g}")


def check_range(r: tuple[float, float], where: str, low: float = 0.0, high: float = math.inf) -> None:
    if not low <= r[0] <= r[1] <= high:
        raise UserError(f"{where}: need {low:g} <= low <= high <= {high:g}, got [{r[0]}, {r[1]}]")


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator, device=generator.device).item()


def bernoulli(generator: torch.Generator, p: float) -> bool:
    return torch.rand((), generator=generator, device=generator.device).item() < p


def choice(generator: torch.Generator, probs: tuple[float, ...]) -> int:
    weights = torch.tensor(probs, dtype=torch.float64, device=generator.device)
    return int(torch.multinomial(weights, 1, generator=generator).item())


def _beta(generator: torch.Generator, low: float, high: float) -> float:
    """Shape parameter: when the range straddles 1, each side of 1 is drawn half the time (as
    Real-ESRGAN does), so sharp (β < 1) and flat (β > 1) shapes are equally common."""
    if low < 1.0 < high:
        return uniform(generator, low, 1.0) if bernoulli(generator, 0.5) else uniform(generator, 1.0, high)
    return uniform(generator, low, high)


def sample_sinc_kernel(
    generator: torch.Generator, kernel_sizes: tuple[int, ...], cutoff_range: tuple[float, float] | None = None
) -> torch.Tensor:
    """A sinc kernel of random size; the default cutoff range is Real-ESRGAN's [π/3, π] for kernels
    under 13 taps and [π/5, π] otherwise (longer kernels can represent lower cutoffs)."""
    size = kernel_sizes[choice(generator, (1.0 / len(kernel_sizes),) * len(kernel_sizes))]
    if cutoff_range is None:
        cutoff_range = (math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi)
    return sinc_kernel(size, uniform(generator, *cutoff_range))


def sample_blur_kernel(cfg: BlurConfig, generator: torch.Generator) -> tuple[str, torch.Tensor]:
    """Draw one stage's blur kernel: sinc with probability sinc_prob, else a type from kernel_list.

    Returns the kernel type ('sinc' or one of KERNEL_TYPES) and the (k, k) kernel.
    """
    if bernoulli(generator, cfg.sinc_prob):
        return "sinc", sample_sinc_kernel(generator, cfg.kernel_sizes)
    size = cfg.kernel_sizes[choice(generator, (1.0 / len(cfg.kernel_sizes),) * len(cfg.kernel_sizes))]
    kind = cfg.kernel_list[choice(generator, cfg.kernel_prob)]
    sigma_x = uniform(generator, *cfg.sigma_range)
    sigma_y, theta = sigma_x, 0.0
    if kind.endswith("aniso"):
        sigma_y = uniform(generator, *cfg.sigma_range)
        theta = uniform(generator, -math.pi, math.pi)
    if kind in ("iso", "aniso"):
        return kind, gaussian_kernel(size, sigma_x, sigma_y, theta)
    if kind.startswith("generalized"):
        return kind, generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _beta(generator, *cfg.betag_range))
    return kind, plateau_kernel(size, sigma_x, sigma_y, theta, _beta(generator, *cfg.betap_range))
