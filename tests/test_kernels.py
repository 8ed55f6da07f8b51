"""Blur kernels against their closed forms (adcsr.core.kernels)."""

import math

import numpy as np
import pytest
import torch
from scipy import special

from adcsr.core.errors import UserError
from adcsr.core.kernels import (
    KERNEL_TYPES,
    BlurConfig,
    gaussian_kernel,
    generalized_gaussian_kernel,
    plateau_kernel,
    sample_blur_kernel,
    sinc_kernel,
)


def _radius2(size: int) -> np.ndarray:
    ax = np.arange(size) - size // 2
    return ax[None, :] ** 2 + ax[:, None] ** 2


def _normalize(k: np.ndarray) -> np.ndarray:
    return k / k.sum()


@pytest.mark.parametrize("size", [7, 13, 21])
@pytest.mark.parametrize(
    "make",
    [
        lambda s: gaussian_kernel(s, 1.3),
        lambda s: gaussian_kernel(s, 2.5, 0.6, 0.7),
        lambda s: generalized_gaussian_kernel(s, 1.1, 2.0, -1.0, beta=0.6),
        lambda s: generalized_gaussian_kernel(s, 2.0, beta=3.5),
        lambda s: plateau_kernel(s, 1.5, beta=1.7),
        lambda s: plateau_kernel(s, 2.5, 0.8, 2.2, beta=1.2),
        lambda s: sinc_kernel(s, math.pi / 3),
    ],
)
def test_every_kernel_is_normalized_and_point_symmetric(make, size):
    k = make(size)
    assert k.shape == (size, size) and k.dtype == torch.float32
    assert abs(k.double().sum().item() - 1.0) < 1e-6
    # every kernel here is even in (x, y) -> (-x, -y)
    np.testing.assert_allclose(k.numpy(), k.flip(0, 1).numpy(), rtol=0, atol=1e-7)


