"""NIQE (Mittal, Soundararajan & Bovik, "Making a Completely Blind Image Quality Analyzer", 2013).

Written from the published algorithm and the official MATLAB release's behaviour: luma rounded to
integers, MSCN coefficients with the release's 7×7 Gaussian window (replicate border), 96-px
blocks without overlap, 18 AGGD features per block (MSCN + four neighbour products) at two scales
(MATLAB `imresize(…, 0.5)`: bicubic with antialiasing), a multivariate Gaussian fitted to the
block features and its distance to the pristine model. The pristine parameters ship in
`adcsr/core/data/niqe_pris_params.json` (from BasicSR, Apache-2.0; see `data/NOTICE`).
Lower is better. pyiqa/basicsr cannot be imported here (torchvision), hence this code.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from scipy.special import gamma

from ..errors import UserError
from .fidelity import as_batch, rgb_to_y

_BLOCK = 96
_PARAMS = Path(__file__).resolve().parent.parent / "data" / "niqe_pris_params.json"
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals


@functools.lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu 36, cov 36×36, 7×7 window) of the MATLAB release."""
    d = {k: np.asarray(v, dtype=np.float64) for k, v in json.loads(_PARAMS.read_text()).items()}
    return d["mu_pris_param"][0], d["cov_pris_param"], d["gaussian_window"]


@functools.lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """The release's search grid for the AGGD shape α and its moment ratio ρ(α)."""
    a = np.arange(0.2, 10.001, 0.001)
    return a, gamma(2 / a) ** 2 / (gamma(1 / a) * gamma(3 / a))


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _matlab_resize_matrix(n_in: int, scale: float) -> np.ndarray:
    """(n_out, n_in) matrix of MATLAB `imresize` along one axis: bicubic, antialiased, symmetric edges."""
    n_out = int(np.ceil(n_in * scale))
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based source coordinate
    left = np.floor(u - width / 2)
    idx = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    k = scale if scale < 1 else 1.0
    w = k * _cubic(k * (u[:, None] - idx))
    w /= w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    src = mirror[(idx.astype(np.int64) - 1) % (2 * n_in)]
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), idx.shape[1]), src.ravel()), w.ravel())
    return m


def matlab_imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB `imresize(img, 0.5)` (bicubic, antialiasing) of a 2-D float array."""
    h, w = img.shape
    return _matlab_resize_matrix(h, 0.5) @ img @ _matlab_resize_matrix(w, 0.5).T


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit per row of x (K, n): shape α, left and right scales β_l, β_r."""
    with np.errstate(invalid="ignore", divide="ignore"):
        neg, pos = x < 0, x > 0
        left = np.sqrt((x**2 * neg).sum(1) / neg.sum(1))
        right = np.sqrt((x**2 * pos).sum(1) / pos.sum(1))
        g = left / right
        r = np.abs(x).mean(1) ** 2 / (x**2).mean(1)
        r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    grid, rho = _aggd_table()
    alpha = grid[np.argmin((rho[None, :] - r_norm[:, None]) ** 2, axis=1)]
    alpha = np.where(np.isnan(r_norm), np.nan, alpha)
    s = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * s, right * s


def _block_features(mscn: np.ndarray, block: int) -> np.ndarray:
    """(K, 18) features of the non-overlapping block×block tiles of an MSCN map."""
    nh, nw = mscn.shape[0] // block, mscn.shape[1] // block
    tiles = mscn[: nh * block, : nw * block].reshape(nh, block, nw, block).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(nh * nw, block, block)
    flat = tiles.reshape(len(tiles), -1)
    a, bl, br = _aggd(flat)
    feats = [a, (bl + br) / 2]
    for shift in _SHIFTS:
        prod = (tiles * np.roll(tiles, shift, axis=(1, 2))).reshape(len(tiles), -1)
        a, bl, br = _aggd(prod)
        mean = (br - bl) * gamma(2 / a) / gamma(1 / a)
        feats += [a, mean, bl, br]
    return np.stack(feats, axis=1)


def _mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    mu = scipy.ndimage.correlate(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(scipy.ndimage.correlate(y * y, window, mode="nearest") - mu * mu))
    return (y - mu) / (sigma + 1)


def niqe_luma(y: np.ndarray) -> float:
    """NIQE of a 2-D luma array in [0, 255] (already rounded as the release does)."""
    mu_p, cov_p, window = pristine_params()
    nh, nw = y.shape[0] // _BLOCK, y.shape[1] // _BLOCK
    if nh * nw < 2:
        raise UserError(f"NIQE needs at least two {_BLOCK}×{_BLOCK} blocks, got a {y.shape[1]}×{y.shape[0]} image")
    y = y[: nh * _BLOCK, : nw * _BLOCK].astype(np.float64)
    f1 = _block_features(_mscn(y, window), _BLOCK)
    half = matlab_imresize_half(y / 255.0) * 255.0
    f2 = _block_features(_mscn(half, window), _BLOCK // 2)
    feats = np.concatenate([f1, f2], axis=1)
    mu_d = np.nanmean(feats, axis=0)
    cov_d = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
    diff = mu_p - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff))


def niqe(img, crop_border: int = 0):
    """NIQE of RGB images in [0, 1] on the MATLAB luma (lower is better).

    A float for one (3,H,W) image, a float64 (N,) tensor for a (N,3,H,W) batch.
    """
    single = getattr(img, "ndim", 0) == 3
    if crop_border < 0:
        raise UserError(f"crop_border must be >= 0, got {crop_border}")
    y = rgb_to_y(as_batch(img)).numpy()[:, 0].round()
    if crop_border:
        y = y[:, crop_border:-crop_border, crop_border:-crop_border]
    scores = torch.tensor([niqe_luma(plane) for plane in y], dtype=torch.float64)
    return float(scores[0]) if single else scores