def test_isotropic_gaussian_matches_closed_form_and_is_fully_symmetric():
    sigma = 1.7
    k = gaussian_kernel(15, sigma)
    expected = _normalize(np.exp(-_radius2(15) / (2 * sigma**2)))
    np.testing.assert_allclose(k.numpy(), expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(k.numpy(), k.T.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(k.numpy(), k.flip(0).numpy(), rtol=0, atol=1e-8)
    assert k[7, 7] == k.max()


def test_anisotropic_gaussian_axes_and_rotation():
    sx, sy = 3.0, 0.8
    k0 = gaussian_kernel(21, sx, sy, 0.0)
    ax = np.arange(21) - 10
    separable = _normalize(np.outer(np.exp(-(ax**2) / (2 * sy**2)), np.exp(-(ax**2) / (2 * sx**2))))
    np.testing.assert_allclose(k0.numpy(), separable, rtol=1e-5, atol=1e-9)  # sigma_x along columns
    # a quarter turn swaps the axes; a half turn changes nothing
    np.testing.assert_allclose(gaussian_kernel(21, sx, sy, math.pi / 2).numpy(), k0.T.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gaussian_kernel(21, sx, sy, math.pi).numpy(), k0.numpy(), rtol=1e-5, atol=1e-8)
    # at 45 degrees the long axis is the diagonal x = y
    k45 = gaussian_kernel(21, sx, sy, math.pi / 4)
    assert k45[13, 13] > 10 * k45[7, 13]


def test_generalized_gaussian_closed_form_and_beta_one_is_gaussian():
    np.testing.assert_allclose(
        generalized_gaussian_kernel(13, 1.4, beta=1.0).numpy(), gaussian_kernel(13, 1.4).numpy(), rtol=1e-5, atol=1e-8
    )
    sigma, beta = 2.0, 2.5
    expected = _normalize(np.exp(-0.5 * (_radius2(13) / sigma**2) ** beta))
    np.testing.assert_allclose(generalized_gaussian_kernel(13, sigma, beta=beta).numpy(), expected, rtol=1e-5, atol=1e-9)


def test_plateau_closed_form_and_flat_top():
    sigma, beta = 2.0, 2.0
    k = plateau_kernel(15, sigma, beta=beta)
    expected = _normalize(1.0 / (1.0 + (_radius2(15) / sigma**2) ** beta))
    np.testing.assert_allclose(k.numpy(), expected, rtol=1e-5, atol=1e-9)
    g = gaussian_kernel(15, sigma)
    # flatter than a Gaussian near the centre, heavier tails far out
    assert k[7, 8] / k[7, 7] > g[7, 8] / g[7, 7]
    assert k[7, 14] / k[7, 7] > g[7, 14] / g[7, 7]


def test_sinc_kernel_matches_bessel_formula():
    cutoff, size = 0.4 * math.pi, 17
    r = np.sqrt(_radius2(size))
    with np.errstate(invalid="ignore", divide="ignore"):
        k = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    k[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    np.testing.assert_allclose(sinc_kernel(size, cutoff).numpy(), _normalize(k), rtol=1e-5, atol=1e-8)


def _radial_response(k: torch.Tensor, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    h = torch.fft.fft2(k.double(), s=(n, n)).abs()
    f = torch.fft.fftfreq(n, dtype=torch.float64) * 2 * math.pi
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    return h, torch.sqrt(fx**2 + fy**2)


@pytest.mark.parametrize("cutoff", [math.pi / 2, math.pi / 4])
def test_sinc_frequency_response_passes_below_cutoff_and_stops_above(cutoff):
    h, w = _radial_response(sinc_kernel(21, cutoff))
    passband, stopband = h[w < 0.7 * cutoff], h[(w > 1.3 * cutoff) & (w < math.pi)]
    assert passband.min() > 0.8 and passband.max() < 1.2  # ~1 up to the truncation ripple
    assert stopband.max() < 0.12 and stopband.mean() < 0.03


def test_sinc_higher_cutoff_keeps_more_detail():
    h_lo, w = _radial_response(sinc_kernel(21, 0.3 * math.pi))
    h_hi, _ = _radial_response(sinc_kernel(21, 0.8 * math.pi))
    band = (w > 0.45 * math.pi) & (w < 0.6 * math.pi)
    assert h_hi[band].mean() > 0.8 and h_lo[band].mean() < 0.05


def test_sampled_kernels_follow_config_probabilities_and_sizes():
    cfg = BlurConfig()
    g = torch.Generator().manual_seed(0)
    n = 1500
    counts = dict.fromkeys((*KERNEL_TYPES, "sinc"), 0)
    sizes = set()
    for _ in range(n):
        kind, k = sample_blur_kernel(cfg, g)
        counts[kind] += 1
        sizes.add(k.shape[-1])
        assert k.shape[0] == k.shape[1] and abs(k.double().sum().item() - 1) < 1e-5
    assert sizes == set(cfg.kernel_sizes)
    expected = {"sinc": cfg.sinc_prob}
    expected.update({t: (1 - cfg.sinc_prob) * p for t, p in zip(cfg.kernel_list, cfg.kernel_prob)})
    for kind, p in expected.items():
        tol = 4 * math.sqrt(p * (1 - p) / n) + 1e-3
        assert abs(counts[kind] / n - p) < tol, (kind, counts[kind] / n, p)


def test_sampled_kernels_are_seeded():
    cfg = BlurConfig()

    def draws(seed):
        g = torch.Generator().manual_seed(seed)
        return [sample_blur_kernel(cfg, g)[1] for _ in range(5)]

    a, b, c = draws(5), draws(5), draws(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))


def test_only_configured_kernel_types_are_drawn():
    cfg = BlurConfig(kernel_list=("plateau_iso",), kernel_prob=(1.0,), sinc_prob=0.0, kernel_sizes=(9,))
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        kind, k = sample_blur_kernel(cfg, g)
        assert kind == "plateau_iso" and k.shape == (9, 9)
        np.testing.assert_allclose(k.numpy(), k.T.numpy(), rtol=0, atol=1e-7)  # isotropic


@pytest.mark.parametrize(
    "bad",
    [
        lambda: gaussian_kernel(8, 1.0),
        lambda: gaussian_kernel(7, 0.0),
        lambda: sinc_kernel(7, 4.0),
        lambda: BlurConfig(kernel_prob=(0.5, 0.5, 0.5, 0.0, 0.0, 0.0)).validate(),
        lambda: BlurConfig(kernel_sizes=(7, 10)).validate(),
        lambda: BlurConfig(sigma_range=(3.0, 0.2)).validate(),
        lambda: BlurConfig(kernel_list=("iso",)).validate(),
    ],
)
def test_bad_kernel_arguments_are_user_errors(bad):
    with pytest.raises(UserError) as e:
        bad()
    assert "\n" not in str(e.value)
